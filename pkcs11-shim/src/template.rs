//! Attribute templates, parsed: what a `C_FindObjectsInit`, `C_CreateObject` or
//! `C_GenerateKeyPair` template asks of signerd.
//!
//! The FFI layer copies every template into [`Attr`]s whose values are wiped on drop (a
//! `C_CreateObject` template can hold a private key).

use cryptoki_sys::*;
use signerd_client::secret::ImportPrivateKeyRequest;
use signerd_proto::admin::{
    FindObjectsRequest, GenerateKeyPairRequest, KeyType, Object, ObjectClass, ObjectRef,
    StoreCertificateRequest,
};
use signerd_vocab::curve::{ED25519_PARAMS, ED25519_PARAMS_NAME, P256_PARAMS};
use zeroize::Zeroizing;

use crate::error::Error;

/// One attribute of a template, copied out of the caller's memory.
#[derive(Clone)]
pub struct Attr {
    /// `CKA_*`.
    pub ty: CK_ATTRIBUTE_TYPE,
    /// The value's bytes, wiped on drop.
    pub value: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Attr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Attr({:#x}, {} bytes)", self.ty, self.value.len())
    }
}

impl Attr {
    /// An attribute with a copy of `value`.
    pub fn new(ty: CK_ATTRIBUTE_TYPE, value: Vec<u8>) -> Attr {
        Attr {
            ty,
            value: Zeroizing::new(value),
        }
    }
}

/// The value of `ty` in `template`, if given.
fn get(template: &[Attr], ty: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
    template
        .iter()
        .find(|a| a.ty == ty)
        .map(|a| a.value.as_slice())
}

/// A `CK_ULONG` attribute.
fn get_ulong(template: &[Attr], ty: CK_ATTRIBUTE_TYPE) -> Result<Option<CK_ULONG>, Error> {
    match get(template, ty) {
        None => Ok(None),
        Some(bytes) => {
            let arr: [u8; std::mem::size_of::<CK_ULONG>()] = bytes.try_into().map_err(|_| {
                Error::AttributeValueInvalid(format!(
                    "attribute {ty:#x} must be a CK_ULONG ({} bytes), got {} bytes",
                    std::mem::size_of::<CK_ULONG>(),
                    bytes.len()
                ))
            })?;
            Ok(Some(CK_ULONG::from_ne_bytes(arr)))
        }
    }
}

/// A `CK_BBOOL` attribute.
fn get_bool(template: &[Attr], ty: CK_ATTRIBUTE_TYPE) -> Result<Option<bool>, Error> {
    match get(template, ty) {
        None => Ok(None),
        Some([b]) => Ok(Some(*b != CK_FALSE)),
        Some(other) => Err(Error::AttributeValueInvalid(format!(
            "attribute {ty:#x} must be a CK_BBOOL (1 byte), got {} bytes",
            other.len()
        ))),
    }
}

/// `CKA_LABEL` as text.
fn get_label(template: &[Attr]) -> Result<Option<String>, Error> {
    match get(template, CKA_LABEL) {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| Error::AttributeValueInvalid("CKA_LABEL is not UTF-8".into())),
    }
}

/// The signerd object class of a `CKO_*`, if signerd has such objects.
fn object_class(class: CK_OBJECT_CLASS) -> Option<ObjectClass> {
    match class {
        CKO_PRIVATE_KEY => Some(ObjectClass::PrivateKey),
        CKO_PUBLIC_KEY => Some(ObjectClass::PublicKey),
        CKO_CERTIFICATE => Some(ObjectClass::Certificate),
        _ => None,
    }
}

/// The filter signerd can apply for a search template, or `None` when nothing can match (a
/// class or key type signerd never holds). The shim checks every attribute again itself.
pub fn find_request(template: &[Attr]) -> Result<Option<FindObjectsRequest>, Error> {
    let mut request = FindObjectsRequest::default();
    if let Some(class) = get_ulong(template, CKA_CLASS)? {
        match object_class(class) {
            Some(c) => request.class = c as i32,
            None => return Ok(None),
        }
    }
    if let Some(id) = get(template, CKA_ID) {
        request.id = id.to_vec();
    }
    match get(template, CKA_LABEL).map(|l| String::from_utf8(l.to_vec())) {
        Some(Ok(label)) => request.label = label,
        Some(Err(_)) => return Ok(None),
        None => {}
    }
    if let Some(key_type) = get_ulong(template, CKA_KEY_TYPE)? {
        request.key_type = match key_type {
            CKK_EC => KeyType::EcP256,
            CKK_EC_EDWARDS => KeyType::Ed25519,
            CKK_RSA => KeyType::Rsa,
            _ => return Ok(None),
        } as i32;
    }
    Ok(Some(request))
}

/// What a `C_CreateObject` template makes.
#[derive(Debug)]
pub enum NewObject {
    /// An X.509 certificate for signerd's token.
    Certificate(StoreCertificateRequest),
    /// A private key to import into signerd's token (PKCS#8, wiped on drop).
    PrivateKey(ImportPrivateKeyRequest),
    /// A session object (`CKA_TOKEN` false) the shim keeps in its memory: a public key or a
    /// certificate, described as signerd would describe it.
    Session(Object),
}

/// Parses a `C_CreateObject` template. Accepts what the notary CLI sends, as ykcs11 does: a
/// certificate with only `CKA_CLASS`, `CKA_VALUE` and `CKA_ID`, and a `CKK_ECDSA` private key
/// as `CKA_EC_PARAMS` + `CKA_VALUE` (the scalar) with a `CKA_VENDOR_DEFINED` touch policy.
/// Public keys and certificates with `CKA_TOKEN` false become session objects.
pub fn new_object(template: &[Attr]) -> Result<NewObject, Error> {
    new_object_in(template, false)
}

/// As [`new_object`], in a session that is `read_only`: there a certificate without
/// `CKA_TOKEN` is a session object, PKCS#11's default (python-pkcs11 imports certificates
/// so), as a read-only session cannot make token objects.
pub fn new_object_in(template: &[Attr], read_only: bool) -> Result<NewObject, Error> {
    let class = get_ulong(template, CKA_CLASS)?.ok_or(Error::TemplateIncomplete("CKA_CLASS"))?;
    // PKCS#11's default for CKA_TOKEN is false; the notary CLI (and ykcs11 with it) never
    // sets it and means the token (in a read-write session), so there only an explicit false
    // makes a session object.
    let token = match get_bool(template, CKA_TOKEN)? {
        None if read_only => Some(false),
        given => given,
    };
    let id = get(template, CKA_ID).unwrap_or_default().to_vec();
    let label = get_label(template)?.unwrap_or_default();
    let reference = |class: ObjectClass| ObjectRef {
        class: class as i32,
        id: id.clone(),
        label: label.clone(),
    };
    match class {
        CKO_CERTIFICATE => {
            if let Some(ty) = get_ulong(template, CKA_CERTIFICATE_TYPE)? {
                if ty != CKC_X_509 {
                    return Err(Error::AttributeValueInvalid(format!(
                        "certificate type {ty:#x}: only X.509 certificates are stored"
                    )));
                }
            }
            let der = get(template, CKA_VALUE)
                .ok_or(Error::TemplateIncomplete("CKA_VALUE (the certificate DER)"))?;
            let cert = <x509_cert::Certificate as der::Decode>::from_der(der).map_err(|e| {
                Error::AttributeValueInvalid(format!("CKA_VALUE is not an X.509 certificate: {e}"))
            })?;
            if token == Some(false) {
                let spki = der::Encode::to_der(&cert.tbs_certificate.subject_public_key_info)
                    .unwrap_or_default();
                let key_type = spki_key_type(&spki);
                return Ok(NewObject::Session(Object {
                    r#ref: Some(reference(ObjectClass::Certificate)),
                    key_type: key_type as i32,
                    public_key_spki: spki,
                    certificate_der: der.to_vec(),
                    ..Object::default()
                }));
            }
            Ok(NewObject::Certificate(StoreCertificateRequest {
                id,
                label,
                certificate_der: der.to_vec(),
            }))
        }
        CKO_PUBLIC_KEY => {
            if token == Some(true) {
                return Err(Error::TemplateInconsistent(
                    "CKA_TOKEN=true: signerd's token keeps a public key only beside its private key; create it with CKA_TOKEN=false (a session object in the shim's memory)".into(),
                ));
            }
            let key_type = get_ulong(template, CKA_KEY_TYPE)?
                .ok_or(Error::TemplateIncomplete("CKA_KEY_TYPE"))?;
            let (key_type, spki, rsa_bits) = public_key_spki(key_type, template)?;
            Ok(NewObject::Session(Object {
                r#ref: Some(reference(ObjectClass::PublicKey)),
                key_type: key_type as i32,
                public_key_spki: spki,
                rsa_bits,
                ..Object::default()
            }))
        }
        CKO_PRIVATE_KEY => {
            if token == Some(false) {
                return Err(Error::TemplateInconsistent(
                    "CKA_TOKEN=false: imported private keys live in signerd's token; import with CKA_TOKEN=true".into(),
                ));
            }
            let key_type = get_ulong(template, CKA_KEY_TYPE)?
                .ok_or(Error::TemplateIncomplete("CKA_KEY_TYPE"))?;
            let (key_type, pkcs8_der) = private_key_pkcs8(key_type, template)?;
            Ok(NewObject::PrivateKey(ImportPrivateKeyRequest {
                id,
                label,
                key_type: key_type as i32,
                pkcs8_der,
            }))
        }
        other => Err(Error::AttributeValueInvalid(format!(
            "CKA_CLASS {other:#x}: only certificates, public keys and private keys can be created"
        ))),
    }
}

/// The key type of a DER SubjectPublicKeyInfo signerd knows, by its algorithm.
fn spki_key_type(spki: &[u8]) -> KeyType {
    use rsa::pkcs8::DecodePublicKey;
    if p256::PublicKey::from_public_key_der(spki).is_ok() {
        KeyType::EcP256
    } else if ed25519_dalek::VerifyingKey::from_public_key_der(spki).is_ok() {
        KeyType::Ed25519
    } else if rsa::RsaPublicKey::from_public_key_der(spki).is_ok() {
        KeyType::Rsa
    } else {
        KeyType::Unspecified
    }
}

/// `CKA_EC_POINT` as given: a DER OCTET STRING (PKCS#11's form) or, as many clients pass it,
/// the bare point.
fn ec_point(template: &[Attr]) -> Result<Vec<u8>, Error> {
    let given = get(template, CKA_EC_POINT).ok_or(Error::TemplateIncomplete("CKA_EC_POINT"))?;
    Ok(
        match <der::asn1::OctetString as der::Decode>::from_der(given) {
            Ok(octets) => octets.into_bytes(),
            Err(_) => given.to_vec(),
        },
    )
}

/// The DER SubjectPublicKeyInfo of a public key given by its PKCS#11 attributes, with its
/// key type and (RSA) modulus size.
fn public_key_spki(
    key_type: CK_KEY_TYPE,
    template: &[Attr],
) -> Result<(KeyType, Vec<u8>, u32), Error> {
    use rsa::pkcs8::EncodePublicKey;
    let encoded = |r: Result<der::Document, spki::Error>| {
        r.map(|d| d.as_bytes().to_vec())
            .map_err(|e| Error::General(format!("SubjectPublicKeyInfo encoding: {e}")))
    };
    match key_type {
        CKK_EC => {
            let params =
                get(template, CKA_EC_PARAMS).ok_or(Error::TemplateIncomplete("CKA_EC_PARAMS"))?;
            if params != P256_PARAMS {
                return Err(Error::CurveNotSupported);
            }
            let key = p256::PublicKey::from_sec1_bytes(&ec_point(template)?).map_err(|_| {
                Error::AttributeValueInvalid("CKA_EC_POINT is not a P-256 point".into())
            })?;
            Ok((KeyType::EcP256, encoded(key.to_public_key_der())?, 0))
        }
        CKK_EC_EDWARDS => {
            if let Some(params) = get(template, CKA_EC_PARAMS) {
                if params != ED25519_PARAMS && params != ED25519_PARAMS_NAME {
                    return Err(Error::CurveNotSupported);
                }
            }
            let point: [u8; 32] = ec_point(template)?.try_into().map_err(|_| {
                Error::AttributeValueInvalid("an Ed25519 CKA_EC_POINT is 32 bytes".into())
            })?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&point).map_err(|_| {
                Error::AttributeValueInvalid("CKA_EC_POINT is not an Ed25519 key".into())
            })?;
            Ok((KeyType::Ed25519, encoded(key.to_public_key_der())?, 0))
        }
        CKK_RSA => {
            let part = |ty, name| {
                get(template, ty)
                    .map(rsa::BigUint::from_bytes_be)
                    .ok_or(Error::TemplateIncomplete(name))
            };
            let key = rsa::RsaPublicKey::new(
                part(CKA_MODULUS, "CKA_MODULUS")?,
                part(CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT")?,
            )
            .map_err(|e| Error::AttributeValueInvalid(format!("not an RSA public key: {e}")))?;
            let bits = u32::try_from(rsa::traits::PublicKeyParts::n(&key).bits()).unwrap_or(0);
            Ok((KeyType::Rsa, encoded(key.to_public_key_der())?, bits))
        }
        other => Err(Error::AttributeValueInvalid(format!(
            "key type {other:#x}: the shim knows EC P-256, Ed25519 and RSA public keys"
        ))),
    }
}

/// The PKCS#8 encoding of a private key given by its PKCS#11 components.
fn private_key_pkcs8(
    key_type: CK_KEY_TYPE,
    template: &[Attr],
) -> Result<(KeyType, Zeroizing<Vec<u8>>), Error> {
    let value = || get(template, CKA_VALUE).ok_or(Error::TemplateIncomplete("CKA_VALUE"));
    match key_type {
        CKK_EC => {
            let params =
                get(template, CKA_EC_PARAMS).ok_or(Error::TemplateIncomplete("CKA_EC_PARAMS"))?;
            if params != P256_PARAMS {
                return Err(Error::CurveNotSupported);
            }
            let scalar = value()?;
            if scalar.is_empty() || scalar.len() > 32 {
                return Err(Error::AttributeValueInvalid(format!(
                    "an EC P-256 private value is at most 32 bytes, got {}",
                    scalar.len()
                )));
            }
            let mut padded = Zeroizing::new([0u8; 32]);
            padded[32 - scalar.len()..].copy_from_slice(scalar);
            let secret = p256::SecretKey::from_slice(padded.as_slice()).map_err(|_| {
                Error::AttributeValueInvalid("CKA_VALUE is not a P-256 private scalar".into())
            })?;
            let doc = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&secret)
                .map_err(|e| Error::General(format!("PKCS#8 encoding: {e}")))?;
            Ok((KeyType::EcP256, Zeroizing::new(doc.as_bytes().to_vec())))
        }
        CKK_EC_EDWARDS => {
            if let Some(params) = get(template, CKA_EC_PARAMS) {
                if params != ED25519_PARAMS && params != ED25519_PARAMS_NAME {
                    return Err(Error::CurveNotSupported);
                }
            }
            let seed: &[u8; 32] = value()?.try_into().map_err(|_| {
                Error::AttributeValueInvalid("an Ed25519 private value is 32 bytes".into())
            })?;
            let key = ed25519_dalek::SigningKey::from_bytes(seed);
            let doc = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&key)
                .map_err(|e| Error::General(format!("PKCS#8 encoding: {e}")))?;
            Ok((KeyType::Ed25519, Zeroizing::new(doc.as_bytes().to_vec())))
        }
        CKK_RSA => {
            let part = |ty, name| {
                get(template, ty)
                    .map(rsa::BigUint::from_bytes_be)
                    .ok_or(Error::TemplateIncomplete(name))
            };
            let key = rsa::RsaPrivateKey::from_components(
                part(CKA_MODULUS, "CKA_MODULUS")?,
                part(CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT")?,
                part(CKA_PRIVATE_EXPONENT, "CKA_PRIVATE_EXPONENT")?,
                vec![
                    part(CKA_PRIME_1, "CKA_PRIME_1")?,
                    part(CKA_PRIME_2, "CKA_PRIME_2")?,
                ],
            )
            .map_err(|e| Error::AttributeValueInvalid(format!("not an RSA private key: {e}")))?;
            let doc = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&key)
                .map_err(|e| Error::General(format!("PKCS#8 encoding: {e}")))?;
            Ok((KeyType::Rsa, Zeroizing::new(doc.as_bytes().to_vec())))
        }
        other => Err(Error::AttributeValueInvalid(format!(
            "key type {other:#x}: signerd holds EC P-256, Ed25519 and RSA keys"
        ))),
    }
}

/// Parses `C_GenerateKeyPair`'s mechanism and templates into a request.
pub fn key_pair_request(
    mechanism: CK_MECHANISM_TYPE,
    public: &[Attr],
    private: &[Attr],
) -> Result<GenerateKeyPairRequest, Error> {
    let both = |ty| -> Result<Option<Vec<u8>>, Error> {
        match (get(private, ty), get(public, ty)) {
            (Some(a), Some(b)) if a != b => Err(Error::TemplateInconsistent(format!(
                "attribute {ty:#x} differs between the public and private templates"
            ))),
            (Some(a), _) | (None, Some(a)) => Ok(Some(a.to_vec())),
            (None, None) => Ok(None),
        }
    };
    // The private half decides: PKCS#11's default, CKA_TOKEN false, makes a session key
    // pair (python-pkcs11 asks for one unless told to store the keys).
    let token = match get_bool(private, CKA_TOKEN)? {
        Some(t) => t,
        None => get_bool(public, CKA_TOKEN)?.unwrap_or(false),
    };
    let mut request = GenerateKeyPairRequest {
        session: !token,
        id: both(CKA_ID)?.unwrap_or_default(),
        label: match both(CKA_LABEL)? {
            Some(l) => String::from_utf8(l)
                .map_err(|_| Error::AttributeValueInvalid("CKA_LABEL is not UTF-8".into()))?,
            None => String::new(),
        },
        ..GenerateKeyPairRequest::default()
    };
    let params = both(CKA_EC_PARAMS)?;
    request.key_type = match mechanism {
        CKM_EC_KEY_PAIR_GEN => match params.as_deref() {
            Some(p) if p == P256_PARAMS => KeyType::EcP256,
            Some(p) if p == ED25519_PARAMS || p == ED25519_PARAMS_NAME => {
                return Err(Error::TemplateInconsistent(
                    "Ed25519 keys are made with CKM_EC_EDWARDS_KEY_PAIR_GEN".into(),
                ))
            }
            Some(_) => return Err(Error::CurveNotSupported),
            None => return Err(Error::TemplateIncomplete("CKA_EC_PARAMS")),
        },
        CKM_EC_EDWARDS_KEY_PAIR_GEN => match params.as_deref() {
            None => KeyType::Ed25519,
            Some(p) if p == ED25519_PARAMS || p == ED25519_PARAMS_NAME => KeyType::Ed25519,
            Some(_) => return Err(Error::CurveNotSupported),
        },
        CKM_RSA_PKCS_KEY_PAIR_GEN => {
            let bits = get_ulong(public, CKA_MODULUS_BITS)?.unwrap_or(0);
            let refused = || {
                Error::KeySizeRange(format!(
                    "{bits}-bit RSA: signerd makes RSA keys of {} bits",
                    signerd_vocab::defaults::rsa_bits_choices()
                ))
            };
            request.rsa_bits = u32::try_from(bits).map_err(|_| refused())?;
            // 0: CKA_MODULUS_BITS not given, signerd's configured default.
            if request.rsa_bits != 0 && !signerd_vocab::defaults::rsa_bits_allowed(request.rsa_bits)
            {
                return Err(refused());
            }
            if let Some(e) = get(public, CKA_PUBLIC_EXPONENT) {
                let trimmed: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
                if trimmed != [0x01, 0x00, 0x01] {
                    return Err(Error::AttributeValueInvalid(
                        "CKA_PUBLIC_EXPONENT: signerd makes RSA keys with e = 65537".into(),
                    ));
                }
            }
            KeyType::Rsa
        }
        other => return Err(Error::MechanismInvalid(other)),
    } as i32;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ul(ty: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> Attr {
        Attr::new(ty, v.to_ne_bytes().to_vec())
    }

    #[test]
    fn notary_cli_templates_are_accepted() {
        // The certificate template of notary's yubikey store: no CKA_CERTIFICATE_TYPE, no
        // CKA_SUBJECT.
        let key = p256::SecretKey::from_slice(&[9u8; 32]).unwrap();
        let mut params = rcgen_free_cert(&key);
        let cert = vec![
            ul(CKA_CLASS, CKO_CERTIFICATE),
            Attr::new(CKA_VALUE, std::mem::take(&mut params)),
            Attr::new(CKA_ID, vec![2]),
        ];
        let NewObject::Certificate(req) = new_object(&cert).unwrap() else {
            panic!("certificate")
        };
        assert_eq!(req.id, vec![2]);

        // The private key template, with a 31-byte scalar (Go drops leading zeros).
        let mut scalar = vec![0u8; 31];
        scalar[30] = 5;
        let private = vec![
            ul(CKA_CLASS, CKO_PRIVATE_KEY),
            ul(CKA_KEY_TYPE, CKK_EC),
            Attr::new(CKA_ID, vec![2]),
            Attr::new(CKA_EC_PARAMS, P256_PARAMS.to_vec()),
            Attr::new(CKA_VALUE, scalar),
            ul(CKA_VENDOR_DEFINED, 3),
        ];
        let NewObject::PrivateKey(req) = new_object(&private).unwrap() else {
            panic!("private key")
        };
        assert_eq!(req.key_type, KeyType::EcP256 as i32);
        let parsed =
            <p256::SecretKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(&req.pkcs8_der)
                .unwrap();
        assert_eq!(parsed.to_bytes()[31], 5);
    }

    #[test]
    fn public_keys_are_session_objects_with_their_spki() {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let key = p256::SecretKey::from_slice(&[9u8; 32])
            .unwrap()
            .public_key();
        let point = key.to_encoded_point(false).as_bytes().to_vec();
        let wrapped =
            der::Encode::to_der(&der::asn1::OctetStringRef::new(&point).unwrap()).unwrap();
        for given in [wrapped, point] {
            let template = vec![
                ul(CKA_CLASS, CKO_PUBLIC_KEY),
                ul(CKA_KEY_TYPE, CKK_EC),
                Attr::new(CKA_EC_PARAMS, P256_PARAMS.to_vec()),
                Attr::new(CKA_EC_POINT, given),
            ];
            let NewObject::Session(object) = new_object(&template).unwrap() else {
                panic!("a session object")
            };
            assert_eq!(object.key_type, KeyType::EcP256 as i32);
            let spki = <p256::PublicKey as p256::pkcs8::DecodePublicKey>::from_public_key_der(
                &object.public_key_spki,
            )
            .unwrap();
            assert_eq!(spki, key);
        }
        let token = vec![
            ul(CKA_CLASS, CKO_PUBLIC_KEY),
            Attr::new(CKA_TOKEN, vec![1]),
            ul(CKA_KEY_TYPE, CKK_EC),
        ];
        assert!(matches!(
            new_object(&token),
            Err(Error::TemplateInconsistent(_))
        ));
    }

    /// A self-signed certificate DER for `key`, made without extra dependencies.
    fn rcgen_free_cert(key: &p256::SecretKey) -> Vec<u8> {
        use der::Encode;
        use p256::pkcs8::EncodePublicKey;
        use std::str::FromStr;
        use x509_cert::builder::{Builder, CertificateBuilder, Profile};
        let signer = p256::ecdsa::SigningKey::from(key.clone());
        let spki_der = key.public_key().to_public_key_der().unwrap();
        let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(spki_der.as_bytes())
            .unwrap();
        let builder = CertificateBuilder::new(
            Profile::Root,
            x509_cert::serial_number::SerialNumber::from(1u32),
            x509_cert::time::Validity::from_now(std::time::Duration::from_secs(3600)).unwrap(),
            x509_cert::name::Name::from_str("CN=root").unwrap(),
            spki,
            &signer,
        )
        .unwrap();
        builder
            .build::<p256::ecdsa::DerSignature>()
            .unwrap()
            .to_der()
            .unwrap()
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        assert!(matches!(
            new_object(&[ul(CKA_CLASS, CKO_DATA)]),
            Err(Error::AttributeValueInvalid(_))
        ));
        assert!(matches!(
            new_object(&[
                ul(CKA_CLASS, CKO_CERTIFICATE),
                Attr::new(CKA_VALUE, vec![1, 2])
            ]),
            Err(Error::AttributeValueInvalid(_))
        ));
        assert!(matches!(
            new_object(&[
                ul(CKA_CLASS, CKO_PRIVATE_KEY),
                ul(CKA_KEY_TYPE, CKK_EC),
                Attr::new(CKA_EC_PARAMS, vec![6, 5, 0x2b, 0x81, 4, 0, 0x22]),
                Attr::new(CKA_VALUE, vec![1; 48]),
            ]),
            Err(Error::CurveNotSupported)
        ));
        assert!(matches!(new_object(&[]), Err(Error::TemplateIncomplete(_))));
    }

    #[test]
    fn key_pair_templates() {
        let req = key_pair_request(
            CKM_EC_KEY_PAIR_GEN,
            &[
                Attr::new(CKA_EC_PARAMS, P256_PARAMS.to_vec()),
                Attr::new(CKA_ID, vec![0xab]),
            ],
            &[
                Attr::new(CKA_ID, vec![0xab]),
                Attr::new(CKA_LABEL, b"k".to_vec()),
            ],
        )
        .unwrap();
        assert_eq!(req.key_type, KeyType::EcP256 as i32);
        assert_eq!(req.id, vec![0xab]);
        assert_eq!(req.label, "k");
        let req = key_pair_request(
            CKM_EC_EDWARDS_KEY_PAIR_GEN,
            &[Attr::new(CKA_EC_PARAMS, ED25519_PARAMS_NAME.to_vec())],
            &[],
        )
        .unwrap();
        assert_eq!(req.key_type, KeyType::Ed25519 as i32);
        let req = key_pair_request(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            &[
                ul(CKA_MODULUS_BITS, 2048),
                Attr::new(CKA_PUBLIC_EXPONENT, vec![1, 0, 1]),
            ],
            &[],
        )
        .unwrap();
        assert_eq!((req.key_type, req.rsa_bits), (KeyType::Rsa as i32, 2048));
        assert!(matches!(
            key_pair_request(
                CKM_EC_KEY_PAIR_GEN,
                &[Attr::new(CKA_ID, vec![1])],
                &[Attr::new(CKA_ID, vec![2])]
            ),
            Err(Error::TemplateInconsistent(_))
        ));
    }

    #[test]
    fn find_filters() {
        let req = find_request(&[ul(CKA_CLASS, CKO_CERTIFICATE), Attr::new(CKA_ID, vec![1])])
            .unwrap()
            .unwrap();
        assert_eq!(req.class, ObjectClass::Certificate as i32);
        assert_eq!(req.id, vec![1]);
        assert!(find_request(&[ul(CKA_CLASS, CKO_SECRET_KEY)])
            .unwrap()
            .is_none());
        assert!(find_request(&[ul(CKA_KEY_TYPE, CKK_AES)])
            .unwrap()
            .is_none());
    }
}
