//! signerd-vocab's names as the admin API's wire types, and back.

use signerd_proto::admin as pb;
use signerd_vocab::{KeyType, PssParams};

/// The wire enum for a key type.
pub fn key_type(key_type: KeyType) -> pb::KeyType {
    match key_type {
        KeyType::EcP256 => pb::KeyType::EcP256,
        KeyType::Ed25519 => pb::KeyType::Ed25519,
        KeyType::Rsa => pb::KeyType::Rsa,
    }
}

/// The key type a wire enum names; `None` for `KEY_TYPE_UNSPECIFIED`.
pub fn key_type_of(wire: pb::KeyType) -> Option<KeyType> {
    match wire {
        pb::KeyType::EcP256 => Some(KeyType::EcP256),
        pb::KeyType::Ed25519 => Some(KeyType::Ed25519),
        pb::KeyType::Rsa => Some(KeyType::Rsa),
        pb::KeyType::Unspecified => None,
    }
}

/// PSS parameters as a `SignRequest` carries them.
pub fn pss(params: PssParams) -> pb::PssParams {
    pb::PssParams {
        hash_mechanism: params.hash,
        mgf: params.mgf,
        salt_length: params.salt_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_round_trip() {
        for k in KeyType::ALL {
            assert_eq!(key_type_of(key_type(k)), Some(k));
        }
        assert_eq!(key_type_of(pb::KeyType::Unspecified), None);
    }

    #[test]
    fn notary_pss_on_the_wire() {
        let wire = pss(PssParams::NOTARY);
        assert_eq!(
            (wire.hash_mechanism, wire.mgf, wire.salt_length),
            (0x250, 2, 32)
        );
    }
}
