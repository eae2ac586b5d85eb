//! Wire conformance of signerd's Notary signer API, checked with independent verifiers
//! (`p256`, `ed25519-dalek`, `rsa`), against a real SoftHSM token per test.

use p256::ecdsa::signature::Verifier as _;
use sha2::Digest as _;
use signerd_proto::health::health_check_response::ServingStatus;
use signerd_proto::health::HealthCheckRequest;
use signerd_proto::notary::{CreateKeyRequest, KeyId, PublicKey, SignatureRequest};
use signerd_tests::signerd::{Signerd, TestToken};
use signerd_tests::{TestDir, TestPki};
use tonic::Code;

/// Fields drop in order: signerd stops (and shows its logs on failure) before its folder goes.
struct Setup {
    signerd: Signerd,
    token: TestToken,
    pki: TestPki,
    dir: TestDir,
}

fn setup(name: &str) -> Setup {
    start(name, None)
}

/// [`setup`], signerd started with `config` (a TOML config file's text) as well.
fn setup_with(name: &str, config: &str) -> Setup {
    start(name, Some(config))
}

fn start(name: &str, config: Option<&str>) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let token = TestToken::create(dir.path()).unwrap();
    let file = dir.path().join("signerd.toml");
    let args = match config {
        Some(config) => {
            std::fs::write(&file, config).unwrap();
            vec!["--config", file.to_str().unwrap()]
        }
        None => Vec::new(),
    };
    let signerd = Signerd::start_with(dir.path(), "signerd", &token, &pki, &args).unwrap();
    Setup {
        dir,
        pki,
        token,
        signerd,
    }
}

fn tuf_key_id(keytype: &str, public: &[u8]) -> String {
    use base64::Engine as _;
    let canonical = format!(
        r#"{{"keytype":"{keytype}","keyval":{{"private":null,"public":"{}"}}}}"#,
        base64::engine::general_purpose::STANDARD.encode(public)
    );
    hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
}

fn key_id(id: &str) -> KeyId {
    KeyId { id: id.to_owned() }
}

/// The health status signerd answers for `service`.
async fn health(c: &mut signerd_tests::signerd::Clients, service: &str) -> i32 {
    let request = HealthCheckRequest {
        service: service.into(),
    };
    c.health
        .check(request)
        .await
        .expect("health answers")
        .into_inner()
        .status
}

fn create_req(algorithm: &str, gun: &str, role: &str) -> CreateKeyRequest {
    CreateKeyRequest {
        algorithm: algorithm.into(),
        gun: gun.into(),
        role: role.into(),
    }
}

fn sign_req(key: Option<KeyId>, content: impl Into<Vec<u8>>) -> SignatureRequest {
    SignatureRequest {
        key_id: key,
        content: content.into(),
    }
}

/// An ECDSA key made through `c` for `gun` and `role`: its ID, and CreateKey's answer.
async fn create_ecdsa(
    c: &mut signerd_tests::signerd::Clients,
    gun: &str,
    role: &str,
) -> (String, PublicKey) {
    let created = c
        .keys
        .create_key(create_req("ecdsa", gun, role))
        .await
        .unwrap()
        .into_inner();
    let id = created.key_info.clone().unwrap().key_id.unwrap().id;
    (id, created)
}

/// Creates a key, checks CreateKey/GetKeyInfo/Sign answers, returns (public key, signature).
async fn round_trip(
    s: &Setup,
    algorithm: &str,
    method: &str,
    content: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let mut c = s.signerd.clients().await;
    let created = c
        .keys
        .create_key(create_req(algorithm, "example.com/org/app", "timestamp"))
        .await
        .unwrap()
        .into_inner();
    let info = created.key_info.clone().expect("keyInfo always filled");
    let id = info.key_id.expect("keyID filled").id;
    assert_eq!(
        info.algorithm.expect("algorithm filled").algorithm,
        algorithm
    );
    assert_eq!(
        id,
        tuf_key_id(algorithm, &created.public_key),
        "key ID is the TUF key ID"
    );
    assert_eq!(id.len(), 64);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));

    let got = c.keys.get_key_info(key_id(&id)).await.unwrap().into_inner();
    assert_eq!(got.public_key, created.public_key);
    assert_eq!(got.role, "timestamp");
    assert_eq!(got.key_info, created.key_info);

    let sig = c
        .signer
        .sign(sign_req(Some(key_id(&id)), content.to_vec()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sig.algorithm.unwrap().algorithm, method);
    assert_eq!(
        sig.key_info, created.key_info,
        "Sign echoes the key's ID and algorithm"
    );
    (created.public_key, sig.content)
}

#[tokio::test]
async fn ecdsa_public_key_is_spki_and_signature_is_raw_r_s_over_sha256() {
    let s = setup("wire-ecdsa");
    let content = br#"{"_type":"Timestamp","version":1}"#;
    let (public, sig) = round_trip(&s, "ecdsa", "ecdsa", content).await;
    assert_eq!(public.len(), 91, "DER SubjectPublicKeyInfo for P-256");
    use p256::pkcs8::DecodePublicKey as _;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&public).unwrap();
    assert_eq!(sig.len(), 64, "raw r||s, not DER");
    let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    vk.verify(content, &sig)
        .expect("verifies over SHA-256 of the content");
    assert!(vk.verify(b"other", &sig).is_err());
}

#[tokio::test]
async fn ed25519_public_key_is_raw_and_signature_is_pure_eddsa() {
    let s = setup("wire-ed25519");
    let (public, sig) = round_trip(&s, "ed25519", "eddsa", b"content").await;
    assert_eq!(public.len(), 32, "raw 32 bytes, not SPKI");
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public.try_into().unwrap()).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
    vk.verify_strict(b"content", &sig).unwrap();
}

#[tokio::test]
async fn rsa_public_key_is_spki_and_signature_is_pss_sha256_salt_32() {
    let s = setup("wire-rsa");
    let (public, sig) = round_trip(&s, "rsa", "rsapss", b"content").await;
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    let pk = rsa::RsaPublicKey::from_public_key_der(&public).unwrap();
    assert_eq!(pk.size() * 8, 3072, "default RSA size");
    let digest = sha2::Sha256::digest(b"content");
    pk.verify(rsa::Pss::new_with_salt::<sha2::Sha256>(32), &digest, &sig)
        .unwrap();
}

#[tokio::test]
async fn errors_have_precise_codes_and_the_daemon_stays_up() {
    let mut s = setup("wire-errors");
    let mut c = s.signerd.clients().await;
    let unknown = "ab".repeat(32);

    let e = c.keys.get_key_info(key_id(&unknown)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains(&unknown));
    let e = c
        .signer
        .sign(sign_req(Some(key_id(&unknown)), b"x".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // The Go signer crashes on an unset key ID; signerd answers and stays up.
    let e = c
        .signer
        .sign(sign_req(None, b"x".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = c
        .signer
        .sign(sign_req(Some(key_id("")), Vec::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = c.keys.get_key_info(key_id("not-hex")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("64"),
        "says what a key ID is: {}",
        e.message()
    );

    let e = c
        .keys
        .create_key(create_req("dsa", "g", "timestamp"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("ecdsa, ed25519 or rsa"),
        "{}",
        e.message()
    );

    // DeleteKey of an unknown key is OK (idempotent), and deleting a real key removes it.
    c.keys
        .delete_key(key_id(&unknown))
        .await
        .expect("idempotent delete");
    let (id, _) = create_ecdsa(&mut c, "g", "snapshot").await;
    c.keys.delete_key(key_id(&id)).await.unwrap();
    assert_eq!(
        c.keys.get_key_info(key_id(&id)).await.unwrap_err().code(),
        Code::NotFound
    );

    s.signerd
        .process()
        .ensure_running()
        .expect("signerd survived every bad request");
    assert_eq!(health(&mut c, "").await, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn health_serves_notary_names_and_refuses_unknown_services() {
    let s = setup("wire-health");
    let mut c = s.signerd.clients().await;
    for service in [
        "",
        "grpc.health.v1.Health.KeyManagement",
        "grpc.health.v1.Health.Signer",
    ] {
        assert_eq!(
            health(&mut c, service).await,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    let e = c
        .health
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn health_is_a_live_probe_not_a_cached_flag() {
    let s = setup("wire-health-live");
    let mut c = s.signerd.clients().await;
    assert_eq!(
        health(&mut c, "grpc.health.v1.Health.Signer").await,
        ServingStatus::Serving as i32
    );
    // Take the token away under the running daemon: its files disappear.
    let token_dir = s.token.softhsm.token_dir();
    let moved = s.dir.path().join("token-away");
    std::fs::rename(&token_dir, &moved).unwrap();
    std::fs::create_dir(&token_dir).unwrap();
    assert_eq!(
        health(&mut c, "grpc.health.v1.Health.Signer").await,
        ServingStatus::NotServing as i32
    );
    let e = c
        .signer
        .sign(sign_req(Some(key_id(&"cd".repeat(32))), b"x".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "token gone: {e:?}");
    // Put it back: signerd reconnects by itself (it re-initializes the module at most every
    // two seconds while the token is missing).
    std::fs::remove_dir(&token_dir).unwrap();
    std::fs::rename(&moved, &token_dir).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while health(&mut c, "grpc.health.v1.Health.Signer").await != ServingStatus::Serving as i32 {
        assert!(
            std::time::Instant::now() < deadline,
            "signerd did not reconnect to the token"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn clients_without_a_certificate_or_from_another_ca_are_refused() {
    let s = setup("wire-mtls");
    let ca = s.pki.ca.cert_path().to_owned();
    let refused = |r: Result<(), tonic::Status>| assert!(r.is_err(), "must be refused");

    // No client certificate: the handshake (or the first call on it) fails.
    let call = |channel: tonic::transport::Channel| async move {
        let mut h = signerd_proto::health::health_client::HealthClient::new(channel);
        h.check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
    };
    match s.signerd.channel_as(None, &ca).await {
        Err(_) => {}
        Ok(channel) => refused(call(channel).await),
    }
    // A certificate from an unrelated CA.
    let other = signerd_tests::TestCa::new(s.dir.path(), "other-ca").unwrap();
    let stranger = other.issue_client("stranger").unwrap();
    match s.signerd.channel_as(Some(&stranger), &ca).await {
        Err(_) => {}
        Ok(channel) => refused(call(channel).await),
    }
    // The right certificate works on the same server.
    call(s.signerd.channel().await.unwrap()).await.unwrap();
}

#[tokio::test]
async fn wrong_pin_answers_failed_precondition_and_says_what_to_do() {
    let dir = TestDir::new("wire-pin").unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let token = TestToken::create(dir.path()).unwrap();
    std::fs::write(&token.pin_file, "000000").unwrap();
    let mut signerd = Signerd::start(dir.path(), "signerd", &token, &pki).unwrap();
    let mut c = signerd.clients().await;
    let e = c
        .keys
        .create_key(create_req("ecdsa", "g", "timestamp"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains(&token.pin_file.display().to_string()),
        "{}",
        e.message()
    );
    assert_eq!(health(&mut c, "").await, ServingStatus::NotServing as i32);
    // Fix the PIN file: no restart needed.
    std::fs::write(&token.pin_file, signerd_tests::signerd::TEST_PIN).unwrap();
    // The supervisor logs in again in the background (backoff at most 2 s): no restart, and no
    // request has to come first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while health(&mut c, "").await != ServingStatus::Serving as i32 {
        assert!(
            std::time::Instant::now() < deadline,
            "still NOT_SERVING 10 s after the PIN file was fixed:\n{}",
            signerd.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!signerd.logs().contains("000000"), "no PIN in logs");
    signerd.stop().unwrap();
}

#[tokio::test]
async fn keys_survive_a_restart_and_are_shared_by_two_daemons_on_one_token() {
    let mut s = setup("wire-shared");
    let second = Signerd::start(s.dir.path(), "signerd-2", &s.token, &s.pki).unwrap();
    let mut one = s.signerd.clients().await;
    let mut two = second.clients().await;
    let (id, created) = create_ecdsa(&mut one, "g", "timestamp").await;
    let sig = two
        .signer
        .sign(sign_req(Some(key_id(&id)), b"shared".to_vec()))
        .await
        .expect("a key made through one signerd signs through the other")
        .into_inner();
    use p256::pkcs8::DecodePublicKey as _;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&created.public_key).unwrap();
    vk.verify(
        b"shared",
        &p256::ecdsa::Signature::from_slice(&sig.content).unwrap(),
    )
    .unwrap();

    s.signerd.restart().unwrap();
    let mut again = s.signerd.clients().await;
    let info = again
        .keys
        .get_key_info(key_id(&id))
        .await
        .expect("found in the token after restart");
    assert_eq!(info.into_inner().public_key, created.public_key);
}

#[tokio::test]
async fn one_log_line_per_key_operation_without_secrets() {
    let mut s = setup("wire-logs");
    let mut c = s.signerd.clients().await;
    let (id, _) = create_ecdsa(&mut c, "example.com/app", "snapshot").await;
    c.signer
        .sign(sign_req(Some(key_id(&id)), b"SECRET-CONTENT".to_vec()))
        .await
        .unwrap();
    let status = s.signerd.stop().unwrap();
    assert!(status.success(), "SIGTERM drains and exits 0: {status:?}");
    let logs = s.signerd.logs();
    let sign_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("method=\"Sign\""))
        .collect();
    assert_eq!(sign_lines.len(), 1, "{logs}");
    let line = sign_lines[0];
    for field in [
        id.as_str(),
        "gun=\"example.com/app\"",
        "role=\"snapshot\"",
        "notary-server-client",
        "outcome=\"ok\"",
        "duration_ms=",
    ] {
        assert!(line.contains(field), "missing {field} in {line}");
    }
    assert!(logs.contains("method=\"CreateKey\""), "{logs}");
    assert!(
        !logs.contains("SECRET-CONTENT") && !logs.contains(signerd_tests::signerd::TEST_PIN),
        "{logs}"
    );
    assert!(logs.contains("drained"), "{logs}");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish() {
    in_flight_request_finishes_on_sigterm("wire-drain", "").await;
}

/// On a runtime of one thread a connection's calls run in the connection's own task
/// (`signerd::h2::Streams`): the drain still waits for them.
#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_on_one_runtime_thread() {
    in_flight_request_finishes_on_sigterm("wire-drain-1rt", "runtime_threads = 1\n").await;
}

async fn in_flight_request_finishes_on_sigterm(name: &str, server: &str) {
    // SoftHSM takes a second or more to make an RSA-4096 key: long enough to be in flight when
    // SIGTERM arrives. On a loaded machine it can take longer than the default 10 s grace, which
    // is not what this test is about: give the drain a minute.
    let mut s = setup_with(
        name,
        &format!("[server]\n{server}shutdown_grace_secs = 60\n[token]\nrsa_bits = 4096\n"),
    );
    let signerd = &mut s.signerd;
    let mut c = signerd.clients().await;
    let create =
        tokio::spawn(async move { c.keys.create_key(create_req("rsa", "g", "timestamp")).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let pid = nix::unistd::Pid::from_raw(signerd.process().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let created = create
        .await
        .unwrap()
        .expect("the request in flight finished")
        .into_inner();
    assert!(!created.public_key.is_empty());
    let status = signerd.stop().unwrap();
    assert!(status.success(), "{status:?}");
    let logs = signerd.logs();
    let drain = logs.find("draining").expect("logged the drain");
    let created_at = logs
        .find("method=\"CreateKey\"")
        .expect("logged the key operation");
    assert!(
        created_at > drain,
        "the operation finished during the drain:\n{logs}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_operation_fields() {
    let dir = TestDir::new("wire-json").unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let token = TestToken::create(dir.path()).unwrap();
    let mut signerd = Signerd::start_with(
        dir.path(),
        "signerd",
        &token,
        &pki,
        &["--log-format", "json"],
    )
    .unwrap();
    let mut c = signerd.clients().await;
    c.keys
        .create_key(create_req("ed25519", "example.com/j", "timestamp"))
        .await
        .unwrap();
    signerd.stop().unwrap();
    let logs = std::fs::read_to_string(signerd.process().stderr_log()).unwrap();
    let mut ops = 0;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["method"] == "CreateKey" {
            ops += 1;
            assert_eq!(v["gun"], "example.com/j");
            assert_eq!(v["role"], "timestamp");
            assert_eq!(v["outcome"], "ok");
            // The caller: its subject and the SHA-256 fingerprint of its certificate.
            let client = v["client"].as_str().unwrap();
            assert!(
                client.starts_with("CN=notary-server-client sha256:"),
                "{client}"
            );
            assert_eq!(
                client.len(),
                "CN=notary-server-client sha256:".len() + 64,
                "{client}"
            );
            assert_eq!(v["key_id"].as_str().unwrap().len(), 64);
            assert!(v["duration_ms"].is_number());
        }
    }
    assert_eq!(ops, 1, "{logs}");
}

/// signerd on one runtime thread (as on one CPU, where a connection's calls run in the
/// connection's own task): 64 calls at a time on one connection, each answered with a
/// signature over its own content.
#[tokio::test]
async fn on_one_runtime_thread_many_calls_on_one_connection_are_each_answered() {
    use p256::pkcs8::DecodePublicKey as _;
    let mut s = setup_with("wire-1rt", "[server]\nruntime_threads = 1\n");
    let signerd = &mut s.signerd;
    let mut c = signerd.clients().await;
    let (id, created) = create_ecdsa(&mut c, "example.com/one", "timestamp").await;
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(&created.public_key).unwrap();
    // One connection, as notary-server keeps.
    let channel = signerd.channel().await.expect("mTLS connection");
    for round in 0..4 {
        let calls: Vec<_> = (0..64)
            .map(|i| {
                let mut signer =
                    signerd_proto::notary::signer_client::SignerClient::new(channel.clone());
                let content = format!("round {round}, call {i}").into_bytes();
                let request = sign_req(Some(key_id(&id)), content.clone());
                tokio::spawn(async move { (content, signer.sign(request).await) })
            })
            .collect();
        for call in calls {
            let (content, answer) = call.await.unwrap();
            let signature = answer.expect("every call is answered").into_inner();
            key.verify(
                &content,
                &p256::ecdsa::Signature::from_slice(&signature.content).unwrap(),
            )
            .expect("each answer signs its own call's content");
        }
    }
    let status = signerd.stop().unwrap();
    assert!(status.success(), "{status:?}");
}
