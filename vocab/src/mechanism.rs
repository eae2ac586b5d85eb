//! The signing mechanism table: every mechanism signerd signs with, its `CKM_*` number and
//! name, the key type it needs, whether it hashes the data first, its PSS parameters, and the
//! mechanism that makes Notary's signature for each key type.

use std::fmt;

use crate::ckm;

/// DER prefix of a SHA-256 `DigestInfo` (RFC 8017 9.2, note 1): the 32-byte digest follows.
/// `CKM_RSA_PKCS` signs a DigestInfo, so whoever hashes for it prepends this.
pub const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The key types signerd signs with, as its admin API names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA over P-256 (TUF `ecdsa`).
    EcP256,
    /// Ed25519 (TUF `ed25519`).
    Ed25519,
    /// RSA (TUF `rsa`).
    Rsa,
}

impl KeyType {
    /// Every key type, in the order they are documented.
    pub const ALL: [KeyType; 3] = [KeyType::EcP256, KeyType::Ed25519, KeyType::Rsa];

    /// The TUF `keytype` string (`ecdsa`, `ed25519`, `rsa`).
    pub fn tuf_keytype(self) -> &'static str {
        match self {
            KeyType::EcP256 => "ecdsa",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa => "rsa",
        }
    }

    /// The key type a TUF `keytype` string names; `None` for others (`ecdsa-x509`, ...).
    pub fn from_tuf_keytype(keytype: &str) -> Option<KeyType> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.tuf_keytype() == keytype)
    }

    /// The TUF signature method Notary records for signatures by this key type (`ecdsa`,
    /// `eddsa`, `rsapss`).
    pub fn notary_method(self) -> &'static str {
        match self {
            KeyType::EcP256 => "ecdsa",
            KeyType::Ed25519 => "eddsa",
            KeyType::Rsa => "rsapss",
        }
    }

    /// The mechanism that makes Notary's signature with a key of this type over a message.
    pub fn notary_mechanism(self) -> SignMechanism {
        SignMechanism::notary(self)
    }

    /// The `CKM_*` key pair generation mechanism for this key type.
    pub fn keygen_ckm(self) -> u64 {
        match self {
            KeyType::EcP256 => ckm::EC_KEY_PAIR_GEN,
            KeyType::Ed25519 => ckm::EC_EDWARDS_KEY_PAIR_GEN,
            KeyType::Rsa => ckm::RSA_PKCS_KEY_PAIR_GEN,
        }
    }

    /// The mechanism that signs with this key type without hashing (what a token must offer
    /// for signerd to sign with such keys at all).
    pub fn raw_mechanism(self) -> SignMechanism {
        match self {
            KeyType::EcP256 => SignMechanism::Ecdsa,
            KeyType::Ed25519 => SignMechanism::Eddsa,
            KeyType::Rsa => SignMechanism::RsaPkcs,
        }
    }
}

/// RSA-PSS parameters as PKCS#11 numbers them (`CK_RSA_PKCS_PSS_PARAMS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PssParams {
    /// `CKM_SHA256`, ...
    pub hash: u64,
    /// `CKG_MGF1_SHA256`, ...
    pub mgf: u64,
    /// Salt length in bytes.
    pub salt_len: u64,
}

impl PssParams {
    /// Notary's RSA-PSS: SHA-256, MGF1 with SHA-256, a 32-byte salt.
    pub const NOTARY: PssParams = PssParams {
        hash: ckm::SHA256,
        mgf: ckm::MGF1_SHA256,
        salt_len: 32,
    };

    /// Length of the digest `hash` makes, which is what `CKM_RSA_PKCS_PSS` signs; `None` when
    /// the hash is not one signerd knows.
    pub fn digest_len(&self) -> Option<usize> {
        ckm::digest_len(self.hash)
    }
}

/// A signing mechanism signerd carries out, by its PKCS#11 name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignMechanism {
    /// `CKM_ECDSA`: the data is a digest; raw `r||s`.
    Ecdsa,
    /// `CKM_ECDSA_SHA256`: the data is the message, hashed with SHA-256, then `CKM_ECDSA`.
    EcdsaSha256,
    /// `CKM_EDDSA`: pure Ed25519 over the message.
    Eddsa,
    /// `CKM_RSA_PKCS`: the data is a DigestInfo the caller made.
    RsaPkcs,
    /// `CKM_RSA_PKCS_PSS`: the data is a digest.
    RsaPkcsPss(PssParams),
    /// `CKM_SHA256_RSA_PKCS`: the data is the message.
    Sha256RsaPkcs,
    /// `CKM_SHA256_RSA_PKCS_PSS`: the data is the message.
    Sha256RsaPkcsPss(PssParams),
}

/// Why a `CKM_*` number names no mechanism signerd signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MechanismError {
    /// An RSA-PSS mechanism came without its parameters.
    NeedsPssParams(u64),
    /// Not a signing mechanism signerd carries out.
    Unsupported(u64),
}

impl fmt::Display for MechanismError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MechanismError::NeedsPssParams(m) => write!(
                f,
                "mechanism 0x{m:x} (RSA-PSS) needs PSS parameters (hash, MGF, salt length)"
            ),
            MechanismError::Unsupported(m) => {
                write!(f, "signing mechanism 0x{m:x} is not supported; use ")?;
                let names =
                    SignMechanism::ALL_CKM.map(|m| SignMechanism::name_of(m).unwrap_or("?"));
                if let Some((last, rest)) = names.split_last() {
                    write!(f, "{} or {last}", rest.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for MechanismError {}

impl SignMechanism {
    /// The `CKM_*` number of every signing mechanism signerd carries out, in table order.
    pub const ALL_CKM: [u64; 7] = [
        ckm::ECDSA,
        ckm::ECDSA_SHA256,
        ckm::EDDSA,
        ckm::RSA_PKCS,
        ckm::RSA_PKCS_PSS,
        ckm::SHA256_RSA_PKCS,
        ckm::SHA256_RSA_PKCS_PSS,
    ];

    /// The mechanism a PKCS#11 number names; PSS mechanisms need `pss`, others ignore it.
    pub fn from_ckm(
        mechanism: u64,
        pss: Option<PssParams>,
    ) -> Result<SignMechanism, MechanismError> {
        let need_pss = || pss.ok_or(MechanismError::NeedsPssParams(mechanism));
        Ok(match mechanism {
            ckm::ECDSA => SignMechanism::Ecdsa,
            ckm::ECDSA_SHA256 => SignMechanism::EcdsaSha256,
            ckm::EDDSA => SignMechanism::Eddsa,
            ckm::RSA_PKCS => SignMechanism::RsaPkcs,
            ckm::RSA_PKCS_PSS => SignMechanism::RsaPkcsPss(need_pss()?),
            ckm::SHA256_RSA_PKCS => SignMechanism::Sha256RsaPkcs,
            ckm::SHA256_RSA_PKCS_PSS => SignMechanism::Sha256RsaPkcsPss(need_pss()?),
            other => return Err(MechanismError::Unsupported(other)),
        })
    }

    /// The mechanism that makes Notary's signature for a key of `key_type` over a message
    /// (ECDSA P-256 with SHA-256, pure Ed25519, RSA-PSS SHA-256 salt 32).
    pub fn notary(key_type: impl Into<KeyType>) -> SignMechanism {
        match key_type.into() {
            KeyType::EcP256 => SignMechanism::EcdsaSha256,
            KeyType::Ed25519 => SignMechanism::Eddsa,
            KeyType::Rsa => SignMechanism::Sha256RsaPkcsPss(PssParams::NOTARY),
        }
    }

    /// The `CKM_*` number.
    pub fn ckm(&self) -> u64 {
        match self {
            SignMechanism::Ecdsa => ckm::ECDSA,
            SignMechanism::EcdsaSha256 => ckm::ECDSA_SHA256,
            SignMechanism::Eddsa => ckm::EDDSA,
            SignMechanism::RsaPkcs => ckm::RSA_PKCS,
            SignMechanism::RsaPkcsPss(_) => ckm::RSA_PKCS_PSS,
            SignMechanism::Sha256RsaPkcs => ckm::SHA256_RSA_PKCS,
            SignMechanism::Sha256RsaPkcsPss(_) => ckm::SHA256_RSA_PKCS_PSS,
        }
    }

    /// The PKCS#11 name, for logs and messages.
    pub fn name(&self) -> &'static str {
        match self {
            SignMechanism::Ecdsa => "CKM_ECDSA",
            SignMechanism::EcdsaSha256 => "CKM_ECDSA_SHA256",
            SignMechanism::Eddsa => "CKM_EDDSA",
            SignMechanism::RsaPkcs => "CKM_RSA_PKCS",
            SignMechanism::RsaPkcsPss(_) => "CKM_RSA_PKCS_PSS",
            SignMechanism::Sha256RsaPkcs => "CKM_SHA256_RSA_PKCS",
            SignMechanism::Sha256RsaPkcsPss(_) => "CKM_SHA256_RSA_PKCS_PSS",
        }
    }

    /// The PKCS#11 name of a signing mechanism in the table, by number.
    pub fn name_of(mechanism: u64) -> Option<&'static str> {
        let pss = Some(PssParams::NOTARY);
        SignMechanism::from_ckm(mechanism, pss)
            .ok()
            .map(|m| m.name())
    }

    /// The key type the mechanism signs with.
    pub fn key_type(&self) -> KeyType {
        match self {
            SignMechanism::Ecdsa | SignMechanism::EcdsaSha256 => KeyType::EcP256,
            SignMechanism::Eddsa => KeyType::Ed25519,
            SignMechanism::RsaPkcs
            | SignMechanism::RsaPkcsPss(_)
            | SignMechanism::Sha256RsaPkcs
            | SignMechanism::Sha256RsaPkcsPss(_) => KeyType::Rsa,
        }
    }

    /// Whether the mechanism hashes the data (SHA-256) before the raw signature: the data is
    /// then the message, of any length.
    pub fn hashes(&self) -> bool {
        matches!(
            self,
            SignMechanism::EcdsaSha256
                | SignMechanism::Sha256RsaPkcs
                | SignMechanism::Sha256RsaPkcsPss(_)
        )
    }

    /// The mechanism that signs what this one makes of the data after hashing it: itself for
    /// mechanisms that do not hash. `CKM_SHA256_RSA_PKCS`'s raw form signs the SHA-256
    /// DigestInfo ([`SHA256_DIGEST_INFO`] + digest), the others' the bare digest.
    pub fn raw(&self) -> SignMechanism {
        match *self {
            SignMechanism::EcdsaSha256 => SignMechanism::Ecdsa,
            SignMechanism::Sha256RsaPkcs => SignMechanism::RsaPkcs,
            SignMechanism::Sha256RsaPkcsPss(p) => SignMechanism::RsaPkcsPss(p),
            other => other,
        }
    }

    /// The PSS parameters, for the two RSA-PSS mechanisms.
    pub fn pss(&self) -> Option<PssParams> {
        match self {
            SignMechanism::RsaPkcsPss(p) | SignMechanism::Sha256RsaPkcsPss(p) => Some(*p),
            _ => None,
        }
    }
}

impl fmt::Display for SignMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_mechanism() -> Vec<SignMechanism> {
        SignMechanism::ALL_CKM
            .iter()
            .map(|&m| SignMechanism::from_ckm(m, Some(PssParams::NOTARY)).unwrap())
            .collect()
    }

    #[test]
    fn numbers_round_trip_through_the_table() {
        for m in every_mechanism() {
            assert_eq!(SignMechanism::from_ckm(m.ckm(), m.pss()).unwrap(), m);
            assert_eq!(SignMechanism::name_of(m.ckm()), Some(m.name()));
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!(SignMechanism::name_of(0x1234), None);
    }

    #[test]
    fn pss_mechanisms_need_their_parameters() {
        assert_eq!(
            SignMechanism::from_ckm(ckm::ECDSA_SHA256, None),
            Ok(SignMechanism::EcdsaSha256)
        );
        let err = SignMechanism::from_ckm(ckm::RSA_PKCS_PSS, None).unwrap_err();
        assert_eq!(err, MechanismError::NeedsPssParams(ckm::RSA_PKCS_PSS));
        assert_eq!(
            err.to_string(),
            "mechanism 0xd (RSA-PSS) needs PSS parameters (hash, MGF, salt length)"
        );
        assert!(SignMechanism::from_ckm(ckm::SHA256_RSA_PKCS_PSS, None).is_err());
    }

    #[test]
    fn unsupported_mechanisms_name_the_supported_ones() {
        let err = SignMechanism::from_ckm(0x1234, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "signing mechanism 0x1234 is not supported; use CKM_ECDSA, CKM_ECDSA_SHA256, CKM_EDDSA, CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS or CKM_SHA256_RSA_PKCS_PSS"
        );
    }

    #[test]
    fn hashing_mechanisms_sit_on_raw_ones_of_the_same_key_type() {
        for m in every_mechanism() {
            let raw = m.raw();
            assert!(!raw.hashes(), "{m}");
            assert_eq!(raw.key_type(), m.key_type(), "{m}");
            assert_eq!(raw.pss(), m.pss(), "{m}");
            assert_eq!(m.hashes(), raw != m, "{m}");
        }
    }

    #[test]
    fn notary_signs_as_notary_does() {
        assert_eq!(
            SignMechanism::notary(KeyType::EcP256),
            SignMechanism::EcdsaSha256
        );
        assert_eq!(
            SignMechanism::notary(KeyType::Ed25519),
            SignMechanism::Eddsa
        );
        let rsa = SignMechanism::notary(KeyType::Rsa);
        assert_eq!(rsa, SignMechanism::Sha256RsaPkcsPss(PssParams::NOTARY));
        assert_eq!(PssParams::NOTARY.digest_len(), Some(32));
        for k in KeyType::ALL {
            assert_eq!(k.notary_mechanism().key_type(), k);
            assert_eq!(k.raw_mechanism().key_type(), k);
            assert!(!k.raw_mechanism().hashes());
        }
        let methods: Vec<_> = KeyType::ALL.iter().map(|k| k.notary_method()).collect();
        assert_eq!(methods, ["ecdsa", "eddsa", "rsapss"]);
    }

    #[test]
    fn tuf_keytypes_round_trip() {
        for k in KeyType::ALL {
            assert_eq!(KeyType::from_tuf_keytype(k.tuf_keytype()), Some(k));
        }
        assert_eq!(KeyType::from_tuf_keytype("ecdsa-x509"), None);
    }

    #[test]
    fn key_generation_mechanisms() {
        assert_eq!(KeyType::EcP256.keygen_ckm(), ckm::EC_KEY_PAIR_GEN);
        assert_eq!(KeyType::Ed25519.keygen_ckm(), ckm::EC_EDWARDS_KEY_PAIR_GEN);
        assert_eq!(KeyType::Rsa.keygen_ckm(), ckm::RSA_PKCS_KEY_PAIR_GEN);
    }

    #[test]
    fn sha256_digest_info_prefixes_a_32_byte_digest() {
        // SEQUENCE (0x31 = 49 bytes) = 19-byte prefix + 32-byte digest - 2-byte header.
        assert_eq!(SHA256_DIGEST_INFO.len() + 32, 2 + 0x31);
        assert_eq!(SHA256_DIGEST_INFO.last(), Some(&0x20));
    }
}
