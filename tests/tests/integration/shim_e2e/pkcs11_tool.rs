//! `pkcs11-tool` through the shim, on the admin socket and on the mTLS admin port.

use super::*;

#[test]
fn pkcs11_tool_makes_lists_and_signs_with_keys_that_stay_in_signerd() -> io::Result<()> {
    let s = setup("shim-pkcs11-tool")?;
    let slots = s.tool(&["-L"]);
    assert!(slots.contains(TEST_TOKEN_LABEL), "{slots}");
    assert!(slots.contains("login required"), "{slots}");
    let mechanisms = s.tool(&["-M"]);
    for m in [
        "ECDSA-SHA256",
        "EDDSA",
        "SHA256-RSA-PKCS-PSS",
        "RSA-PKCS",
        "ECDSA-KEY-PAIR-GEN",
    ] {
        assert!(mechanisms.contains(m), "{m} missing:\n{mechanisms}");
    }

    s.tool_login(&[
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--id",
        "01",
        "--label",
        "ec-key",
    ]);
    s.tool_login(&[
        "--keypairgen",
        "--key-type",
        "rsa:2048",
        "--id",
        "02",
        "--label",
        "rsa-key",
    ]);
    s.tool_login(&[
        "--keypairgen",
        "--key-type",
        "EC:edwards25519",
        "--id",
        "03",
        "--label",
        "ed-key",
    ]);

    // Private keys show only to a logged-in user.
    let public_view = s.tool(&["-O"]);
    assert!(
        public_view.contains("Public Key Object; EC"),
        "{public_view}"
    );
    assert!(!public_view.contains("Private Key Object"), "{public_view}");
    let user_view = s.tool_login(&["-O"]);
    for label in ["ec-key", "rsa-key", "ed-key"] {
        assert!(user_view.contains(label), "{label} missing:\n{user_view}");
    }
    assert!(user_view.contains("Private Key Object; RSA"), "{user_view}");

    let data = s.file("data.txt");
    std::fs::write(&data, b"signed through signerd's PKCS#11 shim\n")?;
    let data = data.display().to_string();

    // ECDSA-SHA256 (the shim hashes), DER signature for openssl.
    let ec_pem = s.public_pem("01");
    let sig = s.path("ec.sig");
    s.tool_login(&[
        "--sign",
        "--mechanism",
        "ECDSA-SHA256",
        "--id",
        "01",
        "-i",
        &data,
        "-o",
        &sig,
        "--signature-format",
        "openssl",
    ]);
    openssl_verifies(&[
        "dgst",
        "-sha256",
        "-verify",
        &ec_pem,
        "-signature",
        &sig,
        &data,
    ]);

    // Raw ECDSA over a digest the caller made.
    let digest = s.path("data.sha256");
    run_tool_ok(
        "openssl",
        &["dgst", "-sha256", "-binary", "-out", &digest, &data],
        &[],
    );
    let sig = s.path("ec-raw.sig");
    s.tool_login(&[
        "--sign",
        "--mechanism",
        "ECDSA",
        "--id",
        "01",
        "-i",
        &digest,
        "-o",
        &sig,
        "--signature-format",
        "openssl",
    ]);
    openssl_verifies(&[
        "dgst",
        "-sha256",
        "-verify",
        &ec_pem,
        "-signature",
        &sig,
        &data,
    ]);

    // RSA-PSS, hashed by the shim and over a digest.
    let rsa_pem = s.public_pem("02");
    let sig = s.path("rsa-pss.sig");
    s.tool_login(&[
        "--sign",
        "--mechanism",
        "SHA256-RSA-PKCS-PSS",
        "--id",
        "02",
        "-i",
        &data,
        "-o",
        &sig,
    ]);
    let pss = [
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
    ];
    let mut args = vec!["dgst", "-sha256"];
    args.extend_from_slice(&pss);
    args.extend_from_slice(&["-verify", &rsa_pem, "-signature", &sig, &data]);
    openssl_verifies(&args);
    let sig = s.path("rsa-pss-digest.sig");
    s.tool_login(&[
        "--sign",
        "--mechanism",
        "RSA-PKCS-PSS",
        "--hash-algorithm",
        "SHA256",
        "--id",
        "02",
        "-i",
        &digest,
        "-o",
        &sig,
    ]);
    let mut args = vec!["dgst", "-sha256"];
    args.extend_from_slice(&pss);
    args.extend_from_slice(&["-verify", &rsa_pem, "-signature", &sig, &data]);
    openssl_verifies(&args);

    // Pure Ed25519.
    let ed_pem = s.public_pem("03");
    let sig = s.path("ed.sig");
    s.tool_login(&[
        "--sign",
        "--mechanism",
        "EDDSA",
        "--id",
        "03",
        "-i",
        &data,
        "-o",
        &sig,
    ]);
    openssl_verifies(&[
        "pkeyutl", "-verify", "-pubin", "-inkey", &ed_pem, "-rawin", "-in", &data, "-sigfile", &sig,
    ]);

    // A wrong PIN is refused by signerd.
    let mut args = vec!["--module", s.module.to_str().unwrap_or_default()];
    args.extend_from_slice(&["--login", "--pin", "999999", "-O"]);
    let out = run_tool("pkcs11-tool", &args, &s.env);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CKR_PIN_INCORRECT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The keys live in signerd's token: signerd lists them, and so does SoftHSM itself.
    let keys = s.signerd_keys();
    for (label, algorithm) in [
        ("ec-key", "ecdsa"),
        ("rsa-key", "rsa"),
        ("ed-key", "ed25519"),
    ] {
        assert!(
            keys.iter()
                .any(|k| k["label"] == label && k["algorithm"] == algorithm),
            "signerd key list lacks {label}: {keys:?}"
        );
    }
    let in_token = s.softhsm_objects();
    for label in ["ec-key", "rsa-key", "ed-key"] {
        assert!(
            in_token.contains(label),
            "SoftHSM lacks {label}:\n{in_token}"
        );
    }
    let log = s.shim_log();
    assert!(
        !log.contains(NOTARY_USER_PIN),
        "a PIN in the shim's log:\n{log}"
    );
    Ok(())
}

/// `login` followed by `extra`.
fn with_login<'a>(login: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    [login, extra].concat()
}

/// The shim over signerd's mTLS port with an admin client certificate instead of the socket.
#[test]
fn pkcs11_tool_over_the_mtls_admin_port() -> io::Result<()> {
    let dir = TestDir::new("shim-mtls")?;
    let pki = TestPki::generate(&dir.subdir("pki")?)?;
    let token = TestToken::create(&dir.subdir("token")?)?;
    let client_cert = pki.client.cert.display().to_string();
    let fingerprint = run_tool_ok(
        "openssl",
        &[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            &client_cert,
        ],
        &[],
    );
    let fingerprint = fingerprint
        .trim()
        .rsplit('=')
        .next()
        .unwrap_or_default()
        .replace(':', "")
        .to_ascii_lowercase();
    let admin = AdminSignerd::start_with(
        &dir.subdir("signerd")?,
        &token,
        &pki,
        &format!("admin_clients = [\"sha256:{fingerprint}\"]"),
    )?;
    let module = shim_module();
    let env = vec![
        ("SIGNERD_ADDR".to_string(), admin.signerd.addr().to_string()),
        ("SIGNERD_CLIENT_CERT".to_string(), client_cert),
        (
            "SIGNERD_CLIENT_KEY".to_string(),
            pki.client.key.display().to_string(),
        ),
        (
            "SIGNERD_SERVER_CA".to_string(),
            pki.ca.cert_path().display().to_string(),
        ),
        (
            "SIGNERD_SHIM_LOG".to_string(),
            dir.path().join("shim.log").display().to_string(),
        ),
    ];
    let m = module.to_str().unwrap_or_default();
    let slots = run_tool_ok("pkcs11-tool", &["--module", m, "-L"], &env);
    assert!(slots.contains(TEST_TOKEN_LABEL), "{slots}");
    let login = ["--module", m, "--login", "--pin", NOTARY_USER_PIN];
    run_tool_ok(
        "pkcs11-tool",
        &with_login(
            &login,
            &[
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--id",
                "21",
                "--label",
                "tls-key",
            ],
        ),
        &env,
    );
    let data = dir.path().join("data.txt");
    std::fs::write(&data, b"signed over mTLS\n")?;
    let data = data.display().to_string();
    let sig = dir.path().join("sig.der").display().to_string();
    run_tool_ok(
        "pkcs11-tool",
        &with_login(
            &login,
            &[
                "--sign",
                "--mechanism",
                "ECDSA-SHA256",
                "--id",
                "21",
                "-i",
                &data,
                "-o",
                &sig,
                "--signature-format",
                "openssl",
            ],
        ),
        &env,
    );
    let raw = dir.path().join("pub.der").display().to_string();
    run_tool_ok(
        "pkcs11-tool",
        &[
            "--module",
            m,
            "--read-object",
            "--type",
            "pubkey",
            "--id",
            "21",
            "-o",
            &raw,
        ],
        &env,
    );
    let pem = dir.path().join("pub.pem").display().to_string();
    run_tool_ok(
        "openssl",
        &[
            "pkey", "-pubin", "-inform", "DER", "-in", &raw, "-out", &pem,
        ],
        &[],
    );
    openssl_verifies(&[
        "dgst",
        "-sha256",
        "-verify",
        &pem,
        "-signature",
        &sig,
        &data,
    ]);
    Ok(())
}
