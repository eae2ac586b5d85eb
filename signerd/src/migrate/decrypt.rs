//! Opening notary-signer's encrypted private keys: a compact JWE (PBES2-HS256+A128KW key wrap,
//! A256GCM content) around the key in the Go signer's own encoding, turned into PKCS#8 for the
//! token. Every plaintext lives in a `Zeroizing` buffer.

use josekit::jwe::{self, PBES2_HS256_A128KW};
use secrecy::{ExposeSecret, SecretString};
use signerd_token::KeyAlgorithm;
use zeroize::Zeroizing;

use super::source::SignerKeyRow;
use super::MigrateError;

/// The key-wrap and content algorithms notary-signer writes (`keydbstore.KeywrapAlg`,
/// `EncryptionAlg`).
const KEYWRAP: &str = "PBES2-HS256+A128KW";
const ENCRYPTION: &str = "A256GCM";

/// The passphrase of `alias`, as notary-signer reads it: env `NOTARY_SIGNER_<ALIAS>`.
pub fn passphrase_env(alias: &str) -> String {
    format!("NOTARY_SIGNER_{}", alias.to_uppercase())
}

/// Decrypts `row`'s private key with `passphrase` into PKCS#8 DER.
pub fn private_key_pkcs8(
    row: &SignerKeyRow,
    algorithm: KeyAlgorithm,
    passphrase: &SecretString,
) -> Result<Zeroizing<Vec<u8>>, MigrateError> {
    if row.keywrap_alg != KEYWRAP || row.encryption_alg != ENCRYPTION {
        return Err(MigrateError::CorruptRow {
            key_id: row.key_id.clone(),
            reason: format!(
                "encrypted with {}/{}, not notary-signer's {KEYWRAP}/{ENCRYPTION}",
                row.keywrap_alg, row.encryption_alg
            ),
        });
    }
    let corrupt = |reason: String| MigrateError::CorruptRow {
        key_id: row.key_id.clone(),
        reason,
    };
    let jwe_text = std::str::from_utf8(&row.private_jwe)
        .map_err(|_| corrupt("the private column is not a compact JWE (not text)".into()))?;
    if jwe_text.split('.').count() != 5 {
        return Err(corrupt(
            "the private column is not a compact JWE (five dot-separated parts)".into(),
        ));
    }
    let decrypter = PBES2_HS256_A128KW
        .decrypter_from_bytes(passphrase.expose_secret().as_bytes())
        .map_err(|e| corrupt(format!("cannot set up decryption: {e}")))?;
    let (plain, _header) = jwe::deserialize_compact(jwe_text, &decrypter).map_err(|e| {
        // AES key unwrap fails its integrity check on a wrong passphrase; anything that is not
        // a key-unwrap failure is a damaged row.
        let text = e.to_string();
        if text.to_ascii_lowercase().contains("unwrap")
            || matches!(e, josekit::JoseError::InvalidJweFormat(_))
        {
            MigrateError::WrongPassphrase {
                key_id: row.key_id.clone(),
                env: passphrase_env(&row.passphrase_alias),
            }
        } else {
            corrupt(format!("cannot decrypt: {text}"))
        }
    })?;
    let plain = Zeroizing::new(plain);
    to_pkcs8(algorithm, &plain).map_err(corrupt)
}

/// The Go signer's private key encoding as PKCS#8 DER: SEC 1 `ECPrivateKey` for ecdsa, PKCS#1
/// `RSAPrivateKey` for rsa, and public || private (seed || public) for ed25519.
fn to_pkcs8(algorithm: KeyAlgorithm, plain: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    match algorithm {
        KeyAlgorithm::Ecdsa => {
            use p256::pkcs8::EncodePrivateKey as _;
            let key = p256::SecretKey::from_sec1_der(plain)
                .map_err(|e| format!("the decrypted ecdsa key is not a P-256 SEC 1 key: {e}"))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| format!("cannot encode the ecdsa key: {e}"))?;
            Ok(Zeroizing::new(der.as_bytes().to_vec()))
        }
        KeyAlgorithm::Ed25519 => {
            use ed25519_dalek::pkcs8::EncodePrivateKey as _;
            // 32 bytes public, then Go's 64-byte private key: the 32-byte seed and the public.
            if plain.len() != 96 {
                return Err(format!(
                    "the decrypted ed25519 key is {} bytes, not notary's 96",
                    plain.len()
                ));
            }
            let mut seed = Zeroizing::new([0u8; 32]);
            seed.copy_from_slice(&plain[32..64]);
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            if key.verifying_key().as_bytes() != &plain[..32] {
                return Err("the decrypted ed25519 seed does not give its public key".into());
            }
            let der = key
                .to_pkcs8_der()
                .map_err(|e| format!("cannot encode the ed25519 key: {e}"))?;
            Ok(Zeroizing::new(der.as_bytes().to_vec()))
        }
        KeyAlgorithm::Rsa => {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            use rsa::pkcs8::EncodePrivateKey as _;
            let key = rsa::RsaPrivateKey::from_pkcs1_der(plain)
                .map_err(|e| format!("the decrypted rsa key is not PKCS#1: {e}"))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| format!("cannot encode the rsa key: {e}"))?;
            Ok(Zeroizing::new(der.as_bytes().to_vec()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use josekit::jwe::JweHeader;

    fn row(private_jwe: Vec<u8>) -> SignerKeyRow {
        SignerKeyRow {
            row_id: 1,
            key_id: "ab".repeat(32),
            algorithm: "ecdsa".into(),
            passphrase_alias: "alpha".into(),
            public: Vec::new(),
            private_jwe,
            gun: "example.com/app".into(),
            role: "timestamp".into(),
            keywrap_alg: KEYWRAP.into(),
            encryption_alg: ENCRYPTION.into(),
        }
    }

    /// Encrypts as notary-signer does (jose2go: PBES2-HS256+A128KW, A256GCM).
    fn seal(plain: &[u8], passphrase: &str) -> Vec<u8> {
        let mut header = JweHeader::new();
        header.set_content_encryption(ENCRYPTION);
        let encrypter = PBES2_HS256_A128KW
            .encrypter_from_bytes(passphrase.as_bytes())
            .unwrap();
        jwe::serialize_compact(plain, &header, &encrypter)
            .unwrap()
            .into_bytes()
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn opens_each_key_kind_into_pkcs8() {
        use p256::pkcs8::DecodePrivateKey as _;
        let ec = p256::SecretKey::from_slice(&[0x11; 32]).unwrap();
        let sealed = seal(ec.to_sec1_der().unwrap().as_slice(), "pw");
        let der = private_key_pkcs8(&row(sealed), KeyAlgorithm::Ecdsa, &secret("pw")).unwrap();
        assert_eq!(p256::SecretKey::from_pkcs8_der(&der).unwrap(), ec);

        let ed = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let mut plain = ed.verifying_key().to_bytes().to_vec();
        plain.extend_from_slice(&ed.to_keypair_bytes());
        let sealed = seal(&plain, "pw");
        let der = private_key_pkcs8(&row(sealed), KeyAlgorithm::Ed25519, &secret("pw")).unwrap();
        assert_eq!(
            ed25519_dalek::SigningKey::from_pkcs8_der(&der)
                .unwrap()
                .to_bytes(),
            [7; 32]
        );
    }

    #[test]
    fn a_wrong_passphrase_names_the_variable() {
        let ec = p256::SecretKey::from_slice(&[0x11; 32]).unwrap();
        let sealed = seal(ec.to_sec1_der().unwrap().as_slice(), "right");
        let e = private_key_pkcs8(&row(sealed), KeyAlgorithm::Ecdsa, &secret("wrong")).unwrap_err();
        assert!(
            matches!(&e, MigrateError::WrongPassphrase { env, .. } if env == "NOTARY_SIGNER_ALPHA"),
            "{e}"
        );
    }

    #[test]
    fn damaged_rows_are_corrupt_not_wrong_passphrases() {
        let e = private_key_pkcs8(
            &row(b"not a jwe".to_vec()),
            KeyAlgorithm::Ecdsa,
            &secret("x"),
        )
        .unwrap_err();
        assert!(matches!(e, MigrateError::CorruptRow { .. }), "{e}");
        let sealed = seal(b"garbage", "pw");
        let e = private_key_pkcs8(&row(sealed), KeyAlgorithm::Ecdsa, &secret("pw")).unwrap_err();
        assert!(
            matches!(&e, MigrateError::CorruptRow { reason, .. } if reason.contains("SEC 1")),
            "{e}"
        );
        let mut r = row(Vec::new());
        r.keywrap_alg = "dir".into();
        let e = private_key_pkcs8(&r, KeyAlgorithm::Ecdsa, &secret("pw")).unwrap_err();
        assert!(e.to_string().contains("dir/A256GCM"), "{e}");
    }
}
