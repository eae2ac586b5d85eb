//! Checks a sample of the signatures every signer returned, locally, against the key's public
//! key: a fast signer that signs wrongly is a failure, not a result.

use ed25519_dalek::Verifier as _;
// One trait (spki's) decodes both P-256 and RSA SubjectPublicKeyInfo.
use p256::pkcs8::DecodePublicKey as _;
use sha2::{Digest, Sha256};

/// A verifying key built from a public key in Notary's encoding (DER SubjectPublicKeyInfo for
/// `ecdsa` and `rsa`, the raw 32 bytes for `ed25519`).
#[derive(Clone, Debug)]
pub enum PublicKey {
    /// P-256; signatures are raw `r||s` over SHA-256 of the content.
    Ecdsa(p256::ecdsa::VerifyingKey),
    /// Pure Ed25519 over the content.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// RSASSA-PSS, SHA-256, 32-byte salt.
    Rsa(rsa::RsaPublicKey),
}

/// Why a signature or a public key was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The public key bytes do not parse for the algorithm.
    #[error("{algorithm} public key does not parse: {reason}")]
    BadPublicKey {
        /// `ecdsa`, `ed25519` or `rsa`.
        algorithm: String,
        /// The parser's words.
        reason: String,
    },
    /// The signature does not verify.
    #[error("{algorithm} signature of {len} bytes does not verify: {reason}")]
    BadSignature {
        /// `ecdsa`, `ed25519` or `rsa`.
        algorithm: &'static str,
        /// Length of the signature.
        len: usize,
        /// The verifier's words.
        reason: String,
    },
}

impl PublicKey {
    /// Parses `bytes` as Notary encodes a public key of `algorithm`.
    pub fn from_notary(algorithm: &str, bytes: &[u8]) -> Result<PublicKey, VerifyError> {
        let bad = |reason: String| VerifyError::BadPublicKey {
            algorithm: algorithm.to_owned(),
            reason,
        };
        match algorithm {
            "ecdsa" => p256::ecdsa::VerifyingKey::from_public_key_der(bytes)
                .map(PublicKey::Ecdsa)
                .map_err(|e| bad(e.to_string())),
            "ed25519" => {
                let raw: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| bad(format!("{} bytes, not 32", bytes.len())))?;
                ed25519_dalek::VerifyingKey::from_bytes(&raw)
                    .map(PublicKey::Ed25519)
                    .map_err(|e| bad(e.to_string()))
            }
            "rsa" => rsa::RsaPublicKey::from_public_key_der(bytes)
                .map(PublicKey::Rsa)
                .map_err(|e| bad(e.to_string())),
            other => Err(bad(format!("unknown algorithm {other}"))),
        }
    }

    /// The Notary algorithm name.
    pub fn algorithm(&self) -> &'static str {
        match self {
            PublicKey::Ecdsa(_) => "ecdsa",
            PublicKey::Ed25519(_) => "ed25519",
            PublicKey::Rsa(_) => "rsa",
        }
    }

    /// Checks `signature` over `content` as Notary verifies it.
    pub fn verify(&self, content: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        let bad = |reason: String| VerifyError::BadSignature {
            algorithm: self.algorithm(),
            len: signature.len(),
            reason,
        };
        match self {
            PublicKey::Ecdsa(key) => {
                let sig = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|e| bad(e.to_string()))?;
                // Verifier<Signature> hashes the content with SHA-256, as Notary does.
                p256::ecdsa::signature::Verifier::verify(key, content, &sig)
                    .map_err(|e| bad(e.to_string()))
            }
            PublicKey::Ed25519(key) => {
                let sig = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|e| bad(e.to_string()))?;
                key.verify(content, &sig).map_err(|e| bad(e.to_string()))
            }
            PublicKey::Rsa(key) => {
                let digest = Sha256::digest(content);
                key.verify(rsa::Pss::new_with_salt::<Sha256>(32), &digest, signature)
                    .map_err(|e| bad(e.to_string()))
            }
        }
    }
}

/// One signature a signer returned, kept to be checked after the measured window.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// What was signed.
    #[serde(with = "hex_bytes")]
    pub content: Vec<u8>,
    /// What came back.
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

/// How many of `samples` fail to verify under `key`, with the first failure's words.
pub fn count_bad(key: &PublicKey, samples: &[Sample]) -> (usize, Option<String>) {
    let mut bad = 0;
    let mut first = None;
    for sample in samples {
        if let Err(e) = key.verify(&sample.content, &sample.signature) {
            bad += 1;
            first.get_or_insert_with(|| e.to_string());
        }
    }
    (bad, first)
}

/// Bytes as a hex string in the token loop's JSON report.
mod hex_bytes {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePublicKey as _;

    const CONTENT: &[u8] = &[0x5a; 256];

    fn ecdsa_pair() -> (PublicKey, Vec<u8>) {
        use p256::ecdsa::signature::Signer as _;
        let signing = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let spki = signing
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .into_vec();
        let sig: p256::ecdsa::Signature = signing.sign(CONTENT);
        let key = PublicKey::from_notary("ecdsa", &spki).unwrap();
        (key, sig.to_bytes().to_vec())
    }

    fn ed25519_pair() -> (PublicKey, Vec<u8>) {
        use ed25519_dalek::Signer as _;
        let signing = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let raw = signing.verifying_key().to_bytes();
        let key = PublicKey::from_notary("ed25519", &raw).unwrap();
        (key, signing.sign(CONTENT).to_bytes().to_vec())
    }

    #[test]
    fn a_good_signature_verifies() {
        for (key, sig) in [ecdsa_pair(), ed25519_pair()] {
            key.verify(CONTENT, &sig).unwrap();
            assert_eq!(
                count_bad(
                    &key,
                    &[Sample {
                        content: CONTENT.to_vec(),
                        signature: sig
                    }]
                )
                .0,
                0
            );
        }
    }

    #[test]
    fn a_corrupted_signature_is_a_failure() {
        for (key, mut sig) in [ecdsa_pair(), ed25519_pair()] {
            sig[10] ^= 0x01;
            let err = key.verify(CONTENT, &sig).unwrap_err();
            assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
            let samples = [Sample {
                content: CONTENT.to_vec(),
                signature: sig,
            }];
            let (bad, first) = count_bad(&key, &samples);
            assert_eq!(bad, 1, "{}", key.algorithm());
            assert!(first.unwrap().contains("does not verify"));
        }
    }

    #[test]
    fn a_signature_over_other_content_is_a_failure() {
        let (key, sig) = ecdsa_pair();
        assert!(key.verify(b"other content", &sig).is_err());
    }

    #[test]
    fn a_truncated_signature_is_a_failure() {
        let (key, sig) = ed25519_pair();
        assert!(key.verify(CONTENT, &sig[..63]).is_err());
    }

    #[test]
    fn public_keys_in_the_wrong_encoding_are_refused() {
        assert!(PublicKey::from_notary("ed25519", &[0u8; 31]).is_err());
        assert!(PublicKey::from_notary("ecdsa", &[0u8; 65]).is_err());
        assert!(PublicKey::from_notary("dsa", &[]).is_err());
    }
}
