//! The admin CLI as a user meets it: `signerd key|ca|csr|root|trust-pinning|sign` against a
//! real signerd on a SoftHSM token. Every issued certificate is checked with `openssl verify`
//! against the CA, every CSR with `openssl req -verify`, and both parse and re-encode with
//! `x509-cert` to the same bytes. Errors a user can cause say what to run instead, with the
//! documented exit codes.

use std::path::Path;

use base64::Engine as _;
use der::{Decode as _, DecodePem as _, Encode as _};
use p256::ecdsa::signature::Verifier as _;
use signerd_proto::admin as pb;
use signerd_tests::admin::{client, openssl, start_signerd, AdminCli};
use signerd_tests::signerd::{Signerd, TestToken};
use signerd_tests::{TestDir, TestPki};
use x509_cert::request::CertReq;
use x509_cert::Certificate;

/// Fields drop in order: signerd stops before its folder goes.
struct Setup {
    signerd: Signerd,
    socket: std::path::PathBuf,
    cli: AdminCli,
    _token: TestToken,
    dir: TestDir,
}

fn setup(name: &str) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let (signerd, socket) =
        start_signerd(&dir.subdir("signerd").unwrap(), &token, &pki, "").unwrap();
    let cli = AdminCli::new(&socket, &dir.subdir("work").unwrap()).unwrap();
    Setup {
        signerd,
        socket,
        cli,
        _token: token,
        dir,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Parses a PEM certificate and checks x509-cert re-encodes it to the same DER.
fn round_trip_certificate(file: &Path) -> Certificate {
    let pem = std::fs::read_to_string(file).unwrap();
    let cert = Certificate::from_pem(pem.as_bytes()).unwrap();
    let der = cert.to_der().unwrap();
    assert_eq!(Certificate::from_der(&der).unwrap(), cert);
    let (_, original) = der::pem::decode_vec(pem.as_bytes()).unwrap();
    assert_eq!(
        der,
        original,
        "{} re-encodes to the same DER",
        file.display()
    );
    cert
}

/// Parses a PEM CSR and checks x509-cert re-encodes it to the same DER.
fn round_trip_csr(file: &Path) -> CertReq {
    let pem = std::fs::read_to_string(file).unwrap();
    let csr = CertReq::from_pem(pem.as_bytes()).unwrap();
    let (_, original) = der::pem::decode_vec(pem.as_bytes()).unwrap();
    assert_eq!(csr.to_der().unwrap(), original);
    csr
}

fn openssl_verify(ca: &Path, cert: &Path) {
    let (ok, out) = openssl(&["verify", "-x509_strict", "-CAfile", path(ca), path(cert)]);
    assert!(
        ok && out.contains(": OK"),
        "openssl verify {}:\n{out}",
        cert.display()
    );
}

fn openssl_req_verify(csr: &Path) {
    let (ok, out) = openssl(&["req", "-in", path(csr), "-verify", "-noout"]);
    assert!(
        ok && out.contains("verify OK"),
        "openssl req -verify {}:\n{out}",
        csr.display()
    );
}

/// What notary requires of a trust-pinning root certificate (NOTARY-INTEROP.md).
fn assert_notary_root_certificate(file: &Path, gun: &str) {
    let (ok, text) = openssl(&["x509", "-in", path(file), "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("Subject: CN = {gun}")),
        "CN = GUN:\n{text}"
    );
    assert!(text.contains("CA:FALSE"), "a leaf:\n{text}");
    assert!(!text.contains("Extended Key Usage"), "no EKU:\n{text}");
    assert!(text.contains("Digital Signature"), "{text}");
    assert!(
        text.contains("Signature Algorithm: ecdsa-with-SHA256")
            || text.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "SHA-256:\n{text}"
    );
}

#[test]
fn ca_csr_and_issued_certificates_verify_with_openssl_and_round_trip() {
    let s = setup("cli-pki");
    let cli = &s.cli;
    let work = cli.dir().to_owned();

    let out = cli.run_ok(&["ca", "init", "--subject", "CN=Test Notary CA,O=signerd"]);
    assert!(out.contains("certificate ca.pem"), "{out}");
    let ca = work.join("ca.pem");
    let ca_cert = round_trip_certificate(&ca);
    let (_, text) = openssl(&["x509", "-in", path(&ca), "-noout", "-text"]);
    assert!(
        text.contains("CA:TRUE") && text.contains("Certificate Sign"),
        "{text}"
    );
    let (ok, _) = openssl(&["verify", "-CAfile", path(&ca), path(&ca)]);
    assert!(ok, "the CA is self-signed");

    // root new: key, CSR, certificate at once.
    let gun1 = "example.com/acme/app";
    let issued = cli.json(&["root", "new", gun1]);
    let cert1 = Path::new(issued["certificate"].as_str().unwrap()).to_owned();
    let key1 = issued["key_id"].as_str().unwrap().to_owned();
    assert_eq!(cert1, work.join("example.com_acme_app.crt"));
    openssl_verify(&ca, &cert1);
    assert_notary_root_certificate(&cert1, gun1);
    let leaf = round_trip_certificate(&cert1);
    assert_eq!(leaf.tbs_certificate.issuer, ca_cert.tbs_certificate.subject);

    // csr --new, then ca issue.
    let gun2 = "localhost:5000/team/service";
    let out = cli.run_ok(&["csr", gun2, "--new"]);
    let csr2 = work.join("localhost_5000_team_service.csr");
    assert!(out.contains("localhost_5000_team_service.csr"), "{out}");
    openssl_req_verify(&csr2);
    let req = round_trip_csr(&csr2);
    assert_eq!(req.info.subject.to_string(), format!("CN={gun2}"));
    let out = cli.run_ok(&["ca", "issue", path(&csr2), "--days", "30"]);
    let cert2 = work.join("localhost_5000_team_service.crt");
    assert!(out.contains("localhost_5000_team_service.crt"), "{out}");
    openssl_verify(&ca, &cert2);
    assert_notary_root_certificate(&cert2, gun2);
    round_trip_certificate(&cert2);

    // csr --key with the existing root key of gun1 (a renewal), to a chosen file.
    let csr1 = work.join("renew.csr");
    cli.run_ok(&["csr", gun1, "--key", &key1, "--out", path(&csr1)]);
    openssl_req_verify(&csr1);
    round_trip_csr(&csr1);
    let renewed = work.join("renewed.crt");
    cli.run_ok(&["ca", "issue", path(&csr1), "--out", path(&renewed)]);
    openssl_verify(&ca, &renewed);
    // Same key as the first certificate.
    let (_, a) = openssl(&["x509", "-in", path(&cert1), "-noout", "-pubkey"]);
    let (_, b) = openssl(&["x509", "-in", path(&renewed), "-noout", "-pubkey"]);
    assert_eq!(a, b);

    // An RSA CA works the same way (it replaces the ECDSA one with --force).
    let rsa_ca = work.join("rsa-ca.pem");
    cli.run_ok(&[
        "ca",
        "init",
        "--subject",
        "CN=RSA CA",
        "--algorithm",
        "rsa",
        "--force",
        "--out",
        path(&rsa_ca),
    ]);
    round_trip_certificate(&rsa_ca);
    let cert3 = work.join("rsa-issued.crt");
    cli.run_ok(&["root", "new", "example.com/rsa/app", "--out", path(&cert3)]);
    openssl_verify(&rsa_ca, &cert3);
    assert_notary_root_certificate(&cert3, "example.com/rsa/app");
    round_trip_certificate(&cert3);
    let (ok, _) = openssl(&["verify", "-CAfile", path(&ca), path(&cert3)]);
    assert!(
        !ok,
        "certificates of the new CA do not verify against the old one"
    );

    // The keys are in the token, sensitive: `key list` and `key show` say so.
    let keys = cli.json(&["key", "list"]);
    let roles: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "ca").count(), 2, "{keys}");
    assert_eq!(roles.iter().filter(|r| **r == "root").count(), 3, "{keys}");
    let shown = cli.json(&["key", "show", &key1]);
    assert_eq!(shown["gun"], gun1);
    assert_eq!(shown["sensitive"], true);
    assert_eq!(shown["extractable"], false);
    assert!(shown["uri"]
        .as_str()
        .unwrap()
        .starts_with("pkcs11:token=signerd-test;"));
    // The token holds only the CN=root marker the notary CLI lists root keys by; the
    // CA-issued certificates (CN = the GUN) are files.
    let certs = shown["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 1, "{shown}");
    assert_eq!(certs[0]["label"], format!("notary-root-marker@{gun1}"));
    let pem = shown["public_key_pem"].as_str().unwrap();
    assert_eq!(
        pem,
        a.trim_end().to_owned() + "\n",
        "key show gives the certificate's key"
    );
    drop(s.signerd);
}

#[test]
fn keys_generate_list_show_delete_and_sign_for_scripts() {
    let s = setup("cli-keys");
    let cli = &s.cli;
    let id = cli
        .run_ok(&[
            "key",
            "generate",
            "--gun",
            "example.com/org/app",
            "--role",
            "targets",
        ])
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64, "prints the key ID: {id}");
    let ed = cli.json(&["key", "generate", "--algorithm", "ed25519"]);
    assert_eq!(ed["algorithm"], "ed25519");
    assert_eq!(ed["token"], "signerd-test");

    let table = cli.run_ok(&["key", "list"]);
    let header = table.lines().next().unwrap();
    for column in ["KEY ID", "ALGORITHM", "GUN", "ROLE", "TOKEN", "CREATED"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table.contains(&id) && table.contains("example.com/org/app"),
        "{table}"
    );
    let only = cli.json(&["key", "list", "--gun", "example.com/org/app"]);
    assert_eq!(only.as_array().unwrap().len(), 1);
    assert_eq!(only[0]["key_id"], id.as_str());
    assert_eq!(only[0]["role"], "targets");
    assert!(only[0]["created"].as_str().unwrap().starts_with("20"));

    let shown = cli.run_ok(&["key", "show", &id]);
    assert!(shown.contains("-----BEGIN PUBLIC KEY-----"), "{shown}");
    assert!(shown.contains("sensitive, not extractable"), "{shown}");

    // sign: Notary's ECDSA encoding (raw r||s over SHA-256 of the file).
    let file = cli.dir().join("root.json");
    std::fs::write(&file, br#"{"signed":{"_type":"Root"}}"#).unwrap();
    let b64 = cli.run_ok(&["sign", "--key", &id, "--in", path(&file)]);
    let sig = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    assert_eq!(sig.len(), 64);
    let spki_pem = shown
        .split("-----BEGIN")
        .nth(1)
        .map(|p| format!("-----BEGIN{p}"))
        .unwrap();
    use p256::pkcs8::DecodePublicKey as _;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_pem(spki_pem.trim()).unwrap();
    vk.verify(
        &std::fs::read(&file).unwrap(),
        &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
    )
    .unwrap();
    let raw = cli.dir().join("sig.bin");
    cli.run_ok(&[
        "sign",
        "--key",
        &id,
        "--in",
        path(&file),
        "--out",
        path(&raw),
    ]);
    assert_eq!(std::fs::read(&raw).unwrap().len(), 64);

    // delete asks for --yes; then the key is gone (exit 3 afterwards).
    let out = cli.run_code(&["key", "delete", &id], 2);
    assert!(
        out.contains(&format!("signerd key delete {id} --yes")),
        "{out}"
    );
    let out = cli.run_ok(&["key", "delete", &id, "--yes"]);
    assert!(out.contains("deleted key"), "{out}");
    let out = cli.run_code(&["key", "show", &id], 3);
    assert!(
        out.contains(&format!("no key {id} in the token")) && out.contains("signerd key list"),
        "{out}"
    );
    let out = cli.run_code(&["sign", "--key", &id, "--in", path(&file)], 3);
    assert!(out.contains(&format!("no key {id}")), "{out}");
    cli.run_code(&["key", "show", "not-a-key-id"], 2);
    drop(s.signerd);
}

#[tokio::test]
async fn user_errors_say_what_happened_and_what_to_run() {
    let s = setup("cli-errors");
    let cli = &s.cli;
    let work = cli.dir().to_owned();

    // No CA yet.
    let out = cli.run_code(&["root", "new", "example.com/a"], 3);
    assert!(
        out.contains("the token has no CA") && out.contains("signerd ca init"),
        "{out}"
    );
    let keys = cli.json(&["key", "list"]);
    assert_eq!(
        keys.as_array().unwrap().len(),
        0,
        "no key is made without a CA"
    );
    cli.run_code(&["ca", "init", "--subject", "not a name"], 2);
    cli.run_ok(&["ca", "init", "--subject", "CN=Errors CA"]);
    let out = cli.run_code(&["ca", "init", "--subject", "CN=Again"], 2);
    assert!(
        out.contains("already has a CA") && out.contains("--force"),
        "{out}"
    );

    // A CSR whose key is not in the token (made by openssl with a key file).
    let key = work.join("outside.key");
    let csr = work.join("outside.csr");
    let (ok, out) = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        path(&key),
        "-subj",
        "/CN=example.com\\/a",
        "-out",
        path(&csr),
    ]);
    assert!(ok, "{out}");
    let out = cli.run_code(&["ca", "issue", path(&csr)], 2);
    assert!(
        out.contains("is not in the token") && out.contains("signerd csr example.com/a --new"),
        "{out}"
    );

    // The wrong gun: a key of one repository for another's CSR.
    let id = cli
        .run_ok(&[
            "key",
            "generate",
            "--gun",
            "example.com/a",
            "--role",
            "root",
        ])
        .trim()
        .to_owned();
    let out = cli.run_code(&["csr", "example.com/b", "--key", &id], 2);
    assert!(
        out.contains("belongs to example.com/a") && out.contains("signerd csr example.com/b --new"),
        "{out}"
    );
    let missing = "ab".repeat(32);
    let out = cli.run_code(&["csr", "example.com/b", "--key", &missing], 3);
    assert!(out.contains("signerd key list"), "{out}");
    let out = cli.run_code(&["csr", "example.com/b"], 2);
    assert!(
        out.contains("--key") && out.contains("--new"),
        "clap asks for one: {out}"
    );
    let garbage = work.join("garbage.csr");
    std::fs::write(&garbage, "not a csr").unwrap();
    let out = cli.run_code(&["ca", "issue", path(&garbage)], 2);
    assert!(out.contains("is not a PEM CSR"), "{out}");

    // An expired CA: its key imported into the token, its certificate stored beside it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Expired CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = params.self_signed(&ca_key).unwrap();
    let mut admin = client(&s.socket).await;
    // Remove the good CA's certificate first.
    let cas = admin
        .find_objects(pb::FindObjectsRequest {
            class: pb::ObjectClass::Certificate as i32,
            role: "ca".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .objects;
    for ca in cas {
        admin
            .destroy_object(pb::DestroyObjectRequest { r#ref: ca.r#ref })
            .await
            .unwrap();
    }
    let imported = admin
        .import_private_key(pb::ImportPrivateKeyRequest {
            label: "ca@".into(),
            key_type: pb::KeyType::EcP256 as i32,
            pkcs8_der: ca_key.serialize_der(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(imported.private_key.unwrap().sensitive);
    admin
        .store_certificate(pb::StoreCertificateRequest {
            label: "ca@".into(),
            certificate_der: expired.der().to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let out = cli.run_code(&["root", "new", "example.com/c"], 2);
    assert!(
        out.contains("the CA certificate expired on 2021-01-01") && out.contains("ca init --force"),
        "{out}"
    );

    // Nobody listening.
    let out = cli.run_code(&["key", "list", "--socket", "/nonexistent/admin.sock"], 5);
    assert!(
        out.contains("does not exist") && out.contains("signerd serve"),
        "{out}"
    );
    drop(s.signerd);
    let out = cli.run_code(&["key", "list"], 5);
    assert!(
        out.contains("does not exist") || out.contains("cannot reach"),
        "{out}"
    );
    let _ = s.dir;
}

#[test]
fn trust_pinning_prints_the_block_and_merges_it_without_losing_fields() {
    let s = setup("cli-trust-pinning");
    let cli = &s.cli;
    let work = cli.dir().to_owned();
    cli.run_ok(&["ca", "init", "--subject", "CN=Pin CA", "--out", "my-ca.pem"]);
    let gun = "example.com/pinned/app";
    let issued = cli.json(&["root", "new", gun]);

    // --ca: the CA file is named by absolute path; a missing one is written from the token.
    std::fs::remove_file(work.join("my-ca.pem")).unwrap();
    let out = cli.run_ok(&[
        "trust-pinning",
        "example.com/pinned",
        "--ca",
        "--disable-tofu",
        "--ca-file",
        "my-ca.pem",
    ]);
    let block: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ca_path = std::fs::canonicalize(work.join("my-ca.pem")).unwrap();
    assert_eq!(
        block,
        serde_json::json!({ "trust_pinning": {
            "ca": { "example.com/pinned": ca_path.display().to_string() },
            "disable_tofu": true
        }})
    );
    openssl_verify(&ca_path, Path::new(issued["certificate"].as_str().unwrap()));

    // --certs: the key ID notary gives the root certificate (ecdsa-x509 over its PEM).
    let out = cli.run_ok(&["trust-pinning", gun, "--certs"]);
    let block: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        block["trust_pinning"]["certs"][gun],
        serde_json::json!([issued["root_key_id"]])
    );
    let out = cli.run_code(&["trust-pinning", "example.com/other", "--certs"], 3);
    assert!(out.contains("signerd root new example.com/other"), "{out}");

    // --write merges into an existing notary config.json.
    let config = work.join("config.json");
    std::fs::write(
        &config,
        r#"{"trust_dir":"/home/u/.notary","remote_server":{"url":"https://notary:4443","root_ca":"/etc/ca.pem"},"trust_pinning":{"ca":{"other/gun":"/other.pem"}}}"#,
    )
    .unwrap();
    cli.run_ok(&[
        "trust-pinning",
        gun,
        "--ca",
        "--ca-file",
        "my-ca.pem",
        "--disable-tofu",
        "--write",
        path(&config),
    ]);
    cli.run_ok(&["trust-pinning", gun, "--certs", "--write", path(&config)]);
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        merged,
        serde_json::json!({
            "trust_dir": "/home/u/.notary",
            "remote_server": { "url": "https://notary:4443", "root_ca": "/etc/ca.pem" },
            "trust_pinning": {
                "ca": { "other/gun": "/other.pem", gun: ca_path.display().to_string() },
                "certs": { gun: [issued["root_key_id"]] },
                "disable_tofu": true
            }
        })
    );
    std::fs::write(&config, "[1, 2").unwrap();
    let out = cli.run_code(&["trust-pinning", gun, "--write", path(&config)], 2);
    assert!(out.contains("is not JSON"), "{out}");
    drop(s.signerd);
}

#[tokio::test]
async fn the_dev_default_serves_the_admin_socket_the_cli_uses_by_default() {
    // `signerd serve` with nothing configured, as in the README's first command.
    let dir = TestDir::new("cli-dev-admin").unwrap();
    let port = signerd_tests::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = std::process::Command::new(signerd_tests::signerd::signerd_bin());
    serve
        .current_dir(dir.path())
        .args(["serve", "--listen", &listen])
        .env_remove("SOFTHSM2_CONF");
    let mut child = signerd_tests::ChildGuard::spawn("signerd-dev", serve, dir.path()).unwrap();
    child
        .wait_for_port(listen.parse().unwrap(), std::time::Duration::from_secs(30))
        .unwrap();
    let socket = dir.path().join(".signerd/admin.sock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no {}",
            socket.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let banner = std::fs::read_to_string(child.stdout_log()).unwrap();
    assert!(
        banner.contains("admin.sock"),
        "the banner names the socket:\n{banner}"
    );

    // The CLI finds it with no --socket, from the same folder.
    let out = std::process::Command::new(signerd_tests::signerd::signerd_bin())
        .current_dir(dir.path())
        .args(["key", "generate", "--gun", "example.com/dev"])
        .env_remove("SIGNERD_SOCKET")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", signerd_tests::admin::text(&out));

    // On the dev token, USER and SO logins take the dev token's own PINs.
    let mut admin = client(&socket).await;
    for (user, file) in [(pb::UserType::User, "pin"), (pb::UserType::So, "so-pin")] {
        let pin = std::fs::read(dir.path().join(".signerd").join(file)).unwrap();
        admin
            .login(pb::LoginRequest {
                user_type: user as i32,
                pin,
            })
            .await
            .unwrap_or_else(|e| panic!("{user:?} login: {e:?}"));
    }
    assert!(child.stop().unwrap().success());
    assert!(!socket.exists(), "the socket goes with signerd");
}
