//! The token layer against a real SoftHSM2 token made for each test process.
//!
//! Run under cargo-nextest (scripts/test.sh does): each test is its own process, so each gets
//! its own token folder and `SOFTHSM2_CONF`.

use std::path::PathBuf;
use std::sync::Arc;

use p256::ecdsa::signature::Verifier as _;
use secrecy::SecretString;
use sha2::Digest as _;
use signerd_token::softhsm::SoftHsmDir;
use signerd_token::{
    ErrorKind, KeyAlgorithm, KeyId, KeyUsage, PinSource, Pkcs11Uri, Token, TokenConfig, TokenError,
};

struct Fixture {
    _dir: tempfile::TempDir,
    uri: String,
    pin_file: PathBuf,
}

const LABEL: &str = "signerd-test";

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let hsm = SoftHsmDir::create(dir.path()).unwrap();
    hsm.init_token(LABEL, "1234", "5678").unwrap();
    // One process per test (nextest): this process's module reads this conf.
    std::env::set_var("SOFTHSM2_CONF", hsm.conf());
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "1234\n").unwrap();
    Fixture {
        uri: hsm.uri(LABEL, &pin_file),
        pin_file,
        _dir: dir,
    }
}

fn open(f: &Fixture) -> Token {
    let uri: Pkcs11Uri = f.uri.parse().unwrap();
    Token::open(TokenConfig::new(uri)).unwrap()
}

fn usage(role: &str) -> KeyUsage {
    KeyUsage {
        gun: "example.com/org/app".into(),
        role: role.into(),
        ..Default::default()
    }
}

#[test]
fn ecdsa_key_signs_raw_r_s_over_sha256() {
    let f = fixture();
    let token = open(&f);
    let key = token
        .create_key(KeyAlgorithm::Ecdsa, &usage("timestamp"))
        .unwrap();
    assert_eq!(key.public_key.len(), 91);
    assert_eq!(
        key.id,
        KeyId::of_public_key(KeyAlgorithm::Ecdsa, &key.public_key)
    );
    let sig = token.sign(&key.id, b"{\"signed\":1}").unwrap();
    assert_eq!(sig.bytes.len(), 64);
    use p256::pkcs8::DecodePublicKey as _;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&key.public_key).unwrap();
    let s = p256::ecdsa::Signature::from_slice(&sig.bytes).unwrap();
    vk.verify(b"{\"signed\":1}", &s).unwrap();
    assert!(vk.verify(b"{\"signed\":2}", &s).is_err());
}

#[test]
fn ed25519_key_signs_pure() {
    let f = fixture();
    let token = open(&f);
    let key = token
        .create_key(KeyAlgorithm::Ed25519, &usage("snapshot"))
        .unwrap();
    assert_eq!(key.public_key.len(), 32);
    let sig = token.sign(&key.id, b"content").unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key.clone().try_into().unwrap())
        .unwrap();
    let s = ed25519_dalek::Signature::from_slice(&sig.bytes).unwrap();
    vk.verify_strict(b"content", &s).unwrap();
}

#[test]
fn rsa_key_signs_pss_sha256_salt_32() {
    let f = fixture();
    let uri: Pkcs11Uri = f.uri.parse().unwrap();
    let mut config = TokenConfig::new(uri);
    config.rsa_bits = 2048;
    let token = Token::open(config).unwrap();
    let key = token
        .create_key(KeyAlgorithm::Rsa, &usage("timestamp"))
        .unwrap();
    let sig = token.sign(&key.id, b"content").unwrap();
    use rsa::pkcs8::DecodePublicKey as _;
    let pk = rsa::RsaPublicKey::from_public_key_der(&key.public_key).unwrap();
    let digest = sha2::Sha256::digest(b"content");
    pk.verify(
        rsa::Pss::new_with_salt::<sha2::Sha256>(32),
        &digest,
        &sig.bytes,
    )
    .unwrap();
}

#[test]
fn keys_come_back_after_reopen_and_from_a_second_instance() {
    let f = fixture();
    let first = open(&f);
    let key = first
        .create_key(KeyAlgorithm::Ecdsa, &usage("targets/releases"))
        .unwrap();
    // A second module user in the same process shares the module; a new Token still finds the
    // key with an empty cache, by CKA_ID alone.
    let second = open(&f);
    let found = second.key_info(&key.id).unwrap();
    assert_eq!(found, key);
    assert_eq!(found.usage.role, "targets/releases");
    drop(first);
    let listed = second.list_keys().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, key.id);
}

#[test]
fn unknown_and_deleted_keys_are_not_found() {
    let f = fixture();
    let token = open(&f);
    let missing = KeyId::of_public_key(KeyAlgorithm::Ecdsa, b"nothing");
    assert!(matches!(
        token.key_info(&missing),
        Err(TokenError::KeyNotFound(_))
    ));
    assert_eq!(
        token.sign(&missing, b"x").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let key = token
        .create_key(KeyAlgorithm::Ed25519, &usage("snapshot"))
        .unwrap();
    assert!(token.delete_key(&key.id).unwrap());
    assert!(
        !token.delete_key(&key.id).unwrap(),
        "deleting twice is not an error"
    );
    assert!(matches!(
        token.sign(&key.id, b"x"),
        Err(TokenError::KeyNotFound(_))
    ));
}

#[test]
fn private_keys_are_sensitive_and_not_extractable() {
    let f = fixture();
    let token = open(&f);
    let key = token
        .create_key(KeyAlgorithm::Ecdsa, &usage("root"))
        .unwrap();
    token.close();
    // Look at the objects with pkcs11-tool, as an operator would.
    let out = std::process::Command::new("pkcs11-tool")
        .args([
            "--module",
            signerd_token::softhsm::SOFTHSM_MODULE,
            "--token-label",
            LABEL,
        ])
        .args([
            "--login",
            "--pin",
            "1234",
            "--list-objects",
            "--type",
            "privkey",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&key.id.to_string()), "{text}");
    assert!(
        text.contains("sensitive") && text.contains("never extractable"),
        "{text}"
    );
    assert!(text.contains("root@example.com/org/app"), "{text}");
}

#[test]
fn wrong_pin_is_refused_once_and_never_retried_until_it_changes() {
    let f = fixture();
    std::fs::write(&f.pin_file, "0000").unwrap();
    let token = open(&f);
    let err = token.connect().unwrap_err();
    assert!(matches!(err, TokenError::PinIncorrect { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::NeedsOperator);
    assert!(err.to_string().contains(&f.pin_file.display().to_string()));
    assert!(!err.to_string().contains("0000"));
    // Try many times: were the PIN offered each time, SoftHSM would lock the user PIN.
    for _ in 0..20 {
        assert!(matches!(
            token.probe(),
            Err(TokenError::PinIncorrect { .. })
        ));
    }
    std::fs::write(&f.pin_file, "1234").unwrap();
    token
        .probe()
        .expect("a corrected PIN file is picked up without a restart");
}

#[test]
fn inline_pin_source_override_and_missing_token() {
    let f = fixture();
    let uri: Pkcs11Uri = format!(
        "pkcs11:token=nope?module-path={}",
        signerd_token::softhsm::SOFTHSM_MODULE
    )
    .parse()
    .unwrap();
    let mut config = TokenConfig::new(uri);
    config.pin = Some(PinSource::Value(SecretString::from("1234")));
    let token = Token::open(config).unwrap();
    let err = token.probe().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.to_string().contains("'signerd-test'"),
        "names the tokens it saw: {err}"
    );
    drop(f);
}

#[test]
fn each_worker_thread_owns_a_session_of_its_own() {
    let f = fixture();
    let token = Arc::new(open(&f));
    let key = token
        .create_key(KeyAlgorithm::Ecdsa, &usage("timestamp"))
        .unwrap();
    let idle = token.stats().sessions_open;
    let all_signed = Arc::new(std::sync::Barrier::new(9));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let token = Arc::clone(&token);
            let all_signed = Arc::clone(&all_signed);
            std::thread::spawn(move || {
                let _worker = token.attach_worker();
                for j in 0..50 {
                    token.sign(&key.id, format!("{i}-{j}").as_bytes()).unwrap();
                }
                all_signed.wait();
                // Keep the session until the main thread has counted.
                all_signed.wait();
            })
        })
        .collect();
    all_signed.wait();
    let busy = token.stats();
    assert_eq!(
        busy.sessions_open,
        idle + 8,
        "one session per worker, kept between calls: {busy:?}"
    );
    assert_eq!(busy.sessions_busy, 0, "{busy:?}");
    all_signed.wait();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        token.stats().sessions_open,
        idle,
        "a worker's session closes with its guard"
    );
}

#[test]
fn recovers_when_the_module_is_finalized_underneath() {
    let f = fixture();
    let first = open(&f);
    let second = open(&f);
    let key = second
        .create_key(KeyAlgorithm::Ecdsa, &usage("timestamp"))
        .unwrap();
    // Finalizing the shared module kills second's sessions and the module's initialization.
    first.close();
    second
        .sign(&key.id, b"after")
        .expect("re-initializes, reconnects, logs in, signs");
}

#[test]
fn stats_follow_the_connection_without_a_token_call() {
    let f = fixture();
    // The supervisor connects as soon as the token is opened; a wrong PIN keeps it down until
    // the listener is registered (a right PIN would race the first reading).
    std::fs::write(&f.pin_file, "0000").unwrap();
    let token = open(&f);
    assert!(
        token.connect().is_err(),
        "the wrong PIN keeps the token down"
    );
    let before = token.stats();
    assert!(!before.up, "{before:?}");
    assert_eq!(before.sessions_busy, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    token.on_state_change(Box::new(move |up| {
        let _ = tx.send(up);
    }));
    std::fs::write(&f.pin_file, "1234").unwrap();
    token.connect().unwrap();
    let after = token.stats();
    assert!(after.up, "{after:?}");
    assert!(after.generation >= 1, "{after:?}");
    assert!(after.sessions_open >= 1, "{after:?}");
    assert_eq!(after.sessions_busy, 0, "no operation is running: {after:?}");
    assert_eq!(rx.try_recv(), Ok(true), "listeners hear the token come up");
}
