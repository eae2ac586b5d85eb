//! Key hygiene against a real SoftHSM2 token: every key signerd generates (P-256, Ed25519, RSA)
//! or imports (PKCS#8) signs and does nothing else, as the token itself reports it (read back
//! with cryptoki and with OpenSC's `pkcs11-tool`) and enforces it (`C_Decrypt`, `C_Encrypt`,
//! `C_DeriveKey` refused); imported keys report what the token knows of their past.
//!
//! Run under cargo-nextest: each test is its own process with its own `SOFTHSM2_CONF`.

use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use signerd_token::softhsm::{SoftHsmDir, SOFTHSM_MODULE};
use signerd_token::{KeyAlgorithm, KeyUsage, Pkcs11Uri, PrivateKeyImport, Token, TokenConfig};
use zeroize::Zeroizing;

const LABEL: &str = "signerd-hygiene";
const PIN: &str = "1234";

/// One key pair signerd made, as the test finds it again.
struct Made {
    label: String,
    id: Vec<u8>,
    algorithm: KeyAlgorithm,
    imported: bool,
}

/// Makes keys the two ways signerd does, then closes the token so the test can open the
/// module itself.
fn make_keys(dir: &std::path::Path) -> Vec<Made> {
    let hsm = SoftHsmDir::create(dir).unwrap();
    hsm.init_token(LABEL, PIN, "5678").unwrap();
    std::env::set_var("SOFTHSM2_CONF", hsm.conf());
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, PIN).unwrap();
    let uri: Pkcs11Uri = hsm.uri(LABEL, &pin_file).parse().unwrap();
    let mut config = TokenConfig::new(uri);
    config.rsa_bits = 2048;
    let token = Token::open(config).unwrap();
    let mut made = Vec::new();
    for (algorithm, role) in [
        (KeyAlgorithm::Ecdsa, "timestamp"),
        (KeyAlgorithm::Ed25519, "snapshot"),
        (KeyAlgorithm::Rsa, "targets"),
    ] {
        let usage = KeyUsage {
            gun: "example.com/hygiene".into(),
            role: role.into(),
            ..Default::default()
        };
        let key = token.create_key(algorithm, &usage).unwrap();
        made.push(Made {
            label: usage.label(),
            id: key.id.as_bytes().to_vec(),
            algorithm,
            imported: false,
        });
    }
    use p256::pkcs8::EncodePrivateKey as _;
    let ec = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let ed = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
    let rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let imports = [
        (KeyAlgorithm::Ecdsa, ec.to_pkcs8_der().unwrap()),
        (KeyAlgorithm::Ed25519, ed.to_pkcs8_der().unwrap()),
        (KeyAlgorithm::Rsa, rsa.to_pkcs8_der().unwrap()),
    ];
    for (algorithm, der) in imports {
        let label = format!("imported-{algorithm}");
        let (private, _) = token
            .import_private_key(PrivateKeyImport {
                id: None,
                label: label.clone(),
                expected: Some(algorithm),
                pkcs8_der: Zeroizing::new(der.as_bytes().to_vec()),
            })
            .unwrap();
        made.push(Made {
            label,
            id: private.reference.id,
            algorithm,
            imported: true,
        });
    }
    drop(token);
    made
}

fn open_session() -> (Pkcs11, Session) {
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

fn find(session: &Session, class: ObjectClass, id: &[u8]) -> ObjectHandle {
    let found = session
        .find_objects(&[Attribute::Class(class), Attribute::Id(id.to_vec())])
        .unwrap();
    assert_eq!(found.len(), 1, "one {class} with id {}", hex::encode(id));
    found[0]
}

/// A boolean attribute as the token reports it.
fn flag(session: &Session, handle: ObjectHandle, kind: AttributeType) -> bool {
    let attrs = session.get_attributes(handle, &[kind]).unwrap();
    match attrs.as_slice() {
        [Attribute::Sign(b)
        | Attribute::SignRecover(b)
        | Attribute::Decrypt(b)
        | Attribute::Unwrap(b)
        | Attribute::Derive(b)
        | Attribute::Sensitive(b)
        | Attribute::Extractable(b)
        | Attribute::Local(b)
        | Attribute::AlwaysSensitive(b)
        | Attribute::NeverExtractable(b)
        | Attribute::Verify(b)
        | Attribute::VerifyRecover(b)
        | Attribute::Encrypt(b)
        | Attribute::Wrap(b)] => *b,
        other => panic!("{kind} read back as {other:?}"),
    }
}

fn is_not_permitted<T: std::fmt::Debug>(result: Result<T, CkError>) -> bool {
    matches!(
        result,
        Err(CkError::Pkcs11(RvError::KeyFunctionNotPermitted, _))
    )
}

fn ecdh(peer_point: &[u8]) -> Mechanism<'_> {
    Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), peer_point))
}

fn secret_template() -> [Attribute; 4] {
    [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(32.into()),
        Attribute::Token(false),
    ]
}

#[test]
fn generated_and_imported_keys_sign_and_do_nothing_else_by_the_tokens_own_account() {
    let dir = tempfile::tempdir().unwrap();
    let made = make_keys(dir.path());
    let (_module, session) = open_session();
    for key in &made {
        let what = &key.label;
        let private = find(&session, ObjectClass::PRIVATE_KEY, &key.id);
        assert!(flag(&session, private, AttributeType::Sign), "{what}");
        for usage in [
            AttributeType::SignRecover,
            AttributeType::Decrypt,
            AttributeType::Unwrap,
            AttributeType::Derive,
        ] {
            assert!(!flag(&session, private, usage), "{what}: {usage} is false");
        }
        assert!(flag(&session, private, AttributeType::Sensitive), "{what}");
        assert!(
            !flag(&session, private, AttributeType::Extractable),
            "{what}"
        );
        // What the token knows of the key's past: generated in it, or brought in.
        let made_here = !key.imported;
        for history in [
            AttributeType::Local,
            AttributeType::AlwaysSensitive,
            AttributeType::NeverExtractable,
        ] {
            assert_eq!(
                flag(&session, private, history),
                made_here,
                "{what}: {history}"
            );
        }
        let public = find(&session, ObjectClass::PUBLIC_KEY, &key.id);
        assert!(flag(&session, public, AttributeType::Verify), "{what}");
        for usage in [
            AttributeType::VerifyRecover,
            AttributeType::Encrypt,
            AttributeType::Wrap,
        ] {
            assert!(!flag(&session, public, usage), "{what}: {usage} is false");
        }
    }
}

#[test]
fn the_token_refuses_to_decrypt_encrypt_or_derive_with_signerds_keys() {
    let dir = tempfile::tempdir().unwrap();
    let made = make_keys(dir.path());
    let (_module, session) = open_session();
    let peer = p256::SecretKey::from_slice(&[9u8; 32])
        .unwrap()
        .public_key();
    let peer_point = peer.to_sec1_bytes().to_vec();

    // Controls: the same operations with SoftHSM's defaults (and CKA_DERIVE asked for) work,
    // so a refusal below is the keys' attributes and not a mechanism SoftHSM lacks.
    let (rsa_pub, rsa_priv) = session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[Attribute::Token(false), Attribute::ModulusBits(2048.into())],
            &[Attribute::Token(false)],
        )
        .unwrap();
    let ciphertext = session
        .encrypt(&Mechanism::RsaPkcs, rsa_pub, b"secret")
        .unwrap();
    assert_eq!(
        session
            .decrypt(&Mechanism::RsaPkcs, rsa_priv, &ciphertext)
            .unwrap(),
        b"secret"
    );
    let (_, ec_priv) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(false),
                Attribute::EcParams(signerd_vocab::curve::P256_PARAMS.to_vec()),
            ],
            &[Attribute::Token(false), Attribute::Derive(true)],
        )
        .unwrap();
    session
        .derive_key(&ecdh(&peer_point), ec_priv, &secret_template())
        .unwrap();

    let mut refused = 0;
    for key in &made {
        let what = &key.label;
        let private = find(&session, ObjectClass::PRIVATE_KEY, &key.id);
        let public = find(&session, ObjectClass::PUBLIC_KEY, &key.id);
        match key.algorithm {
            KeyAlgorithm::Rsa => {
                assert!(
                    is_not_permitted(session.decrypt(&Mechanism::RsaPkcs, private, &ciphertext)),
                    "{what}: C_Decrypt"
                );
                assert!(
                    is_not_permitted(session.encrypt(&Mechanism::RsaPkcs, public, b"secret")),
                    "{what}: C_Encrypt"
                );
                refused += 1;
            }
            KeyAlgorithm::Ecdsa => {
                let derived = session.derive_key(&ecdh(&peer_point), private, &secret_template());
                assert!(is_not_permitted(derived), "{what}: C_DeriveKey");
                refused += 1;
            }
            // SoftHSM has no key agreement or encryption for Ed25519 keys at all.
            KeyAlgorithm::Ed25519 => {}
        }
    }
    assert_eq!(refused, 4, "generated and imported, RSA and P-256");
}

/// The objects `pkcs11-tool --list-objects` prints: (header, label, usage, access).
fn pkcs11_tool_objects() -> Vec<(String, String, String, String)> {
    let out = Command::new("pkcs11-tool")
        .args(["--module", SOFTHSM_MODULE, "--login", "--pin", PIN])
        .arg("--list-objects")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut objects = Vec::new();
    let mut current: Option<(String, String, String, String)> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            objects.extend(current.take());
            current = Some((line.to_owned(), String::new(), String::new(), String::new()));
            continue;
        }
        let Some(obj) = current.as_mut() else {
            continue;
        };
        let line = line.trim();
        if let Some(v) = line.strip_prefix("label:") {
            obj.1 = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("Usage:") {
            obj.2 = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("Access:") {
            obj.3 = v.trim().to_owned();
        }
    }
    objects.extend(current);
    assert!(!objects.is_empty(), "pkcs11-tool listed nothing:\n{text}");
    objects
}

#[test]
fn pkcs11_tool_lists_sign_only_keys_and_the_imported_ones_as_imported() {
    let dir = tempfile::tempdir().unwrap();
    let made = make_keys(dir.path());
    let objects = pkcs11_tool_objects();
    for key in &made {
        let of = |kind: &str| {
            objects
                .iter()
                .find(|o| o.0.starts_with(kind) && o.1 == key.label)
                .unwrap_or_else(|| panic!("{kind} {} in {objects:?}", key.label))
        };
        let private = of("Private Key Object");
        assert_eq!(private.2, "sign", "{}: private key usage", key.label);
        let access: Vec<&str> = private.3.split(", ").collect();
        if key.imported {
            assert_eq!(access, ["sensitive"], "{}", key.label);
        } else {
            assert_eq!(
                access,
                [
                    "sensitive",
                    "always sensitive",
                    "never extractable",
                    "local"
                ],
                "{}",
                key.label
            );
        }
        let public = of("Public Key Object");
        assert_eq!(public.2, "verify", "{}: public key usage", key.label);
        let public_access = if key.imported { "none" } else { "local" };
        assert_eq!(public.3, public_access, "{}: public key access", key.label);
    }
}
