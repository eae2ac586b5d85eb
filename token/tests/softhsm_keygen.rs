//! Key generation's crash safety and keys that want the PIN per signature, against a real
//! SoftHSM2 token made for each test process.
//!
//! The states a crash leaves (see `signerd_token::gc`) are made with cryptoki directly, as a
//! killed signerd would have left them; the daemon-level test with a real SIGKILL is
//! `tests/tests/integration/keygen_atomic.rs`.
//!
//! Run under cargo-nextest: each test is its own process with its own `SOFTHSM2_CONF`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use rsa::pkcs8::EncodePublicKey as _;
use signerd_token::gc::{PendingAction, PENDING_GRACE};
use signerd_token::softhsm::{SoftHsmDir, SOFTHSM_MODULE};
use signerd_token::{
    ErrorKind, KeyAlgorithm, KeyDomain, KeyId, KeyUsage, ObjectFilter, ObjectKind, ObjectRef,
    Pkcs11Uri, PssParams, SignMechanism, Token, TokenConfig,
};

const LABEL: &str = "signerd-keygen";
const PIN: &str = "1234";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let hsm = SoftHsmDir::create(dir.path()).unwrap();
        hsm.init_token(LABEL, PIN, "5678").unwrap();
        std::env::set_var("SOFTHSM2_CONF", hsm.conf());
        std::fs::write(dir.path().join("pin"), PIN).unwrap();
        Fixture { dir }
    }

    /// signerd's token layer on the token. Drop it before [`Fixture::raw`].
    fn token(&self) -> Token {
        let hsm = SoftHsmDir::create(self.dir.path()).unwrap();
        let uri: Pkcs11Uri = hsm
            .uri(LABEL, &self.dir.path().join("pin"))
            .parse()
            .unwrap();
        let mut config = TokenConfig::new(uri);
        config.rsa_bits = 2048;
        Token::open(config).unwrap()
    }

    /// The token through cryptoki alone, logged in, as another process would see it.
    fn raw(&self) -> (Pkcs11, Session) {
        let module = Pkcs11::new(SOFTHSM_MODULE).unwrap();
        module
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = module.get_slots_with_token().unwrap()[0];
        let session = module.open_rw_session(slot).unwrap();
        session
            .login(UserType::User, Some(&AuthPin::from(PIN.to_owned())))
            .unwrap();
        (module, session)
    }
}

fn pending(started: SystemTime, label: &str) -> Vec<u8> {
    let secs = started.duration_since(UNIX_EPOCH).unwrap().as_secs();
    format!("signerd-pending:{secs}:{label}").into_bytes()
}

fn find(session: &Session, class: ObjectClass, id: &[u8]) -> Vec<ObjectHandle> {
    session
        .find_objects(&[Attribute::Class(class), Attribute::Id(id.to_vec())])
        .unwrap()
}

fn label_of(session: &Session, handle: ObjectHandle) -> String {
    match session
        .get_attributes(handle, &[AttributeType::Label])
        .unwrap()
        .as_slice()
    {
        [Attribute::Label(l)] => String::from_utf8(l.clone()).unwrap(),
        other => panic!("label read back as {other:?}"),
    }
}

/// An EC pair as a killed signerd leaves it after generation: random ID, pending label.
fn half_made_pair(session: &Session, id: &[u8], label: &[u8]) {
    let common = |private: bool| {
        vec![
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.to_vec()),
        ]
    };
    let mut public = common(false);
    public.push(Attribute::EcParams(signerd_vocab_p256_params().to_vec()));
    let mut private = common(true);
    private.push(Attribute::Sign(true));
    session
        .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
        .unwrap();
}

/// DER OID of P-256 (prime256v1), the EC parameters signerd generates with.
fn signerd_vocab_p256_params() -> &'static [u8] {
    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
}

#[test]
fn half_made_pairs_are_never_shown_and_collected_once_old() {
    let f = Fixture::new();
    let usage = KeyUsage::new(KeyDomain::Notary, "example.com/app", "timestamp");
    // A whole key, whose public half the crash caught before its last rename.
    let token = f.token();
    let whole = token.create_key(KeyAlgorithm::Ecdsa, &usage).unwrap();
    let shown_before = token.find_objects(&ObjectFilter::default()).unwrap();
    assert_eq!(shown_before.len(), 2, "{shown_before:?}");
    drop(token);

    let now = SystemTime::now();
    let old = now - PENDING_GRACE - Duration::from_secs(60);
    let (module, session) = f.raw();
    let public = find(&session, ObjectClass::PUBLIC_KEY, whole.id.as_bytes());
    session
        .update_attributes(public[0], &[Attribute::Label(pending(old, &usage.label()))])
        .unwrap();
    // A pair the crash caught right after generation, long ago: collected.
    half_made_pair(
        &session,
        &[1; 16],
        &pending(old, "notary:root@example.com/app"),
    );
    // One a live replica is naming right now: left alone.
    half_made_pair(
        &session,
        &[2; 16],
        &pending(now, "notary:targets@example.com/app"),
    );
    drop(session);
    module.finalize().unwrap();

    let token = f.token();
    // Nothing pending is shown, and the whole key still signs (its lookup is by CKA_ID).
    let shown = token.find_objects(&ObjectFilter::default()).unwrap();
    assert_eq!(shown.len(), 1, "only the named private half: {shown:?}");
    assert_eq!(shown[0].reference.kind, ObjectKind::PrivateKey);
    assert_eq!(shown[0].tuf_key_id, Some(whole.id));
    assert!(token.sign(&whole.id, b"content").is_ok());
    let listed = token.list_keys().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");

    let planned = token.pending_objects(PENDING_GRACE).unwrap();
    let action_of = |id: &[u8], kind: ObjectKind| {
        planned
            .iter()
            .find(|o| o.id == id && o.kind == kind)
            .map(|o| o.action.clone())
            .unwrap_or_else(|| panic!("{} {kind:?} planned: {planned:?}", hex::encode(id)))
    };
    assert_eq!(planned.len(), 5, "{planned:?}");
    assert_eq!(
        action_of(whole.id.as_bytes(), ObjectKind::PublicKey),
        PendingAction::Complete(usage.label())
    );
    for kind in [ObjectKind::PrivateKey, ObjectKind::PublicKey] {
        assert_eq!(action_of(&[1; 16], kind), PendingAction::Remove);
        assert_eq!(action_of(&[2; 16], kind), PendingAction::Keep);
    }
    // The plan changed nothing; collecting does what it said.
    assert_eq!(token.pending_objects(PENDING_GRACE).unwrap(), planned);
    assert_eq!(token.collect_pending(PENDING_GRACE).unwrap(), planned);
    let shown = token.find_objects(&ObjectFilter::default()).unwrap();
    assert_eq!(shown, shown_before, "the whole key is back as it was made");
    let left = token.pending_objects(PENDING_GRACE).unwrap();
    assert_eq!(left.len(), 2, "only the young pair is left: {left:?}");
    assert!(left
        .iter()
        .all(|o| o.id == [2; 16] && o.action == PendingAction::Keep));
    // With no grace, a collector takes the young pair too (`signerd key gc --grace 0`).
    assert_eq!(token.collect_pending(Duration::ZERO).unwrap().len(), 2);
    assert!(token.pending_objects(Duration::ZERO).unwrap().is_empty());
    drop(token);

    let (module, session) = f.raw();
    assert!(find(&session, ObjectClass::PRIVATE_KEY, &[1; 16]).is_empty());
    assert!(find(&session, ObjectClass::PRIVATE_KEY, &[2; 16]).is_empty());
    let public = find(&session, ObjectClass::PUBLIC_KEY, whole.id.as_bytes());
    assert_eq!(label_of(&session, public[0]), usage.label());
    drop(session);
    module.finalize().unwrap();
}

#[test]
fn new_pairs_are_named_whole_and_callers_cannot_choose_pending_labels() {
    let f = Fixture::new();
    let token = f.token();
    let usage = KeyUsage::new(KeyDomain::Notary, "example.com/app", "snapshot");
    for algorithm in KeyAlgorithm::ALL {
        token.create_key(algorithm, &usage).unwrap();
    }
    assert!(token.pending_objects(Duration::ZERO).unwrap().is_empty());
    for object in token.find_objects(&ObjectFilter::default()).unwrap() {
        assert_eq!(
            object.reference.label.as_deref(),
            Some("notary:snapshot@example.com/app")
        );
        assert_eq!(
            Some(object.reference.id.clone()),
            object.tuf_key_id.map(|k| k.as_bytes().to_vec())
        );
    }
    let err = token
        .generate_key_pair(&signerd_token::KeySpec {
            algorithm: KeyAlgorithm::Ecdsa,
            rsa_bits: None,
            naming: signerd_token::KeyNaming::Fixed {
                id: vec![9],
                label: "signerd-pending:1:x".into(),
            },
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
}

/// An RSA pair whose private half wants the PIN before each signature, named by its TUF key ID,
/// made the way `pkcs11-tool --keypairgen --always-auth` makes one. Returns its key ID.
fn always_authenticate_rsa(session: &Session) -> KeyId {
    let public = [
        Attribute::Token(true),
        Attribute::Verify(true),
        Attribute::ModulusBits(2048u64.into()),
        Attribute::PublicExponent(vec![1, 0, 1]),
        Attribute::Id(vec![7]),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
        Attribute::AlwaysAuthenticate(true),
        Attribute::Id(vec![7]),
        Attribute::Label(b"notary:root@example.com/yubikey".to_vec()),
    ];
    let (pub_handle, priv_handle) = session
        .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
        .unwrap();
    let (mut n, mut e) = (Vec::new(), Vec::new());
    for attr in session
        .get_attributes(
            pub_handle,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )
        .unwrap()
    {
        match attr {
            Attribute::Modulus(v) => n = v,
            Attribute::PublicExponent(v) => e = v,
            _ => {}
        }
    }
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&n),
        rsa::BigUint::from_bytes_be(&e),
    )
    .unwrap();
    let id = KeyId::of_public_key(
        KeyAlgorithm::Rsa,
        key.to_public_key_der().unwrap().as_bytes(),
    );
    for handle in [pub_handle, priv_handle] {
        session
            .update_attributes(handle, &[Attribute::Id(id.as_bytes().to_vec())])
            .unwrap();
    }
    // The token enforces it: a signature with no login of its own is refused.
    let pss = Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32u64.into(),
    });
    assert!(matches!(
        session.sign(&pss, priv_handle, b"content"),
        Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _))
    ));
    id
}

#[test]
fn keys_that_want_the_pin_per_signature_get_it() {
    let f = Fixture::new();
    let (module, session) = f.raw();
    let id = always_authenticate_rsa(&session);
    // An ECDSA key so marked: SoftHSM has no CKM_ECDSA_SHA256 to sign it in parts.
    let ec_public = [
        Attribute::Token(true),
        Attribute::Id(vec![8]),
        Attribute::EcParams(signerd_vocab_p256_params().to_vec()),
    ];
    let ec_private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sign(true),
        Attribute::AlwaysAuthenticate(true),
        Attribute::Id(vec![8]),
    ];
    session
        .generate_key_pair(&Mechanism::EccKeyPairGen, &ec_public, &ec_private)
        .unwrap();
    drop(session);
    module.finalize().unwrap();

    let token = f.token();
    // Notary's Sign: RSA-PSS over SHA-256 of the content, verified with the public key.
    let content = b"{\"signed\":{\"_type\":\"Root\"}}";
    for _ in 0..3 {
        let signature = token.sign(&id, content).unwrap();
        verify_pss(&signature.key.public_key, content, &signature.bytes);
    }
    // The admin API's sign, by reference.
    let key = ObjectRef {
        kind: ObjectKind::PrivateKey,
        id: id.as_bytes().to_vec(),
        label: None,
    };
    let signature = token
        .sign_with(
            &key,
            SignMechanism::Sha256RsaPkcsPss(PssParams::NOTARY),
            content,
        )
        .unwrap();
    verify_pss(
        &token.key_info(&id).unwrap().public_key,
        content,
        &signature,
    );
    // A mechanism that signs a digest in one call cannot get the login: refused, saying so.
    let err = token
        .sign_with(&key, SignMechanism::RsaPkcsPss(PssParams::NOTARY), &[0; 32])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(err.to_string().contains("CKA_ALWAYS_AUTHENTICATE"), "{err}");
    let ec = ObjectRef {
        kind: ObjectKind::PrivateKey,
        id: vec![8],
        label: None,
    };
    let err = token
        .sign_with(&ec, SignMechanism::EcdsaSha256, content)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(
        err.to_string()
            .contains("CKM_ECDSA_SHA256 in parts, which this token does not offer"),
        "{err}"
    );
}

fn verify_pss(public_key_der: &[u8], content: &[u8], signature: &[u8]) {
    use rsa::pkcs8::DecodePublicKey as _;
    use sha2::Digest as _;
    let key = rsa::RsaPublicKey::from_public_key_der(public_key_der).unwrap();
    let digest = sha2::Sha256::digest(content);
    key.verify(rsa::Pss::new::<sha2::Sha256>(), &digest, signature)
        .expect("a valid RSA-PSS signature");
}
