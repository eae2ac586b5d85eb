//! `CKA_EC_PARAMS` values: the DER curve names of the EC keys signerd makes and reads.

use crate::KeyType;

/// DER of the P-256 curve OID (1.2.840.10045.3.1.7), the `CKA_EC_PARAMS` of ECDSA keys.
pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the Ed25519 OID (1.3.101.112), the `CKA_EC_PARAMS` signerd gives Ed25519 keys.
pub const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER PrintableString `edwards25519`: how PKCS#11 2.40-era tokens and tools name the curve
/// instead of by OID; accepted when read, never written.
pub const ED25519_PARAMS_NAME: &[u8] = b"\x13\x0cedwards25519";

/// The key type whose curve `params` (a `CKA_EC_PARAMS` value) names; `None` for curves
/// signerd does not use.
pub fn key_type_of_params(params: &[u8]) -> Option<KeyType> {
    if params == P256_PARAMS {
        Some(KeyType::EcP256)
    } else if params == ED25519_PARAMS || params == ED25519_PARAMS_NAME {
        Some(KeyType::Ed25519)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::{ObjectIdentifier, PrintableStringRef};
    use der::Encode as _;

    fn oid_der(dotted: &str) -> Vec<u8> {
        ObjectIdentifier::new_unwrap(dotted).to_der().unwrap()
    }

    #[test]
    fn params_are_the_der_of_the_oids() {
        assert_eq!(P256_PARAMS, oid_der(crate::oid::P256).as_slice());
        assert_eq!(ED25519_PARAMS, oid_der(crate::oid::ED25519).as_slice());
        let name = PrintableStringRef::new("edwards25519")
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(ED25519_PARAMS_NAME, name.as_slice());
    }

    #[test]
    fn params_name_their_key_type() {
        assert_eq!(key_type_of_params(P256_PARAMS), Some(KeyType::EcP256));
        assert_eq!(key_type_of_params(ED25519_PARAMS), Some(KeyType::Ed25519));
        assert_eq!(
            key_type_of_params(ED25519_PARAMS_NAME),
            Some(KeyType::Ed25519)
        );
        // secp384r1: an EC curve signerd does not use.
        assert_eq!(key_type_of_params(&oid_der("1.3.132.0.34")), None);
    }
}
