//! Key generation under faults, with the real daemon: signerd killed (SIGKILL) between
//! generating a pair and naming it serves nothing of the half-made pair and collects it at the
//! next start (issue 11, acceptance 3); keys that want the PIN before each signature
//! (`CKA_ALWAYS_AUTHENTICATE`, made by `pkcs11-tool --always-auth`) sign; and the log stays
//! free of ERROR lines that are not faults.
//!
//! The kill needs a signerd that stops between the steps: the `fault-injection` build
//! (`target/debug/signerd-fault-injection`, [`signerd_tests::artifacts::signerd_fault_bin`]),
//! which pauses where `SIGNERD_FAULT_PAUSE` says and writes `SIGNERD_FAULT_MARKER` there. The
//! token is inspected with cryptoki in the test process, as any other PKCS#11 application sees
//! it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use der::Decode as _;
use p256::pkcs8::EncodePublicKey as _;
use signerd_proto::admin as pb;
use signerd_proto::notary::{CreateKeyRequest, KeyId as KeyIdMsg, SignatureRequest};
use signerd_tests::admin::{client, start_signerd, AdminCli};
use signerd_tests::artifacts::{signerd_fault_bin, SIGNERD_BIN_ENV};
use signerd_tests::signerd::{signerd_bin, Signerd, TestToken, TEST_PIN};
use signerd_tests::{TestDir, TestPki};
use signerd_token::softhsm::SOFTHSM_MODULE;
use signerd_token::{KeyAlgorithm, KeyId};
use tonic::Code;

/// How long the fault build gets to reach its pause point, and a start to collect.
const WAIT: Duration = Duration::from_secs(60);

/// One key object as cryptoki reads it.
#[derive(Clone, Debug)]
struct Seen {
    class: ObjectClass,
    id: Vec<u8>,
    label: String,
    /// DER SPKI of a public key (P-256 and RSA), for its TUF key ID.
    spki: Option<Vec<u8>>,
}

impl Seen {
    fn pending(&self) -> bool {
        self.label.starts_with("signerd-pending:")
    }
}

/// The token through cryptoki in this process, logged in; finalized before returning.
fn with_token<T>(token: &TestToken, f: impl FnOnce(&Session) -> T) -> T {
    std::env::set_var("SOFTHSM2_CONF", token.softhsm.conf());
    let module = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    module
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = module.get_slots_with_token().unwrap()[0];
    let session = module.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::from(TEST_PIN.to_owned())))
        .unwrap();
    let out = f(&session);
    drop(session);
    module.finalize().unwrap();
    out
}

/// Every key object in the token.
fn key_objects(session: &Session) -> Vec<(ObjectHandle, Seen)> {
    let mut seen = Vec::new();
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        for handle in session
            .find_objects(&[Attribute::Token(true), Attribute::Class(class)])
            .unwrap()
        {
            let (mut id, mut label) = (Vec::new(), String::new());
            for attr in session
                .get_attributes(handle, &[AttributeType::Id, AttributeType::Label])
                .unwrap()
            {
                match attr {
                    Attribute::Id(v) => id = v,
                    Attribute::Label(v) => label = String::from_utf8(v).unwrap(),
                    _ => {}
                }
            }
            let spki = (class == ObjectClass::PUBLIC_KEY).then(|| public_spki(session, handle));
            seen.push((
                handle,
                Seen {
                    class,
                    id,
                    label,
                    spki: spki.flatten(),
                },
            ));
        }
    }
    seen
}

/// DER SubjectPublicKeyInfo of a P-256 or RSA public key object.
fn public_spki(session: &Session, handle: ObjectHandle) -> Option<Vec<u8>> {
    let (mut point, mut n, mut e) = (None, None, None);
    for attr in session
        .get_attributes(
            handle,
            &[
                AttributeType::EcPoint,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
            ],
        )
        .unwrap()
    {
        match attr {
            Attribute::EcPoint(v) => point = Some(v),
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            _ => {}
        }
    }
    if let Some(point) = point {
        let point = der::asn1::OctetString::from_der(&point).ok()?;
        let key = p256::PublicKey::from_sec1_bytes(point.as_bytes()).ok()?;
        return Some(key.to_public_key_der().ok()?.as_bytes().to_vec());
    }
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&n?),
        rsa::BigUint::from_bytes_be(&e?),
    )
    .ok()?;
    Some(key.to_public_key_der().ok()?.as_bytes().to_vec())
}

/// The TUF key ID of a public key object (P-256 or RSA, by its SPKI).
fn tuf_id(seen: &Seen) -> KeyId {
    let spki = seen.spki.as_deref().expect("a public key object");
    let algorithm = if spki.len() > 200 {
        KeyAlgorithm::Rsa
    } else {
        KeyAlgorithm::Ecdsa
    };
    KeyId::of_public_key(algorithm, spki)
}

/// Moves every pending marker's time `secs` seconds back, as if the crash were that old.
fn backdate_pending(session: &Session, secs: u64) {
    for (handle, seen) in key_objects(session) {
        let Some(rest) = seen.label.strip_prefix("signerd-pending:") else {
            continue;
        };
        let (time, label) = rest.split_once(':').unwrap();
        let time: u64 = time.parse().unwrap();
        let older = format!("signerd-pending:{}:{label}", time - secs);
        session
            .update_attributes(handle, &[Attribute::Label(older.into_bytes())])
            .unwrap();
    }
}

/// Runs `f` with `SIGNERD_BIN` naming the fault-injection build, paused at `point`.
fn with_fault_build<T>(point: &str, marker: &Path, f: impl FnOnce() -> T) -> T {
    // One process per test (nextest): these variables are this test's own, and signerd
    // inherits them.
    let normal = signerd_bin();
    std::env::set_var(SIGNERD_BIN_ENV, signerd_fault_bin());
    std::env::set_var("SIGNERD_FAULT_PAUSE", point);
    std::env::set_var("SIGNERD_FAULT_MARKER", marker);
    let out = f();
    std::env::set_var(SIGNERD_BIN_ENV, normal);
    std::env::remove_var("SIGNERD_FAULT_PAUSE");
    std::env::remove_var("SIGNERD_FAULT_MARKER");
    out
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Crash {
    dir: TestDir,
    pki: TestPki,
    token: TestToken,
}

impl Crash {
    fn new(name: &str) -> Crash {
        let dir = TestDir::new(name).unwrap();
        let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
        let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
        Crash { dir, pki, token }
    }

    fn start(&self, name: &str) -> (Signerd, PathBuf) {
        start_signerd(&self.dir.subdir(name).unwrap(), &self.token, &self.pki, "").unwrap()
    }

    /// Starts the fault build paused at `point`, asks it for a key, waits for the pause and
    /// leaves signerd stopped there (still running).
    async fn create_key_paused_at(&self, point: &str) -> (Signerd, PathBuf) {
        let marker = self.dir.path().join(format!("paused-{point}"));
        let (signerd, socket) = with_fault_build(point, &marker, || self.start("fault"));
        let mut keys = signerd.clients().await.keys;
        // Never answered: signerd is killed while it waits.
        tokio::spawn(async move {
            let _ = keys
                .create_key(CreateKeyRequest {
                    algorithm: "ecdsa".into(),
                    gun: "example.com/crash".into(),
                    role: "timestamp".into(),
                })
                .await;
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !marker.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "no pause:\n{}",
                signerd.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), point);
        (signerd, socket)
    }
}

/// What the admin API lists, and whether the Notary port knows `id`.
async fn served(signerd: &Signerd, socket: &Path, id: &KeyId) -> (Vec<pb::Object>, Code) {
    let objects = client(socket)
        .await
        .find_objects(pb::FindObjectsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .objects;
    let clients = signerd.clients().await;
    let code = match clients
        .keys
        .clone()
        .get_key_info(KeyIdMsg { id: id.to_string() })
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    let sign = clients
        .signer
        .clone()
        .sign(SignatureRequest {
            key_id: Some(KeyIdMsg { id: id.to_string() }),
            content: b"content".to_vec(),
        })
        .await;
    assert_eq!(
        sign.map(|_| Code::Ok).unwrap_or_else(|s| s.code()),
        code,
        "Sign and GetKeyInfo agree"
    );
    (objects, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pair_killed_before_its_name_is_never_served_and_collected_at_the_next_start() {
    let c = Crash::new("keygen-killed-generated");
    let (mut fault, socket) = c.create_key_paused_at("generated").await;

    // Paused between generation and naming: the pair is in the token, pending.
    let pending = with_token(&c.token, key_objects);
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert!(
        pending.iter().all(|(_, s)| s.pending() && s.id.len() == 16),
        "{pending:?}"
    );
    assert!(pending[0]
        .1
        .label
        .ends_with(":notary:timestamp@example.com/crash"));
    let public = pending
        .iter()
        .find(|(_, s)| s.class == ObjectClass::PUBLIC_KEY)
        .unwrap();
    let id = tuf_id(&public.1);
    // ... and served nowhere, by the signerd making it.
    let (objects, code) = served(&fault, &socket, &id).await;
    assert!(objects.is_empty(), "{objects:?}");
    assert_eq!(code, Code::NotFound);

    fault.process().kill_hard().unwrap();
    assert_eq!(
        with_token(&c.token, key_objects).len(),
        2,
        "the kill left the pair"
    );

    // A start right after: the marker is young (a replica might be naming it), so it stays,
    // still served nowhere.
    let (mut signerd, socket) = c.start("after-kill");
    let (objects, code) = served(&signerd, &socket, &id).await;
    assert!(objects.is_empty(), "{objects:?}");
    assert_eq!(code, Code::NotFound);
    let cli = AdminCli::new(&socket, &c.dir.subdir("cli").unwrap()).unwrap();
    let token_args = ["--token", c.token.uri.as_str()];
    let dry = cli.run_ok(&[&["key", "gc", "--dry-run"][..], &token_args].concat());
    assert_eq!(dry.matches("keep (too young)").count(), 2, "{dry}");
    assert!(
        dry.contains("would remove 0, would complete 0, kept 2"),
        "{dry}"
    );
    signerd.stop().unwrap();
    assert_eq!(with_token(&c.token, key_objects).len(), 2);

    // Ten minutes later (the marker says so): `key gc --dry-run` would remove it and does not.
    with_token(&c.token, |s| backdate_pending(s, 600));
    let dry = cli.run_ok(&[&["key", "gc", "--dry-run"][..], &token_args].concat());
    assert_eq!(dry.matches("  remove").count(), 2, "{dry}");
    assert!(dry.contains("run again without --dry-run"), "{dry}");
    assert_eq!(
        with_token(&c.token, key_objects).len(),
        2,
        "a dry run changes nothing"
    );

    // The next start collects it.
    signerd.restart().unwrap();
    wait_for("the start to collect the pair", || {
        with_token(&c.token, key_objects).is_empty()
    });
    wait_for("the collection's log line", || {
        signerd
            .logs()
            .contains("collected key objects left half-made by an interrupted key generation")
    });
    assert!(signerd.logs().contains("removed=2"), "{}", signerd.logs());

    // And keys are made as always.
    let created = signerd
        .clients()
        .await
        .keys
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "example.com/crash".into(),
            role: "timestamp".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let made = with_token(&c.token, key_objects);
    assert_eq!(made.len(), 2);
    assert!(made.iter().all(|(_, s)| !s.pending()
        && s.label == "notary:timestamp@example.com/crash"
        && hex::encode(&s.id)
            == created
                .key_info
                .as_ref()
                .unwrap()
                .key_id
                .as_ref()
                .unwrap()
                .id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pair_killed_after_its_private_half_was_named_is_completed_at_the_next_start() {
    let c = Crash::new("keygen-killed-named");
    let (mut fault, _socket) = c.create_key_paused_at("private-named").await;
    let seen = with_token(&c.token, key_objects);
    let private = seen
        .iter()
        .find(|(_, s)| s.class == ObjectClass::PRIVATE_KEY)
        .unwrap();
    let public = seen
        .iter()
        .find(|(_, s)| s.class == ObjectClass::PUBLIC_KEY)
        .unwrap();
    // The key is whole (both halves carry its TUF key ID); only the public label is pending.
    let id = tuf_id(&public.1);
    assert_eq!(private.1.id, id.as_bytes());
    assert_eq!(public.1.id, id.as_bytes());
    assert_eq!(private.1.label, "notary:timestamp@example.com/crash");
    assert!(public.1.pending(), "{:?}", public.1);
    fault.process().kill_hard().unwrap();

    // However young the marker, the start finishes the name: the key may already be in use.
    let (signerd, socket) = c.start("after-kill");
    wait_for("the start to complete the public half", || {
        with_token(&c.token, key_objects)
            .iter()
            .all(|(_, s)| !s.pending())
    });
    let (objects, code) = served(&signerd, &socket, &id).await;
    assert_eq!(code, Code::Ok);
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert!(objects.iter().all(|o| o
        .r#ref
        .as_ref()
        .is_some_and(|r| r.label == "notary:timestamp@example.com/crash")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_made_with_always_auth_signs_through_signerd() {
    let c = Crash::new("keygen-always-auth");
    // As an operator makes one on a token: pkcs11-tool --always-auth.
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", c.token.softhsm.conf())
        .args([
            "--module",
            SOFTHSM_MODULE,
            "--login",
            "--pin",
            TEST_PIN,
            "--keypairgen",
            "--key-type",
            "rsa:2048",
            "--id",
            "07",
            "--label",
            "notary:timestamp@example.com/yubikey",
            "--usage-sign",
            "--always-auth",
        ])
        .output()
        .expect("pkcs11-tool (package opensc)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Named by its TUF key ID, as signerd's keys are, so the Notary port finds it.
    let id = with_token(&c.token, |session| {
        let seen = key_objects(session);
        let public = seen
            .iter()
            .find(|(_, s)| s.class == ObjectClass::PUBLIC_KEY)
            .unwrap();
        let id = tuf_id(&public.1);
        for (handle, _) in &seen {
            session
                .update_attributes(*handle, &[Attribute::Id(id.as_bytes().to_vec())])
                .unwrap();
        }
        let private = seen
            .iter()
            .find(|(_, s)| s.class == ObjectClass::PRIVATE_KEY)
            .unwrap();
        let always = session
            .get_attributes(private.0, &[AttributeType::AlwaysAuthenticate])
            .unwrap();
        assert!(matches!(always[..], [Attribute::AlwaysAuthenticate(true)]));
        id
    });
    let (signerd, socket) = c.start("signerd");
    let content = b"{\"signed\":{\"_type\":\"Root\"}}".to_vec();
    let mut signer = signerd.clients().await.signer;
    for _ in 0..3 {
        let signature = signer
            .sign(SignatureRequest {
                key_id: Some(KeyIdMsg { id: id.to_string() }),
                content: content.clone(),
            })
            .await
            .unwrap_or_else(|s| panic!("{s:?}\n{}", signerd.logs()))
            .into_inner();
        let public = with_token(&c.token, |s| {
            key_objects(s)
                .into_iter()
                .find(|(_, o)| o.class == ObjectClass::PUBLIC_KEY)
                .and_then(|(_, o)| o.spki)
                .unwrap()
        });
        use rsa::pkcs8::DecodePublicKey as _;
        use sha2::Digest as _;
        let key = rsa::RsaPublicKey::from_public_key_der(&public).unwrap();
        key.verify(
            rsa::Pss::new::<sha2::Sha256>(),
            &sha2::Sha256::digest(&content),
            &signature.content,
        )
        .expect("a valid RSA-PSS signature from the token");
    }
    // Through the admin API too, with a mechanism that hashes.
    let signed = client(&socket)
        .await
        .sign(pb::SignRequest {
            key: Some(pb::ObjectRef {
                class: pb::ObjectClass::PrivateKey as i32,
                id: id.as_bytes().to_vec(),
                label: String::new(),
            }),
            mechanism: signerd_token::objects::ckm::SHA256_RSA_PKCS,
            data: content.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", signerd.logs()));
    assert_eq!(signed.into_inner().signature.len(), 256);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mechanism_listing_writes_no_error_line() {
    let c = Crash::new("keygen-mechanism-log");
    let (mut signerd, socket) = c.start("quiet");
    let mechanisms = client(&socket)
        .await
        .list_mechanisms(pb::ListMechanismsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!mechanisms.mechanisms.is_empty());
    signerd.stop().unwrap();
    let logs = signerd.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
    assert!(!logs.contains("is not supported"), "{logs}");

    // The lines are there to filter: an operator who asks for them gets them.
    let mut token = c.token.clone();
    token.env.push((
        "SIGNERD_LOG_LEVEL".into(),
        "info,cryptoki::mechanism=error".into(),
    ));
    let (mut loud, socket) =
        start_signerd(&c.dir.subdir("loud").unwrap(), &token, &c.pki, "").unwrap();
    client(&socket)
        .await
        .list_mechanisms(pb::ListMechanismsRequest {})
        .await
        .unwrap();
    loud.stop().unwrap();
    let logs = loud.logs();
    assert!(
        logs.contains("Mechanism type") && logs.contains("is not supported"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_an_audit_trail_key_operations_write_no_log_lines() {
    let c = Crash::new("keygen-quiet-keyops");
    let audit = c.dir.subdir("audit").unwrap().join("audit.jsonl");
    let (signerd, _socket) = start_signerd(
        &c.dir.subdir("signerd").unwrap(),
        &c.token,
        &c.pki,
        &format!("[audit]\npath = {:?}\n", audit.display().to_string()),
    )
    .unwrap();
    let lines_before = signerd.logs().lines().count();
    let mut clients = signerd.clients().await;
    let created = clients
        .keys
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "example.com/quiet".into(),
            role: "snapshot".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.key_info.unwrap().key_id.unwrap();
    for _ in 0..20 {
        clients
            .signer
            .sign(SignatureRequest {
                key_id: Some(id.clone()),
                content: b"content".to_vec(),
            })
            .await
            .unwrap();
        clients.keys.get_key_info(id.clone()).await.unwrap();
    }
    // The trail has every operation; the log has none of them.
    let records = signerd_tests::audit::records(&audit);
    assert!(records.len() >= 41, "{} audit records", records.len());
    let logs = signerd.logs();
    let new: Vec<&str> = logs.lines().skip(lines_before).collect();
    // 41 operations: a line per operation would be 41 lines. (A late start-up line may land
    // here; none of them is about a key.)
    assert!(
        new.len() < 5 && !new.iter().any(|l| l.contains("keyop")),
        "log lines for key operations:\n{}",
        new.join("\n")
    );
    assert!(!logs.contains(&id.id), "{logs}");
}
