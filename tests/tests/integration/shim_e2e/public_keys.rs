//! `CKO_PUBLIC_KEY` objects through the shim, found and read the way securesystemslib's
//! `HSMSigner` and python-pkcs11 find a key's public half: by `CKA_CLASS` + `CKA_ID`, without
//! logging in, then `CKA_EC_POINT`/`CKA_EC_PARAMS` (or `CKA_MODULUS`/`CKA_PUBLIC_EXPONENT`).

use ed25519_dalek::Verifier as _;
use rsa::pkcs1v15::Pkcs1v15Sign;

use super::*;

const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

fn generate(session: &Session, mechanism: Mechanism, id: u8, public_extra: Vec<Attribute>) {
    let common = vec![
        Attribute::Token(true),
        Attribute::Id(vec![id]),
        Attribute::Label(format!("pub-{id:02x}").into_bytes()),
    ];
    let mut public = common.clone();
    public.extend(public_extra);
    let mut private = common;
    private.push(Attribute::Sign(true));
    session
        .generate_key_pair(&mechanism, &public, &private)
        .expect("C_GenerateKeyPair");
}

/// The one object of `class` with `CKA_ID` `id`.
fn find_one(session: &Session, class: cryptoki::object::ObjectClass, id: u8) -> ObjectHandle {
    let found = session
        .find_objects(&[Attribute::Class(class), Attribute::Id(vec![id])])
        .expect("C_FindObjects");
    assert_eq!(found.len(), 1, "one {class:?} with CKA_ID {id:02x}");
    found[0]
}

fn bytes(session: &Session, object: ObjectHandle, ty: AttributeType) -> Vec<u8> {
    let attrs = session
        .get_attributes(object, &[ty])
        .expect("C_GetAttributeValue");
    match attrs.into_iter().next() {
        Some(Attribute::EcPoint(v))
        | Some(Attribute::EcParams(v))
        | Some(Attribute::Modulus(v))
        | Some(Attribute::PublicExponent(v))
        | Some(Attribute::Label(v)) => v,
        other => panic!("{ty:?}: {other:?}"),
    }
}

/// A certificate for `key`, issued by a throwaway CA.
fn certificate_for(key: &p256::PublicKey) -> Vec<u8> {
    use p256::pkcs8::EncodePublicKey;
    let spki = key.to_public_key_der().expect("SPKI");
    let subject = rcgen::SubjectPublicKeyInfo::from_der(spki.as_bytes()).expect("rcgen SPKI");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca_params = rcgen::CertificateParams::new(vec!["ca".into()]).expect("CA params");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let params = rcgen::CertificateParams::new(vec!["key-54".into()]).expect("params");
    params
        .signed_by(&subject, &issuer)
        .expect("certificate")
        .der()
        .to_vec()
}

/// The contents of a DER OCTET STRING of short or one-byte long form (as SoftHSM writes
/// `CKA_EC_POINT`).
fn octets(der: &[u8]) -> &[u8] {
    assert_eq!(
        der[0], 0x04,
        "CKA_EC_POINT is a DER OCTET STRING: {der:02x?}"
    );
    if der[1] == 0x81 {
        &der[3..]
    } else {
        &der[2..]
    }
}

/// Every key signerd holds has a public key object a client finds by class and `CKA_ID`
/// without logging in, with the attributes SoftHSM gives it; signatures the shim makes verify
/// against it. A key whose public object is missing from the token (deleted behind signerd's
/// back) but whose certificate is there still shows one, derived from the certificate, that
/// cannot be destroyed on its own.
#[test]
fn every_key_has_a_public_key_object_found_by_class_and_id() -> io::Result<()> {
    use cryptoki::object::{KeyType, ObjectClass};
    let s = setup("shim-public-keys")?;
    let (pkcs11, slot) = s.load_shim();
    let pin = AuthPin::new(NOTARY_USER_PIN.into());
    {
        let session = pkcs11.open_rw_session(slot).expect("RW session");
        session.login(UserType::User, Some(&pin)).expect("C_Login");
        let ec = || vec![Attribute::EcParams(P256_OID.to_vec())];
        generate(&session, Mechanism::EccKeyPairGen, 0x51, ec());
        generate(
            &session,
            Mechanism::EccEdwardsKeyPairGen,
            0x52,
            vec![Attribute::EcParams(ED25519_OID.to_vec())],
        );
        generate(
            &session,
            Mechanism::RsaPkcsKeyPairGen,
            0x53,
            vec![
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
            ],
        );
        generate(&session, Mechanism::EccKeyPairGen, 0x54, ec());
        // Key 54 gets a certificate beside it, as PIV-style tools store a key.
        let public = find_one(&session, ObjectClass::PUBLIC_KEY, 0x54);
        let point = bytes(&session, public, AttributeType::EcPoint);
        let key = p256::PublicKey::from_sec1_bytes(octets(&point)).expect("P-256");
        let certificate = certificate_for(&key);
        session
            .create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(cryptoki::object::CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Id(vec![0x54]),
                Attribute::Label(b"pub-54".to_vec()),
                Attribute::Value(certificate),
            ])
            .expect("C_CreateObject (certificate)");
        session.logout().expect("C_Logout");
    }

    // Key 54 loses its stored public half, behind signerd's back: the certificate still says
    // what it is.
    let conf = s.token.softhsm.conf().display().to_string();
    run_tool_ok(
        "pkcs11-tool",
        &[
            "--module",
            SOFTHSM_MODULE,
            "--token-label",
            TEST_TOKEN_LABEL,
            "--login",
            "--pin",
            TEST_PIN,
            "--delete-object",
            "--type",
            "pubkey",
            "--id",
            "54",
        ],
        &[("SOFTHSM2_CONF".into(), conf)],
    );

    // Not logged in, read-only: what HSMSigner does to export a key.
    let reader = pkcs11.open_ro_session(slot).expect("RO session");
    let message = b"verified against the public key object";
    let digest = Sha256::digest(message);
    let signer = pkcs11.open_ro_session(slot).expect("RO session");
    for id in [0x51, 0x54] {
        let public = find_one(&reader, ObjectClass::PUBLIC_KEY, id);
        let attrs = reader
            .get_attributes(
                public,
                &[
                    AttributeType::KeyType,
                    AttributeType::Private,
                    AttributeType::Verify,
                ],
            )
            .expect("attributes");
        assert!(
            attrs.contains(&Attribute::KeyType(KeyType::EC)),
            "{attrs:?}"
        );
        assert!(attrs.contains(&Attribute::Private(false)), "{attrs:?}");
        assert!(attrs.contains(&Attribute::Verify(true)), "{attrs:?}");
        assert_eq!(bytes(&reader, public, AttributeType::EcParams), P256_OID);
        let label = bytes(&reader, public, AttributeType::Label);
        assert_eq!(label, format!("pub-{id:02x}").into_bytes());
        let point = bytes(&reader, public, AttributeType::EcPoint);
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(octets(&point)).expect("P-256");

        if signer.get_session_info().expect("info").session_state()
            != cryptoki::session::SessionState::RoUser
        {
            signer.login(UserType::User, Some(&pin)).expect("C_Login");
        }
        let private = find_one(&signer, ObjectClass::PRIVATE_KEY, id);
        let signature = signer
            .sign(&Mechanism::Ecdsa, private, &digest)
            .expect("C_Sign");
        // C_Verify through the shim, on the public key object, in a read-only session
        // without a login; a flipped bit is CKR_SIGNATURE_INVALID.
        reader
            .verify(&Mechanism::Ecdsa, public, &digest, &signature)
            .expect("C_Verify");
        let mut tampered = signature.clone();
        tampered[5] ^= 1;
        match reader.verify(&Mechanism::Ecdsa, public, &digest, &tampered) {
            Err(CkError::Pkcs11(RvError::SignatureInvalid, _)) => {}
            other => panic!("a tampered signature: {other:?}"),
        }
        let signature = p256::ecdsa::Signature::from_slice(&signature).expect("r||s");
        key.verify_prehash(&digest, &signature)
            .expect("the signature verifies against the public key object");

        // The same public key, created as a session object from its attributes.
        let created = reader
            .create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::Token(false),
                Attribute::EcParams(P256_OID.to_vec()),
                Attribute::EcPoint(point.clone()),
            ])
            .expect("C_CreateObject of a session public key in a read-only session");
        reader
            .verify(&Mechanism::Ecdsa, created, &digest, &signature.to_bytes())
            .expect("C_Verify with the session object");
    }

    let public = find_one(&reader, ObjectClass::PUBLIC_KEY, 0x52);
    assert_eq!(bytes(&reader, public, AttributeType::EcParams), ED25519_OID);
    let point = bytes(&reader, public, AttributeType::EcPoint);
    let point: [u8; 32] = octets(&point).try_into().expect("32-byte Ed25519 key");
    let key = ed25519_dalek::VerifyingKey::from_bytes(&point).expect("Ed25519 key");
    let private = find_one(&signer, ObjectClass::PRIVATE_KEY, 0x52);
    let signature = signer
        .sign(
            &Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
                cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
            )),
            private,
            message,
        )
        .expect("C_Sign");
    reader
        .verify(
            &Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
                cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
            )),
            public,
            message,
            &signature,
        )
        .expect("C_Verify (Ed25519)");
    let signature = ed25519_dalek::Signature::from_slice(&signature).expect("64 bytes");
    key.verify(message, &signature).expect("Ed25519 verifies");

    let public = find_one(&reader, ObjectClass::PUBLIC_KEY, 0x53);
    let n = bytes(&reader, public, AttributeType::Modulus);
    let e = bytes(&reader, public, AttributeType::PublicExponent);
    assert_eq!(n.len(), 256);
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&n),
        rsa::BigUint::from_bytes_be(&e),
    )
    .expect("RSA key");
    let private = find_one(&signer, ObjectClass::PRIVATE_KEY, 0x53);
    let signature = signer
        .sign(&Mechanism::Sha256RsaPkcs, private, message)
        .expect("C_Sign");
    key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
        .expect("RSA PKCS#1 v1.5 verifies");
    reader
        .verify(&Mechanism::Sha256RsaPkcs, public, message, &signature)
        .expect("C_Verify (SHA256-RSA-PKCS)");
    let pss = cryptoki::mechanism::rsa::PkcsPssParams {
        hash_alg: cryptoki::mechanism::MechanismType::SHA256,
        mgf: cryptoki::mechanism::rsa::PkcsMgfType::MGF1_SHA256,
        s_len: 32.into(),
    };
    let signature = signer
        .sign(&Mechanism::Sha256RsaPkcsPss(pss), private, message)
        .expect("C_Sign (PSS)");
    reader
        .verify(
            &Mechanism::Sha256RsaPkcsPss(pss),
            public,
            message,
            &signature,
        )
        .expect("C_Verify (SHA256-RSA-PKCS-PSS)");

    // Session objects go with their session, and are never the token's.
    let session_keys = reader
        .find_objects(&[Attribute::Token(false)])
        .expect("session objects");
    assert_eq!(session_keys.len(), 2, "the two created public keys");
    drop(reader);
    let fresh = pkcs11.open_ro_session(slot).expect("RO session");
    assert!(fresh
        .find_objects(&[Attribute::Token(false)])
        .expect("session objects")
        .is_empty());
    let reader = fresh;

    // The derived public half of key 54 is the key's, not an object of its own.
    let derived = find_one(&reader, ObjectClass::PUBLIC_KEY, 0x54);
    let rw = pkcs11.open_rw_session(slot).expect("RW session");
    match rw.destroy_object(derived) {
        Err(CkError::Pkcs11(RvError::ActionProhibited, _)) => {}
        other => panic!("destroying a derived public key: {other:?}"),
    }
    assert_eq!(
        reader
            .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
            .expect("all public keys")
            .len(),
        4,
        "one public key object per key"
    );
    pkcs11.finalize().expect("C_Finalize");
    let _ = (&s.pki, &s.dir);
    Ok(())
}
