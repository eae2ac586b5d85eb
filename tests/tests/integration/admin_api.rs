//! signerd's admin API (`signerd.admin.v1.TokenAdmin`) against a real SoftHSM token: served on
//! the Unix socket to allowed uids only, and on the mTLS port to listed admin certificates
//! only; Login semantics the PKCS#11 shim relies on; one audit line per operation.

use p256::ecdsa::signature::Verifier as _;
use sha2::Digest as _;
use signerd_proto::admin as pb;
use signerd_proto::admin::token_admin_client::TokenAdminClient;
use signerd_proto::notary::key_management_client::KeyManagementClient;
use signerd_proto::notary::CreateKeyRequest;
use signerd_tests::admin::{client, start_signerd, wait_for_socket, AdminCli};
use signerd_tests::signerd::{Signerd, TestToken, TEST_PIN};
use signerd_tests::{TestDir, TestPki};
use tonic::Code;

/// Fields drop in order: signerd stops (showing its logs on failure) before its folder goes.
struct Setup {
    signerd: Signerd,
    socket: std::path::PathBuf,
    token: TestToken,
    pki: TestPki,
    dir: TestDir,
}

fn setup(name: &str, admin: &str) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let (signerd, socket) =
        start_signerd(&dir.subdir("signerd").unwrap(), &token, &pki, admin).unwrap();
    Setup {
        signerd,
        socket,
        token,
        pki,
        dir,
    }
}

fn ec_key(id: &[u8], label: &str) -> pb::GenerateKeyPairRequest {
    pb::GenerateKeyPairRequest {
        key_type: pb::KeyType::EcP256 as i32,
        id: id.to_vec(),
        label: label.into(),
        ..Default::default()
    }
}

fn private_ref(id: &[u8]) -> pb::ObjectRef {
    pb::ObjectRef {
        class: pb::ObjectClass::PrivateKey as i32,
        id: id.to_vec(),
        label: String::new(),
    }
}

/// The uid of this test process (the admin socket's default allow list is signerd's, the same).
fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self is owned by the process's effective uid.
    std::fs::metadata("/proc/self").unwrap().uid()
}

#[tokio::test]
async fn socket_serves_keys_signatures_and_certificates_with_an_audit_line_each() {
    let s = setup("admin-socket", "");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&s.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "the admin socket is created mode 0660");

    let mut c = client(&s.socket).await;
    let tokens = c
        .list_tokens(pb::ListTokensRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tokens.tokens[0].label, "signerd-test");
    let mechanisms = c
        .list_mechanisms(pb::ListMechanismsRequest {})
        .await
        .unwrap()
        .into_inner()
        .mechanisms;
    assert!(
        mechanisms.iter().any(|m| m.mechanism == 0x1044),
        "CKM_ECDSA_SHA256 offered"
    );

    let generated = c
        .generate_key_pair(ec_key(&[0x01], "shim key"))
        .await
        .unwrap()
        .into_inner();
    let private = generated.private_key.unwrap();
    assert!(private.sensitive && !private.extractable);
    assert_eq!(private.r#ref.as_ref().unwrap().id, vec![0x01]);
    let found = c
        .find_objects(pb::FindObjectsRequest {
            label: "shim key".into(),
            class: pb::ObjectClass::PublicKey as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .objects;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].public_key_spki, private.public_key_spki);

    // CKM_ECDSA_SHA256: signerd hashes, SoftHSM signs the digest; raw r||s comes back.
    let signature = c
        .sign(pb::SignRequest {
            key: Some(private_ref(&[0x01])),
            mechanism: 0x1044,
            data: b"message".to_vec(),
            pss: None,
        })
        .await
        .unwrap()
        .into_inner()
        .signature;
    use p256::pkcs8::DecodePublicKey as _;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&private.public_key_spki).unwrap();
    vk.verify(
        b"message",
        &p256::ecdsa::Signature::from_slice(&signature).unwrap(),
    )
    .unwrap();

    // Errors map as the Notary services' do.
    let err = c
        .sign(pb::SignRequest {
            key: Some(private_ref(&[0x09])),
            mechanism: 0x1041,
            data: sha2::Sha256::digest(b"m").to_vec(),
            pss: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c
        .sign(pb::SignRequest {
            key: Some(private_ref(&[0x01])),
            mechanism: 0x9999,
            data: vec![1],
            pss: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c
        .store_certificate(pb::StoreCertificateRequest {
            id: vec![1],
            label: "x".into(),
            certificate_der: b"not a certificate".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let destroyed = c
        .destroy_object(pb::DestroyObjectRequest {
            r#ref: Some(private_ref(&[0x01])),
        })
        .await
        .unwrap()
        .into_inner()
        .destroyed;
    assert_eq!(destroyed, 1);

    let logs = s.signerd.logs();
    let me = format!("uid={}", my_uid());
    let sign_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("method=\"Sign\"") && l.contains("signerd::keyop"))
        .collect();
    assert_eq!(sign_lines.len(), 3, "one line per Sign:\n{logs}");
    assert!(
        sign_lines[0].contains("detail=\"CKM_ECDSA_SHA256\"")
            && sign_lines[0].contains(&me)
            && sign_lines[0].contains("outcome=\"ok\""),
        "{}",
        sign_lines[0]
    );
    assert!(
        sign_lines[1].contains("outcome=\"NotFound\""),
        "{}",
        sign_lines[1]
    );
    for method in [
        "GenerateKeyPair",
        "FindObjects",
        "DestroyObject",
        "ListTokens",
    ] {
        assert!(
            logs.contains(&format!("method=\"{method}\"")),
            "no audit line for {method}:\n{logs}"
        );
    }
}

#[tokio::test]
async fn notary_port_stays_the_notary_contract_without_admin_clients() {
    let s = setup("admin-not-on-tls", "");
    let channel = s.signerd.channel().await.unwrap();
    // The Notary services answer as always.
    let created = KeyManagementClient::new(channel.clone())
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "example.com/org/app".into(),
            role: "timestamp".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.key_info.is_some());
    // The admin service is not there at all.
    let err = TokenAdminClient::new(channel)
        .list_tokens(pb::ListTokensRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    // The key notary-server made is visible to admins on the socket, by its TUF key ID.
    let id = created.key_info.unwrap().key_id.unwrap().id;
    let found = client(&s.socket)
        .await
        .find_objects(pb::FindObjectsRequest {
            tuf_key_id: id,
            class: pb::ObjectClass::PrivateKey as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .objects;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].role, "timestamp");
    assert_eq!(found[0].gun, "example.com/org/app");
}

#[tokio::test]
async fn socket_refuses_a_uid_that_is_not_allowed() {
    let me = my_uid();
    let other = if me == 65534 { 65533 } else { 65534 };
    let s = setup("admin-uid-refused", &format!("allow_uids = [{other}]"));
    let err = client(&s.socket)
        .await
        .list_tokens(pb::ListTokensRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains(&format!("uid {me} ")) && err.message().contains("admin.allow_uids"),
        "the refusal says what to configure: {}",
        err.message()
    );
    // The CLI says so too, with exit code 4.
    let cli = AdminCli::new(&s.socket, &s.dir.subdir("cli").unwrap()).unwrap();
    let out = cli.run_code(&["key", "list"], 4);
    assert!(out.contains("may not use signerd's admin API"), "{out}");
    assert!(
        s.signerd
            .logs()
            .lines()
            .any(|l| l.contains("outcome=\"PermissionDenied\"") && l.contains("ListTokens")),
        "the refusal is logged:\n{}",
        s.signerd.logs()
    );
}

#[test]
fn another_user_cannot_even_open_the_socket() {
    // The socket is mode 0660, owned by signerd's user and group: a process of another user
    // (nobody, run with setpriv) is refused by the kernel before signerd sees it.
    assert_eq!(
        my_uid(),
        0,
        "this test runs the CLI as another user (setpriv), which needs root, as CI and the \
         development machines run; run the suite as root"
    );
    let s = setup("admin-other-user", "");
    let cli_dir = s.dir.subdir("cli-nobody").unwrap();
    std::fs::set_permissions(
        &cli_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(signerd_tests::signerd::signerd_bin())
        .args(["key", "list", "--socket"])
        .arg(&s.socket)
        .current_dir(&cli_dir)
        .output()
        .expect("setpriv (util-linux) runs");
    let text = signerd_tests::admin::text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("Permission denied"), "{text}");
}

#[tokio::test]
async fn login_checks_pins_from_files_and_never_logs_them() {
    // Without PIN files: USER and SO logins are off (never checked against the token's PIN).
    let s = setup("admin-login", "");
    let mut c = client(&s.socket).await;
    let login = |user: pb::UserType, pin: &str| pb::LoginRequest {
        user_type: user as i32,
        pin: pin.as_bytes().to_vec(),
    };
    let err = c
        .login(login(pb::UserType::User, TEST_PIN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("set admin.user_pin_file"), "{err:?}");
    assert!(!err.message().contains(TEST_PIN));
    let err = c
        .login(login(pb::UserType::So, "anything"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        err.message(),
        "SO login is not enabled; set admin.so_pin_file"
    );
    let err = c
        .login(login(pb::UserType::Unspecified, TEST_PIN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // With PIN files: those are what count.
    let files = s.dir.subdir("pins").unwrap();
    std::fs::write(files.join("user"), "123456\n").unwrap();
    std::fs::write(
        files.join("so"),
        "010203040506070801020304050607080102030405060708",
    )
    .unwrap();
    let admin = format!(
        "user_pin_file = {:?}\nso_pin_file = {:?}",
        files.join("user").display().to_string(),
        files.join("so").display().to_string()
    );
    let (second, socket) =
        start_signerd(&s.dir.subdir("second").unwrap(), &s.token, &s.pki, &admin).unwrap();
    let mut c = client(&socket).await;
    c.login(login(pb::UserType::User, "123456")).await.unwrap();
    c.login(login(
        pb::UserType::So,
        "010203040506070801020304050607080102030405060708",
    ))
    .await
    .unwrap();
    let err = c
        .login(login(pb::UserType::User, TEST_PIN))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "the token PIN is not the admin PIN now"
    );

    for logs in [s.signerd.logs(), second.logs()] {
        assert!(logs.contains("method=\"Login\""), "{logs}");
        for pin in [TEST_PIN, "000000", "123456", "0102030405060708"] {
            assert!(!logs.contains(pin), "PIN {pin} in the logs:\n{logs}");
        }
    }
}

#[tokio::test]
async fn mtls_admin_clients_by_subject_or_fingerprint_and_nobody_else() {
    let dir = TestDir::new("admin-mtls").unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let by_subject = pki.ca.issue_client("ops-admin").unwrap();
    let by_fingerprint = pki.ca.issue_client("release-bot").unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_file(&by_fingerprint.cert).unwrap();
    let fingerprint = hex::encode(sha2::Sha256::digest(der.as_ref()));
    let admin = format!("admin_clients = [\"CN=ops-admin\", \"sha256:{fingerprint}\"]");
    let (signerd, socket) =
        start_signerd(&dir.subdir("signerd").unwrap(), &token, &pki, &admin).unwrap();
    use rustls::pki_types::pem::PemObject as _;

    for admin_cert in [&by_subject, &by_fingerprint] {
        let channel = signerd
            .channel_as(Some(admin_cert), pki.ca.cert_path())
            .await
            .unwrap();
        let tokens = TokenAdminClient::new(channel)
            .list_tokens(pb::ListTokensRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(tokens.tokens.len(), 1);
    }

    // notary-server's client certificate passes mTLS but is no admin.
    let channel = signerd.channel().await.unwrap();
    let err = TokenAdminClient::new(channel.clone())
        .generate_key_pair(ec_key(&[7], "nope"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .contains("'CN=notary-server-client' is not an admin")
            && err.message().contains("admin.admin_clients")
            && err.message().contains("sha256:"),
        "{}",
        err.message()
    );
    // ... and keeps its Notary API.
    KeyManagementClient::new(channel)
        .create_key(CreateKeyRequest {
            algorithm: "ed25519".into(),
            gun: "g".into(),
            role: "snapshot".into(),
        })
        .await
        .unwrap();

    // The admin CLI over mTLS: the admin certificate works, the other is refused (exit 4).
    let cli = AdminCli::new(&socket, &dir.subdir("cli").unwrap()).unwrap();
    let addr = signerd.addr().to_string();
    let tls_args = |cert: &signerd_tests::IssuedCert| {
        vec![
            "--addr".to_string(),
            addr.clone(),
            "--cert".into(),
            cert.cert.display().to_string(),
            "--key-file".into(),
            cert.key.display().to_string(),
            "--server-ca".into(),
            pki.ca.cert_path().display().to_string(),
        ]
    };
    let mut args = vec!["key".to_string(), "list".into()];
    args.extend(tls_args(&by_subject));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli.run_ok(&argv);
    assert!(out.contains("snapshot"), "{out}");
    let mut args = vec!["key".to_string(), "list".into()];
    args.extend(tls_args(&pki.client));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli.run_code(&argv, 4);
    assert!(out.contains("is not an admin"), "{out}");
    drop(signerd);
}

#[tokio::test]
async fn a_stale_socket_left_by_a_crash_is_replaced() {
    let mut s = setup("admin-stale-socket", "");
    s.signerd.process().kill_hard().unwrap();
    assert!(s.socket.exists(), "a killed signerd leaves its socket file");
    s.signerd.restart().unwrap();
    wait_for_socket(&s.socket, &s.signerd).unwrap();
    client(&s.socket)
        .await
        .list_tokens(pb::ListTokensRequest {})
        .await
        .unwrap();
    assert!(
        s.signerd.logs().contains("replacing a stale admin socket"),
        "{}",
        s.signerd.logs()
    );
    // A clean stop removes it.
    s.signerd.stop().unwrap();
    assert!(!s.socket.exists(), "the socket file is removed on shutdown");
}

#[test]
fn check_config_reports_the_admin_socket_and_who_may_use_it() {
    let dir = TestDir::new("admin-check-config").unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let config = dir.path().join("signerd.toml");
    std::fs::write(
        &config,
        "[admin]\nsocket = \"/run/signerd-test/admin.sock\"\nallow_gids = [50]\nadmin_clients = [\"CN=ops\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(signerd_tests::signerd::signerd_bin())
        .current_dir(dir.path())
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .args(["--tls-cert", pki.server.cert.to_str().unwrap()])
        .args(["--tls-key", pki.server.key.to_str().unwrap()])
        .args(["--client-ca", pki.ca.cert_path().to_str().unwrap()])
        .args(["--token", &token.uri])
        .env("SOFTHSM2_CONF", token.softhsm.conf())
        .output()
        .unwrap();
    let text = signerd_tests::admin::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "admin API: socket /run/signerd-test/admin.sock; socket peers with uid [{}] or gid [50]; 1 admin client certificate(s) on the mTLS port",
            my_uid()
        )),
        "{text}"
    );

    // A malformed admin client entry is a config error, named.
    std::fs::write(&config, "[admin]\nadmin_clients = [\"ops\"]\n").unwrap();
    let out = std::process::Command::new(signerd_tests::signerd::signerd_bin())
        .current_dir(dir.path())
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let text = signerd_tests::admin::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("admin.admin_clients entry \"ops\" is neither a subject"),
        "{text}"
    );
}
