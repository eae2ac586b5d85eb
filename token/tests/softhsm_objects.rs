//! Object-level operations (the admin API's token layer) against a real SoftHSM2 token made for
//! each test process: find, generate under a chosen name, sign by mechanism, certificates,
//! PKCS#8 import, destroy, mechanisms.
//!
//! Run under cargo-nextest: each test is its own process with its own `SOFTHSM2_CONF`.

use p256::ecdsa::signature::Verifier as _;
use sha2::Digest as _;
use signerd_token::objects::ckm;
use signerd_token::softhsm::SoftHsmDir;
use signerd_token::{
    ErrorKind, KeyAlgorithm, KeyId, KeyNaming, KeySpec, KeyUsage, ObjectFilter, ObjectKind,
    ObjectRef, Pkcs11Uri, PrivateKeyImport, PssParams, SignMechanism, Token, TokenConfig,
};
use zeroize::Zeroizing;

const LABEL: &str = "signerd-objects";

struct Fixture {
    _dir: tempfile::TempDir,
    token: Token,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let hsm = SoftHsmDir::create(dir.path()).unwrap();
    hsm.init_token(LABEL, "1234", "5678").unwrap();
    std::env::set_var("SOFTHSM2_CONF", hsm.conf());
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "1234").unwrap();
    let uri: Pkcs11Uri = hsm.uri(LABEL, &pin_file).parse().unwrap();
    let mut config = TokenConfig::new(uri);
    config.rsa_bits = 2048;
    Fixture {
        token: Token::open(config).unwrap(),
        _dir: dir,
    }
}

fn fixed(algorithm: KeyAlgorithm, id: &[u8], label: &str) -> KeySpec {
    KeySpec {
        algorithm,
        rsa_bits: None,
        naming: KeyNaming::Fixed {
            id: id.to_vec(),
            label: label.into(),
        },
    }
}

fn private_ref(id: &[u8]) -> ObjectRef {
    ObjectRef {
        kind: ObjectKind::PrivateKey,
        id: id.to_vec(),
        label: None,
    }
}

fn today() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn generate_with_a_chosen_id_and_label_then_find_it_every_way() {
    let f = fixture();
    let (private, public) = f
        .token
        .generate_key_pair(&fixed(KeyAlgorithm::Ecdsa, &[0x02], "my key"))
        .unwrap();
    assert_eq!(private.reference.kind, ObjectKind::PrivateKey);
    assert_eq!(public.reference.kind, ObjectKind::PublicKey);
    assert_eq!(private.reference.id, vec![0x02]);
    assert_eq!(private.reference.label.as_deref(), Some("my key"));
    assert!(private.sensitive && !private.extractable);
    assert_eq!(private.created.as_deref(), Some(today().as_str()));
    assert_eq!(private.key_type, Some(KeyAlgorithm::Ecdsa));
    let spki = public.public_key_spki.clone().unwrap();
    assert_eq!(spki.len(), 91);
    assert_eq!(private.public_key_spki.as_ref(), Some(&spki));
    let tuf = KeyId::of_public_key(KeyAlgorithm::Ecdsa, &spki);
    assert_eq!(private.tuf_key_id, Some(tuf));
    assert!(
        private.uri.starts_with("pkcs11:token=signerd-objects;")
            && private
                .uri
                .ends_with(";id=%02;object=my%20key;type=private"),
        "{}",
        private.uri
    );

    // A TUF-named key beside it.
    let (tuf_private, _) = f
        .token
        .generate_key_pair(&KeySpec {
            algorithm: KeyAlgorithm::Ed25519,
            rsa_bits: None,
            naming: KeyNaming::Tuf(KeyUsage {
                gun: "example.com/org/app".into(),
                role: "root".into(),
            }),
        })
        .unwrap();
    let tuf_id = tuf_private.tuf_key_id.unwrap();
    assert_eq!(tuf_private.reference.id, tuf_id.as_bytes().to_vec());
    assert_eq!(tuf_private.usage.role, "root");
    // The notary signer path finds it by the same ID.
    assert_eq!(
        f.token.key_info(&tuf_id).unwrap().usage.gun,
        "example.com/org/app"
    );

    let find = |filter: ObjectFilter| f.token.find_objects(&filter).unwrap();
    assert_eq!(find(ObjectFilter::default()).len(), 4);
    let by_id = find(ObjectFilter {
        id: Some(vec![0x02]),
        ..Default::default()
    });
    assert_eq!(by_id.len(), 2);
    let by_label = find(ObjectFilter {
        kind: Some(ObjectKind::PrivateKey),
        label: Some("my key".into()),
        ..Default::default()
    });
    assert_eq!(by_label, vec![private.clone()]);
    let by_gun_role = find(ObjectFilter {
        gun: Some("example.com/org/app".into()),
        role: Some("root".into()),
        kind: Some(ObjectKind::PrivateKey),
        ..Default::default()
    });
    assert_eq!(by_gun_role, vec![tuf_private]);
    let by_tuf = find(ObjectFilter {
        tuf_key_id: Some(tuf),
        ..Default::default()
    });
    assert_eq!(
        by_tuf.len(),
        2,
        "both halves of the key with label 'my key'"
    );
    let by_type = find(ObjectFilter {
        key_type: Some(KeyAlgorithm::Ed25519),
        ..Default::default()
    });
    assert_eq!(by_type.len(), 2);
    assert!(find(ObjectFilter {
        kind: Some(ObjectKind::Certificate),
        ..Default::default()
    })
    .is_empty());
}

#[test]
fn ecdsa_mechanisms_sign_digests_and_messages() {
    let f = fixture();
    let (_, public) = f
        .token
        .generate_key_pair(&fixed(KeyAlgorithm::Ecdsa, b"ec", "ec"))
        .unwrap();
    use p256::pkcs8::DecodePublicKey as _;
    let vk =
        p256::ecdsa::VerifyingKey::from_public_key_der(&public.public_key_spki.unwrap()).unwrap();
    let message = b"message to sign";

    let sig = f
        .token
        .sign_with(&private_ref(b"ec"), SignMechanism::EcdsaSha256, message)
        .unwrap();
    vk.verify(message, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();

    let digest = sha2::Sha256::digest(message);
    let sig = f
        .token
        .sign_with(&private_ref(b"ec"), SignMechanism::Ecdsa, &digest)
        .unwrap();
    assert_eq!(sig.len(), 64, "raw r||s");
    vk.verify(message, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();

    let err = f
        .token
        .sign_with(&private_ref(b"ec"), SignMechanism::Eddsa, message)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.to_string()
            .contains("CKM_EDDSA signs with ed25519 keys"),
        "{err}"
    );

    let err = f
        .token
        .sign_with(&private_ref(b"none"), SignMechanism::Ecdsa, &digest)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("0x6e6f6e65"), "{err}");
}

#[test]
fn eddsa_signs_pure_ed25519() {
    let f = fixture();
    let (_, public) = f
        .token
        .generate_key_pair(&fixed(KeyAlgorithm::Ed25519, b"ed", "ed"))
        .unwrap();
    let spki = public.public_key_spki.unwrap();
    use ed25519_dalek::pkcs8::DecodePublicKey as _;
    let vk = ed25519_dalek::VerifyingKey::from_public_key_der(&spki).unwrap();
    let sig = f
        .token
        .sign_with(&private_ref(b"ed"), SignMechanism::Eddsa, b"hello")
        .unwrap();
    vk.verify_strict(
        b"hello",
        &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
    )
    .unwrap();
}

#[test]
fn rsa_mechanisms_pkcs1_and_pss() {
    let f = fixture();
    let (private, public) = f
        .token
        .generate_key_pair(&fixed(KeyAlgorithm::Rsa, b"rsa", "rsa"))
        .unwrap();
    assert_eq!(private.rsa_bits, Some(2048));
    use rsa::pkcs8::DecodePublicKey as _;
    let pk = rsa::RsaPublicKey::from_public_key_der(&public.public_key_spki.unwrap()).unwrap();
    let message = b"rsa message";
    let digest = sha2::Sha256::digest(message);
    let key = private_ref(b"rsa");
    let pss = PssParams {
        hash: ckm::SHA256,
        mgf: ckm::MGF1_SHA256,
        salt_len: 32,
    };

    let sig = f
        .token
        .sign_with(&key, SignMechanism::Sha256RsaPkcs, message)
        .unwrap();
    pk.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, &sig)
        .unwrap();

    // CKM_RSA_PKCS over a DigestInfo the caller made.
    let mut digest_info = vec![
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    digest_info.extend_from_slice(&digest);
    let sig = f
        .token
        .sign_with(&key, SignMechanism::RsaPkcs, &digest_info)
        .unwrap();
    pk.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, &sig)
        .unwrap();

    // Input the token refuses (more than a 2048-bit PKCS#1 block holds) is the caller's error.
    let err = f
        .token
        .sign_with(&key, SignMechanism::RsaPkcs, &[1u8; 300])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(err.to_string().contains("do not fit a 2048-bit"), "{err}");
    let err = f
        .token
        .sign_with(&key, SignMechanism::RsaPkcsPss(pss), &[1u8; 20])
        .unwrap_err();
    assert!(err.to_string().contains("32-byte digest"), "{err}");
    // The token was not disturbed: no reconnect, the next signature works at once.
    f.token
        .sign_with(&key, SignMechanism::Sha256RsaPkcs, message)
        .unwrap();

    for (mechanism, data) in [
        (SignMechanism::RsaPkcsPss(pss), digest.to_vec()),
        (SignMechanism::Sha256RsaPkcsPss(pss), message.to_vec()),
        (SignMechanism::notary(KeyAlgorithm::Rsa), message.to_vec()),
    ] {
        let sig = f.token.sign_with(&key, mechanism, &data).unwrap();
        pk.verify(rsa::Pss::new_with_salt::<sha2::Sha256>(32), &digest, &sig)
            .unwrap_or_else(|e| panic!("{}: {e}", mechanism.name()));
    }
}

/// A self-signed P-256 certificate made in software, and its key.
fn software_certificate(cn: &str) -> (Vec<u8>, p256::ecdsa::SigningKey) {
    use std::str::FromStr as _;
    use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
    let key = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
    let builder = CertificateBuilder::new(
        Profile::Root,
        x509_cert::serial_number::SerialNumber::from(7u32),
        x509_cert::time::Validity::from_now(std::time::Duration::from_secs(3600)).unwrap(),
        x509_cert::name::Name::from_str(&format!("CN={cn}")).unwrap(),
        spki,
        &key,
    )
    .unwrap();
    let cert = builder.build::<p256::ecdsa::DerSignature>().unwrap();
    use der::Encode as _;
    (cert.to_der().unwrap(), key)
}

#[test]
fn certificates_are_stored_and_found_by_their_key() {
    let f = fixture();
    let (der, key) = software_certificate("example.com/org/app");
    let stored = f
        .token
        .store_certificate(None, "root@example.com/org/app", &der)
        .unwrap();
    use p256::pkcs8::EncodePublicKey as _;
    let spki = key.verifying_key().to_public_key_der().unwrap().into_vec();
    let tuf = KeyId::of_public_key(KeyAlgorithm::Ecdsa, &spki);
    assert_eq!(stored.reference.kind, ObjectKind::Certificate);
    assert_eq!(
        stored.reference.id,
        tuf.as_bytes().to_vec(),
        "CKA_ID = TUF key ID of its key"
    );
    assert_eq!(stored.tuf_key_id, Some(tuf));
    assert_eq!(stored.public_key_spki, Some(spki));
    assert_eq!(stored.certificate_der.as_deref(), Some(der.as_slice()));
    assert_eq!(stored.usage.gun, "example.com/org/app");
    assert!(stored.uri.ends_with(";type=cert"), "{}", stored.uri);

    let found = f
        .token
        .find_objects(&ObjectFilter {
            kind: Some(ObjectKind::Certificate),
            role: Some("root".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(found, vec![stored.clone()]);

    // pkcs11-tool reads it as an X.509 certificate with the subject given.
    let out = std::process::Command::new("pkcs11-tool")
        .args(["--module", signerd_token::softhsm::SOFTHSM_MODULE])
        .args(["--token-label", LABEL, "--list-objects", "--type", "cert"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("X.509 cert") && text.contains("example.com/org/app"),
        "{text}"
    );

    let err = f
        .token
        .store_certificate(None, "x", b"not der")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert_eq!(
        f.token
            .destroy_objects(&ObjectRef {
                kind: ObjectKind::Certificate,
                id: stored.reference.id.clone(),
                label: None,
            })
            .unwrap(),
        1
    );
}

#[test]
fn pkcs8_keys_import_as_sensitive_and_sign() {
    let f = fixture();
    // P-256.
    use p256::pkcs8::EncodePrivateKey as _;
    let ec = p256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap();
    let der = Zeroizing::new(ec.to_pkcs8_der().unwrap().as_bytes().to_vec());
    let (private, public) = f
        .token
        .import_private_key(PrivateKeyImport {
            id: None,
            label: "imported-ec".into(),
            expected: Some(KeyAlgorithm::Ecdsa),
            pkcs8_der: der,
        })
        .unwrap();
    assert!(private.sensitive && !private.extractable);
    assert_eq!(public.reference.id, private.reference.id);
    let tuf = private.tuf_key_id.unwrap();
    assert_eq!(private.reference.id, tuf.as_bytes().to_vec());
    let sig = f
        .token
        .sign_with(
            &private_ref(tuf.as_bytes()),
            SignMechanism::EcdsaSha256,
            b"m",
        )
        .unwrap();
    ec.verifying_key()
        .verify(b"m", &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();
    // Imported under its TUF ID, the notary path can sign with it too.
    assert_eq!(f.token.sign(&tuf, b"n").unwrap().bytes.len(), 64);

    // Ed25519.
    let ed = ed25519_dalek::SigningKey::from_bytes(&[6u8; 32]);
    let der = Zeroizing::new(ed.to_pkcs8_der().unwrap().as_bytes().to_vec());
    let (private, _) = f
        .token
        .import_private_key(PrivateKeyImport {
            id: Some(vec![0x0e]),
            label: "imported-ed".into(),
            expected: None,
            pkcs8_der: der,
        })
        .unwrap();
    assert_eq!(private.key_type, Some(KeyAlgorithm::Ed25519));
    let sig = f
        .token
        .sign_with(&private_ref(&[0x0e]), SignMechanism::Eddsa, b"m")
        .unwrap();
    ed.verifying_key()
        .verify_strict(b"m", &ed25519_dalek::Signature::from_slice(&sig).unwrap())
        .unwrap();

    // RSA.
    let mut rng = rsa::rand_core::OsRng;
    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let der = Zeroizing::new(rsa_key.to_pkcs8_der().unwrap().as_bytes().to_vec());
    let (private, _) = f
        .token
        .import_private_key(PrivateKeyImport {
            id: Some(vec![0x0f]),
            label: "imported-rsa".into(),
            expected: Some(KeyAlgorithm::Rsa),
            pkcs8_der: der,
        })
        .unwrap();
    assert_eq!(private.rsa_bits, Some(2048));
    let sig = f
        .token
        .sign_with(&private_ref(&[0x0f]), SignMechanism::Sha256RsaPkcs, b"m")
        .unwrap();
    rsa::RsaPublicKey::from(&rsa_key)
        .verify(
            rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            &sha2::Sha256::digest(b"m"),
            &sig,
        )
        .unwrap();

    // A key type other than the request says, and garbage, are refused.
    let der = Zeroizing::new(ec.to_pkcs8_der().unwrap().as_bytes().to_vec());
    let err = f
        .token
        .import_private_key(PrivateKeyImport {
            id: None,
            label: String::new(),
            expected: Some(KeyAlgorithm::Rsa),
            pkcs8_der: der,
        })
        .unwrap_err();
    assert!(err.to_string().contains("is ecdsa, not rsa"), "{err}");
    let err = f
        .token
        .import_private_key(PrivateKeyImport {
            id: None,
            label: String::new(),
            expected: None,
            pkcs8_der: Zeroizing::new(vec![1, 2, 3]),
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);

    // pkcs11-tool, as an operator would, sees the imported private keys as sensitive.
    let out = std::process::Command::new("pkcs11-tool")
        .args(["--module", signerd_token::softhsm::SOFTHSM_MODULE])
        .args(["--token-label", LABEL, "--login", "--pin", "1234"])
        .args(["--list-objects", "--type", "privkey"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("Access:").count(), 3, "{text}");
    assert_eq!(text.matches("sensitive").count(), 3, "{text}");
}

#[test]
fn destroy_by_class_id_and_label() {
    let f = fixture();
    f.token
        .generate_key_pair(&fixed(KeyAlgorithm::Ecdsa, &[1], "a"))
        .unwrap();
    let wrong_label = ObjectRef {
        kind: ObjectKind::PrivateKey,
        id: vec![1],
        label: Some("b".into()),
    };
    assert_eq!(f.token.destroy_objects(&wrong_label).unwrap(), 0);
    let private = ObjectRef {
        label: Some("a".into()),
        ..wrong_label
    };
    assert_eq!(f.token.destroy_objects(&private).unwrap(), 1);
    assert_eq!(f.token.destroy_objects(&private).unwrap(), 0, "idempotent");
    let left = f.token.find_objects(&ObjectFilter::default()).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].reference.kind, ObjectKind::PublicKey);
}

#[test]
fn mechanisms_include_ecdsa_sha256_added_by_signerd() {
    let f = fixture();
    let mechanisms = f.token.list_mechanisms().unwrap();
    let find = |m| mechanisms.iter().find(|f| f.mechanism == m);
    let ecdsa = find(ckm::ECDSA).expect("SoftHSM has CKM_ECDSA");
    let added = find(ckm::ECDSA_SHA256).expect("signerd adds CKM_ECDSA_SHA256");
    assert_eq!(added.min_key_bits, ecdsa.min_key_bits);
    assert_ne!(added.flags & 0x800, 0, "CKF_SIGN");
    assert!(find(ckm::EDDSA).is_some() && find(ckm::SHA256_RSA_PKCS_PSS).is_some());
    assert_eq!(f.token.description().unwrap().label, LABEL);
}

#[test]
fn rsa_keys_are_made_only_in_the_sizes_config_accepts() {
    let f = fixture();
    let spec = KeySpec {
        rsa_bits: Some(8192),
        ..fixed(KeyAlgorithm::Rsa, &[9], "big")
    };
    let err = f.token.generate_key_pair(&spec).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.to_string().contains("2048, 3072 or 4096"), "{err}");

    // The configured default is held to the same list, on the Notary path too.
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "1234").unwrap();
    let uri = format!(
        "pkcs11:token={LABEL}?module-path={}&pin-source=file:{}",
        signerd_token::softhsm::SOFTHSM_MODULE,
        pin_file.display()
    );
    let mut config = TokenConfig::new(uri.parse().unwrap());
    config.rsa_bits = 1024;
    let small = Token::open(config).unwrap();
    let err = small
        .create_key(KeyAlgorithm::Rsa, &KeyUsage::default())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.to_string().contains("1024 bits"), "{err}");
    assert!(
        f.token
            .find_objects(&ObjectFilter::default())
            .unwrap()
            .is_empty(),
        "no key is left behind"
    );
}
