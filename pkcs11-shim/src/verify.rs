//! Signature verification in software, on a public key: what `C_Verify` does for every
//! mechanism the shim signs with. Verifying needs no secret, so nothing goes to signerd; the
//! crypto is RustCrypto's (`p256`, `ed25519-dalek`, `rsa`).
//!
//! The input is what signerd would have signed for the same operation ([`SignOperation`]'s
//! request: the raw mechanism, its data and PSS parameters), so a signature the shim made
//! verifies exactly when the token's would.
//!
//! [`SignOperation`]: crate::mechanism::SignOperation

use cryptoki_sys::*;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use signerd_proto::admin::PssParams as WirePss;
use signerd_vocab::ckm;

use crate::error::Error;

/// Checks `signature` over `data` (as the raw mechanism `mechanism` takes it) with the public
/// key `spki` (DER SubjectPublicKeyInfo).
pub fn verify(
    spki: &[u8],
    mechanism: CK_MECHANISM_TYPE,
    data: &[u8],
    pss: Option<&WirePss>,
    signature: &[u8],
) -> Result<(), Error> {
    match mechanism {
        CKM_ECDSA => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki)
                .map_err(|_| Error::KeyTypeInconsistent)?;
            if signature.len() != 64 {
                return Err(Error::SignatureLenRange);
            }
            let signature = p256::ecdsa::Signature::from_slice(signature)
                .map_err(|_| Error::SignatureInvalid)?;
            // CKM_ECDSA takes the input as the hash, whatever its length: a shorter one is
            // the same integer with zeros in front, as tokens sign it (RustCrypto refuses
            // prehashes under 16 bytes).
            let mut padded = [0u8; 32];
            let data = match data.len() {
                n if n < padded.len() => {
                    padded[32 - n..].copy_from_slice(data);
                    &padded[..]
                }
                _ => data,
            };
            key.verify_prehash(data, &signature)
                .map_err(|_| Error::SignatureInvalid)
        }
        CKM_EDDSA => {
            let key = ed25519_dalek::VerifyingKey::from_public_key_der(spki)
                .map_err(|_| Error::KeyTypeInconsistent)?;
            let signature: [u8; 64] = signature.try_into().map_err(|_| Error::SignatureLenRange)?;
            key.verify_strict(data, &ed25519_dalek::Signature::from_bytes(&signature))
                .map_err(|_| Error::SignatureInvalid)
        }
        CKM_RSA_PKCS | CKM_RSA_PKCS_PSS => {
            let key = rsa::RsaPublicKey::from_public_key_der(spki)
                .map_err(|_| Error::KeyTypeInconsistent)?;
            if signature.len() != key.size() {
                return Err(Error::SignatureLenRange);
            }
            match pss {
                None => key
                    .verify(rsa::Pkcs1v15Sign::new_unprefixed(), data, signature)
                    .map_err(|_| Error::SignatureInvalid),
                Some(p) => verify_pss(&key, p, data, signature),
            }
        }
        other => Err(Error::MechanismInvalid(other)),
    }
}

/// RSA-PSS with the hash, MGF and salt length the caller named (MGF1 over the same hash, as
/// the `rsa` crate does it).
fn verify_pss(
    key: &rsa::RsaPublicKey,
    p: &WirePss,
    digest: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    let salt = usize::try_from(p.salt_length)
        .map_err(|_| Error::MechanismParamInvalid("PSS salt length"))?;
    let scheme = match (p.hash_mechanism, p.mgf) {
        (ckm::SHA224, m) if m == CKG_MGF1_SHA224 as u64 => {
            rsa::Pss::new_with_salt::<sha2::Sha224>(salt)
        }
        (ckm::SHA256, m) if m == CKG_MGF1_SHA256 as u64 => {
            rsa::Pss::new_with_salt::<sha2::Sha256>(salt)
        }
        (ckm::SHA384, m) if m == CKG_MGF1_SHA384 as u64 => {
            rsa::Pss::new_with_salt::<sha2::Sha384>(salt)
        }
        (ckm::SHA512, m) if m == CKG_MGF1_SHA512 as u64 => {
            rsa::Pss::new_with_salt::<sha2::Sha512>(salt)
        }
        _ => {
            return Err(Error::MechanismParamInvalid(
                "PSS verification supports SHA-224/256/384/512 with MGF1 over the same hash",
            ))
        }
    };
    key.verify(scheme, digest, signature)
        .map_err(|_| Error::SignatureInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::EncodePublicKey;
    use sha2::{Digest, Sha256};

    #[test]
    fn ecdsa_signatures_verify_and_tampering_is_caught() {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let spki = key.verifying_key().to_public_key_der().unwrap();
        let digest = Sha256::digest(b"message");
        let signature: p256::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
        let bytes = signature.to_bytes();
        assert!(verify(spki.as_bytes(), CKM_ECDSA, &digest, None, &bytes).is_ok());
        let mut bad = bytes.to_vec();
        bad[10] ^= 1;
        assert!(matches!(
            verify(spki.as_bytes(), CKM_ECDSA, &digest, None, &bad),
            Err(Error::SignatureInvalid)
        ));
        assert!(matches!(
            verify(spki.as_bytes(), CKM_ECDSA, &digest, None, &bytes[..63]),
            Err(Error::SignatureLenRange)
        ));
        assert!(matches!(
            verify(spki.as_bytes(), CKM_EDDSA, &digest, None, &bytes),
            Err(Error::KeyTypeInconsistent)
        ));
    }

    #[test]
    fn short_ecdsa_inputs_verify_as_the_integer_they_are() {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let spki = key.verifying_key().to_public_key_der().unwrap();
        let mut padded = [0u8; 32];
        padded[25..].copy_from_slice(b"HI BOB!");
        let signature: p256::ecdsa::Signature = key.sign_prehash(&padded).unwrap();
        let bytes = signature.to_bytes();
        assert!(verify(spki.as_bytes(), CKM_ECDSA, b"HI BOB!", None, &bytes).is_ok());
        assert!(matches!(
            verify(spki.as_bytes(), CKM_ECDSA, b"HI BOB?", None, &bytes),
            Err(Error::SignatureInvalid)
        ));
    }

    #[test]
    fn ed25519_signatures_verify() {
        use ed25519_dalek::Signer;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let spki = key.verifying_key().to_public_key_der().unwrap();
        let signature = key.sign(b"message").to_bytes();
        assert!(verify(spki.as_bytes(), CKM_EDDSA, b"message", None, &signature).is_ok());
        assert!(matches!(
            verify(spki.as_bytes(), CKM_EDDSA, b"other", None, &signature),
            Err(Error::SignatureInvalid)
        ));
    }
}
