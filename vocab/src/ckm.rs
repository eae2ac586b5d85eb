//! PKCS#11 mechanism (`CKM_*`) and MGF (`CKG_*`) numbers signerd names, from the PKCS#11 v3.0
//! headers.

/// `CKM_RSA_PKCS_KEY_PAIR_GEN`.
pub const RSA_PKCS_KEY_PAIR_GEN: u64 = 0x0000;
/// `CKM_RSA_PKCS`.
pub const RSA_PKCS: u64 = 0x0001;
/// `CKM_RSA_PKCS_PSS`.
pub const RSA_PKCS_PSS: u64 = 0x000d;
/// `CKM_SHA256_RSA_PKCS`.
pub const SHA256_RSA_PKCS: u64 = 0x0040;
/// `CKM_SHA256_RSA_PKCS_PSS`.
pub const SHA256_RSA_PKCS_PSS: u64 = 0x0043;
/// `CKM_SHA_1`.
pub const SHA_1: u64 = 0x0220;
/// `CKM_SHA224`.
pub const SHA224: u64 = 0x0255;
/// `CKM_SHA256`.
pub const SHA256: u64 = 0x0250;
/// `CKM_SHA384`.
pub const SHA384: u64 = 0x0260;
/// `CKM_SHA512`.
pub const SHA512: u64 = 0x0270;
/// `CKM_EC_KEY_PAIR_GEN`.
pub const EC_KEY_PAIR_GEN: u64 = 0x1040;
/// `CKM_ECDSA`.
pub const ECDSA: u64 = 0x1041;
/// `CKM_ECDSA_SHA256`.
pub const ECDSA_SHA256: u64 = 0x1044;
/// `CKM_EC_EDWARDS_KEY_PAIR_GEN`.
pub const EC_EDWARDS_KEY_PAIR_GEN: u64 = 0x1055;
/// `CKM_EDDSA`.
pub const EDDSA: u64 = 0x1057;
/// `CKG_MGF1_SHA256` (an MGF, not a mechanism; kept here because PSS parameters pair it with
/// [`SHA256`]).
pub const MGF1_SHA256: u64 = 0x0002;

/// Length in bytes of the digest a `CKM_SHA*` hash mechanism makes; `None` for others.
pub fn digest_len(hash: u64) -> Option<usize> {
    match hash {
        SHA_1 => Some(20),
        SHA224 => Some(28),
        SHA256 => Some(32),
        SHA384 => Some(48),
        SHA512 => Some(64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_lengths_follow_the_hash() {
        assert_eq!(digest_len(SHA_1), Some(20));
        assert_eq!(digest_len(SHA256), Some(32));
        assert_eq!(digest_len(SHA512), Some(64));
        assert_eq!(digest_len(ECDSA), None);
    }
}
