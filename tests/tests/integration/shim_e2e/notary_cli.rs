//! The notary CLI with the shim as `libykcs11.so`.

use super::*;

/// The notary CLI with the shim as `libykcs11.so`, seed 003's flow: the root key is made by
/// `notary key generate` and imported into signerd's token through the shim (with its `CN=root`
/// marker certificate); a CA issues the root certificate for the GUN over a CSR the token key
/// signs (OpenSSL through the shim); `notary init --rootcert` publishes with root.json signed in
/// the token; a reader pinned to the CA verifies; root keeps signing after the trust dir's
/// private keys are deleted.
///
/// Plain `notary init` (no `--rootcert`) cannot work with any PKCS#11 root key in this notary
/// build: it has the key self-sign a certificate through Go's `x509.CreateCertificate`, whose
/// check of the raw `r||s` signature fails. The end of the test pins that down.
#[test]
fn notary_cli_keeps_its_root_key_in_signerd() -> io::Result<()> {
    let s = setup("shim-notary")?;
    let server = NotaryServer::start(
        &s.dir.subdir("server")?,
        s.admin.signerd.endpoint(),
        "ecdsa",
    )?;
    let mut env = s.env.clone();
    // The notary CLI reads every CKA_ID's first byte as a YubiKey slot; show it only the
    // one-byte IDs it makes (notary-server's keys in the token have 32-byte IDs).
    env.push(("SIGNERD_SHIM_MAX_ID_LEN".into(), "1".into()));
    let gun = "example.com/signerd/shim";
    server
        .wait_healthy(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));

    // The link is made in a private mount namespace; the notary CLI runs in one like it.
    let link = YkcsLink::install(s.dir.path(), &s.module)?;
    assert!(
        link.install_output
            .contains(&format!("linked {YKCS11_LINK}")),
        "{}",
        link.install_output
    );
    assert_eq!(std::fs::read_link(link.file())?, s.module);
    let admin = NotaryClient::new(&s.dir.subdir("admin")?, &server.url(), server.ca_file())?
        .with_env(&env)
        .in_namespace(link.namespace());

    // The root key goes into the token (SO login, certificate + EC private key, CKA_ID 02).
    admin.run_ok(&["key", "generate", "ecdsa", "--role", "root"]);
    let keys = parse_key_list(&admin.run_ok(&["key", "list"]));
    // Listed twice: in the token ("yubikey") and as the encrypted backup in the trust dir.
    let root = keys
        .iter()
        .find(|k| k.role == "root" && k.location == "yubikey")
        .unwrap_or_else(|| panic!("no root key behind the shim: {keys:?}"))
        .clone();
    let in_signerd = s.signerd_keys();
    assert!(
        in_signerd
            .iter()
            .any(|k| k["key_id"] == root.key_id.as_str()),
        "signerd key list lacks the root key {}: {in_signerd:?}",
        root.key_id
    );
    let in_token = s.softhsm_objects();
    assert!(
        in_token.contains("Certificate Object") && in_token.contains("ID:         02"),
        "the root key's marker certificate and key (CKA_ID 02) should be in the token:\n{in_token}"
    );

    // A CA issues the GUN's root certificate over a CSR signed in the token.
    let ca_key = s.path("ca.key");
    let ca = s.path("ca.pem");
    run_tool_ok(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "30",
            "-subj",
            "/CN=signerd shim test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        &[],
    );
    let conf = s.file("openssl.cnf");
    std::fs::write(
        &conf,
        format!(
            "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n\
             [engine_section]\npkcs11 = pkcs11_section\n[pkcs11_section]\nengine_id = pkcs11\n\
             dynamic_path = {LIBP11_ENGINE}\nMODULE_PATH = {}\nPIN = {NOTARY_USER_PIN}\ninit = 0\n\
             [req]\ndistinguished_name = dn\n[dn]\n[leaf]\nbasicConstraints = CA:FALSE\n\
             keyUsage = critical,digitalSignature\n",
            s.module.display()
        ),
    )?;
    let mut ossl_env = s.env.clone();
    ossl_env.push(("OPENSSL_CONF".into(), conf.display().to_string()));
    let csr = s.path("root.csr");
    run_tool_ok(
        "openssl",
        &[
            "req",
            "-new",
            "-engine",
            "pkcs11",
            "-keyform",
            "engine",
            "-key",
            "pkcs11:id=%02;type=private",
            "-subj",
            &format!("/CN={}", gun.replace('/', "\\/")),
            "-sha256",
            "-out",
            &csr,
        ],
        &ossl_env,
    );
    let root_cert = s.path("root.pem");
    run_tool_ok(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            &conf.display().to_string(),
            "-extensions",
            "leaf",
            "-out",
            &root_cert,
        ],
        &[],
    );

    let out = admin.run_ok(&["init", gun, "--rootcert", &root_cert, "--publish"]);
    assert!(out.contains("Successfully published"), "init:\n{out}");

    // A reader pinned to the CA, with no trust on first use, verifies what was published.
    let reader = NotaryClient::new(&s.dir.subdir("reader")?, &server.url(), server.ca_file())?;
    let config = reader.config_file();
    let mut document: serde_json::Value = serde_json::from_slice(&std::fs::read(config)?)?;
    document["trust_pinning"] = serde_json::json!({ "ca": { gun: ca }, "disable_tofu": true });
    std::fs::write(config, serde_json::to_vec_pretty(&document)?)?;
    let reader_keys = parse_key_list(&reader.run_ok(&["key", "list"]));
    assert!(
        reader_keys.iter().all(|k| k.location != "yubikey"),
        "a client without the shim sees no YubiKey (SIGNERD_SHIM_DISABLE=1): {reader_keys:?}"
    );

    // Server-managed snapshot: after this only root (token) and targets (file) keys sign.
    let out = admin.run_ok(&["key", "rotate", gun, "snapshot", "--server-managed"]);
    assert!(out.contains("Successfully rotated snapshot key"), "{out}");
    let v1 = s.file("v1");
    std::fs::write(&v1, b"v1 through the shim\n")?;
    admin.run_ok(&["add", gun, "v1", v1.to_str().unwrap_or_default()]);
    let out = admin.run_ok(&["publish", gun]);
    assert!(out.contains("Successfully published"), "publish:\n{out}");
    let names = |client: &NotaryClient| -> Vec<String> {
        let mut names: Vec<String> = parse_target_list(&client.run_ok(&["list", gun]))
            .into_iter()
            .map(|t| t.name)
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&reader), ["v1"]);

    // Without any private key in the trust dir, root still signs: rotating the targets key
    // re-signs root.json with the key in signerd.
    let private = admin.trust_dir().join("private");
    let mut removed = 0;
    for entry in walk(&private) {
        std::fs::remove_file(&entry)?;
        removed += 1;
    }
    assert!(
        removed >= 2,
        "expected the root backup and the targets key in {}",
        private.display()
    );
    let out = admin.run_ok(&["key", "rotate", gun, "targets"]);
    assert!(
        out.contains("Successfully rotated targets key"),
        "targets rotation:\n{out}"
    );
    let v2 = s.file("v2");
    std::fs::write(&v2, b"v2 signed by the new targets key\n")?;
    admin.run_ok(&["add", gun, "v2", v2.to_str().unwrap_or_default()]);
    let out = admin.run_ok(&["publish", gun]);
    assert!(
        out.contains("Successfully published"),
        "publish after rotation:\n{out}"
    );
    assert_eq!(names(&reader), ["v1", "v2"]);
    let keys = parse_key_list(&admin.run_ok(&["key", "list"]));
    assert!(
        keys.iter()
            .any(|k| k.role == "root" && k.location == "yubikey" && k.key_id == root.key_id),
        "{keys:?}"
    );

    // Plain init makes the key self-sign a certificate through x509.CreateCertificate: notary
    // 0.7.0's YubiKey signer hands it raw r||s, which Go rejects, whatever the provider does.
    let out = admin.run_err(&["init", "example.com/signerd/plain", "--publish"]);
    assert!(
        out.contains("signature over certificate returned by signer is invalid"),
        "{out}"
    );

    let log = s.shim_log();
    assert!(
        log.contains("So logged in") && log.contains("User logged in"),
        "{log}"
    );
    assert!(
        !log.contains(NOTARY_SO_PIN) && !log.contains(NOTARY_USER_PIN),
        "a PIN in the shim's log"
    );
    // The real system never saw the link.
    assert!(
        std::fs::read_link(YKCS11_LINK).map_or(true, |target| target != s.module),
        "{YKCS11_LINK} on the real system points at the test's shim"
    );
    Ok(())
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
