//! Token attribute values turned into Notary's public key and signature encodings: public key
//! objects read into Notary's key encoding, `CKA_KEY_TYPE`s into algorithms, signatures checked.
//!
//! Tokens return `CKA_EC_POINT` either DER-wrapped in an OCTET STRING (as PKCS#11 specifies and
//! SoftHSM does) or raw (as some HSMs do); both are accepted.

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectHandle};
use cryptoki::session::Session;
use der::asn1::OctetString;
use der::Decode;
use p256::pkcs8::EncodePublicKey as _;
use signerd_vocab::curve;

use crate::error::{Attempt, OpError, TokenError};
use crate::key::KeyAlgorithm;

/// The algorithm of a `CKA_KEY_TYPE`; `None` for key types signerd does not use.
pub(crate) fn key_algorithm(t: KeyType) -> Option<KeyAlgorithm> {
    match t {
        KeyType::EC => Some(KeyAlgorithm::Ecdsa),
        KeyType::EC_EDWARDS => Some(KeyAlgorithm::Ed25519),
        KeyType::RSA => Some(KeyAlgorithm::Rsa),
        _ => None,
    }
}

/// The `CKA_KEY_TYPE` of keys of `algorithm`.
pub(crate) fn ck_key_type(algorithm: KeyAlgorithm) -> KeyType {
    match algorithm {
        KeyAlgorithm::Ecdsa => KeyType::EC,
        KeyAlgorithm::Ed25519 => KeyType::EC_EDWARDS,
        KeyAlgorithm::Rsa => KeyType::RSA,
    }
}

/// Reads a public key object into Notary's encoding for `algorithm`.
pub(crate) fn read_public_key(
    session: &Session,
    handle: ObjectHandle,
    algorithm: KeyAlgorithm,
) -> Attempt<Vec<u8>> {
    let want: &[AttributeType] = match algorithm {
        KeyAlgorithm::Ecdsa | KeyAlgorithm::Ed25519 => {
            &[AttributeType::EcParams, AttributeType::EcPoint]
        }
        KeyAlgorithm::Rsa => &[AttributeType::Modulus, AttributeType::PublicExponent],
    };
    let (mut params, mut point, mut modulus, mut exponent) = (None, None, None, None);
    for attr in session.get_attributes(handle, want)? {
        match attr {
            Attribute::EcParams(v) => params = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            Attribute::Modulus(v) => modulus = Some(v),
            Attribute::PublicExponent(v) => exponent = Some(v),
            _ => {}
        }
    }
    let bad = |reason: String| {
        OpError::Final(TokenError::MalformedKey {
            id: format!("handle {handle}"),
            reason,
        })
    };
    let curve = curve::key_type_of_params(params.as_deref().unwrap_or_default());
    match algorithm {
        KeyAlgorithm::Ecdsa => {
            if curve != Some(signerd_vocab::KeyType::EcP256) {
                return Err(bad(
                    "an EC key that is not on P-256 (signerd's ecdsa is P-256 only)".into(),
                ));
            }
            p256_spki(&point.unwrap_or_default()).map_err(bad)
        }
        KeyAlgorithm::Ed25519 => {
            if curve != Some(signerd_vocab::KeyType::Ed25519) {
                return Err(bad("an Edwards key that is not Ed25519".into()));
            }
            ed25519_raw(&point.unwrap_or_default()).map_err(bad)
        }
        KeyAlgorithm::Rsa => {
            rsa_spki(&modulus.unwrap_or_default(), &exponent.unwrap_or_default()).map_err(bad)
        }
    }
}

/// The raw point inside a `CKA_EC_POINT` value.
fn ec_point(value: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    if value.len() == raw_len {
        return Ok(value.to_vec());
    }
    OctetString::from_der(value)
        .map(|o| o.into_bytes())
        .map_err(|e| {
            format!("CKA_EC_POINT is neither a {raw_len}-byte point nor a DER OCTET STRING: {e}")
        })
}

/// DER SubjectPublicKeyInfo (91 bytes) of a P-256 `CKA_EC_POINT`.
pub(crate) fn p256_spki(point: &[u8]) -> Result<Vec<u8>, String> {
    let sec1 = ec_point(point, 65)?;
    let key =
        p256::PublicKey::from_sec1_bytes(&sec1).map_err(|e| format!("bad P-256 point: {e}"))?;
    key.to_public_key_der()
        .map(|d| d.into_vec())
        .map_err(|e| e.to_string())
}

/// The raw 32 bytes of an Ed25519 `CKA_EC_POINT`.
pub(crate) fn ed25519_raw(point: &[u8]) -> Result<Vec<u8>, String> {
    let raw = ec_point(point, 32)?;
    if raw.len() != 32 {
        return Err(format!("an Ed25519 point has 32 bytes, not {}", raw.len()));
    }
    Ok(raw)
}

/// DER SubjectPublicKeyInfo of an RSA key from its modulus and public exponent.
pub(crate) fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, String> {
    let key = rsa::RsaPublicKey::new_with_max_size(
        rsa::BigUint::from_bytes_be(modulus),
        rsa::BigUint::from_bytes_be(exponent),
        16384,
    )
    .map_err(|e| format!("bad RSA public key: {e}"))?;
    key.to_public_key_der()
        .map(|d| d.into_vec())
        .map_err(|e| e.to_string())
}

/// Checks a `CKM_ECDSA` signature over P-256 is raw `r||s` of 64 bytes.
pub(crate) fn ecdsa_raw_signature(sig: Vec<u8>) -> Result<Vec<u8>, String> {
    if sig.len() == 64 {
        Ok(sig)
    } else {
        Err(format!(
            "the token returned a {}-byte ECDSA signature; P-256 raw r||s has 64",
            sig.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Encode;

    #[test]
    fn p256_point_wrapped_or_raw_gives_91_byte_spki() {
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let point = secret.public_key().to_sec1_bytes().to_vec();
        let wrapped = OctetString::new(point.clone()).unwrap().to_der().unwrap();
        let a = p256_spki(&point).unwrap();
        let b = p256_spki(&wrapped).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 91);
    }

    #[test]
    fn ed25519_point_unwrapped() {
        let wrapped = OctetString::new(vec![9u8; 32]).unwrap().to_der().unwrap();
        assert_eq!(ed25519_raw(&wrapped).unwrap(), vec![9u8; 32]);
        assert!(ed25519_raw(&[1, 2, 3]).is_err());
    }

    #[test]
    fn ecdsa_signature_length_checked() {
        assert!(ecdsa_raw_signature(vec![0; 64]).is_ok());
        assert!(ecdsa_raw_signature(vec![0; 70]).is_err());
    }
}
