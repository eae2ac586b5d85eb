//! Import of private keys made elsewhere (unencrypted PKCS#8: P-256, Ed25519, RSA) as
//! sensitive, non-extractable token objects. Every copy of the secret signerd makes is
//! zeroized.

use cryptoki::object::{Attribute, KeyType, ObjectClass};
use der::Encode as _;
use signerd_vocab::{curve, oid};
use zeroize::{Zeroize, Zeroizing};

use crate::connection::Token;
use crate::date::today;
use crate::encoding::ck_key_type;
use crate::error::{refused_input, OpError, TokenError};
use crate::key::{KeyAlgorithm, KeyId};
use crate::keygen::{sign_only_private, verify_only_public};
use crate::objects::{describe, TokenObject};

/// An unencrypted PKCS#8 private key to import. The DER is zeroized when this is dropped.
pub struct PrivateKeyImport {
    /// `CKA_ID`; `None` = the TUF key ID of the public key.
    pub id: Option<Vec<u8>>,
    /// `CKA_LABEL` of both halves.
    pub label: String,
    /// The key type the caller expects; a mismatch is refused.
    pub expected: Option<KeyAlgorithm>,
    /// DER PrivateKeyInfo.
    pub pkcs8_der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PrivateKeyImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKeyImport")
            .field("label", &self.label)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Imports an unencrypted PKCS#8 private key (P-256, Ed25519 or RSA) as a sign-only,
    /// sensitive, non-extractable private key object plus its public key object; returns (private,
    /// public). Every copy of the secret signerd makes is zeroized.
    pub fn import_private_key(
        &self,
        import: PrivateKeyImport,
    ) -> Result<(TokenObject, TokenObject), TokenError> {
        crate::gc::check_label(&import.label)?;
        let mut material = KeyMaterial::from_pkcs8(&import.pkcs8_der)?;
        drop(import.pkcs8_der);
        if let Some(expected) = import.expected {
            if expected != material.algorithm {
                return Err(TokenError::InvalidRequest(format!(
                    "the PKCS#8 key is {}, not {expected} as the request says",
                    material.algorithm
                )));
            }
        }
        let tuf_id = KeyId::of_public_key(material.algorithm, &material.public_key);
        let id = import
            .id
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| tuf_id.as_bytes().to_vec());
        let label = import.label.into_bytes();
        let common = |class: ObjectClass, private: bool| {
            vec![
                Attribute::Class(class),
                Attribute::KeyType(material.key_type()),
                Attribute::Token(true),
                Attribute::Private(private),
                Attribute::Id(id.clone()),
                Attribute::Label(label.clone()),
            ]
        };
        let mut public = common(ObjectClass::PUBLIC_KEY, false);
        // Dated on the public half only, as generated keys are (see Token::generate_pair).
        public.extend(verify_only_public());
        public.push(Attribute::StartDate(today()));
        public.extend(material.public_attributes()?);
        let mut private = common(ObjectClass::PRIVATE_KEY, true);
        // The token still reports an imported key as such (CKA_LOCAL, CKA_ALWAYS_SENSITIVE and
        // CKA_NEVER_EXTRACTABLE false): its secret was outside the token once.
        private.extend(sign_only_private());
        private.append(&mut material.secret);
        let result = self.run(|conn, session| {
            let pub_handle = session.create_object(&public)?;
            let priv_handle = match session.create_object(&private) {
                Ok(h) => h,
                Err(e) => {
                    let _ = session.destroy_object(pub_handle);
                    return Err(e.into());
                }
            };
            let describe_one = |handle| {
                describe(conn, session, handle)?.ok_or_else(|| {
                    OpError::Final(TokenError::Cryptoki(
                        "an imported object has no class".into(),
                    ))
                })
            };
            Ok((describe_one(priv_handle)?, describe_one(pub_handle)?))
        });
        wipe(&mut private);
        result.map_err(refused_input)
    }
}

/// A private key taken apart for `C_CreateObject`. The secret attributes are wiped by
/// [`wipe`] once the token has them.
struct KeyMaterial {
    algorithm: KeyAlgorithm,
    /// The public key in Notary's encoding.
    public_key: Vec<u8>,
    /// RSA public parts (modulus, exponent) or the EC point.
    public_parts: Vec<Attribute>,
    /// Secret attributes for the private key template.
    secret: Vec<Attribute>,
}

impl KeyMaterial {
    fn from_pkcs8(der: &[u8]) -> Result<KeyMaterial, TokenError> {
        let bad = |e: String| {
            TokenError::InvalidRequest(format!(
                "the private key is not usable unencrypted PKCS#8: {e}"
            ))
        };
        let info = p256::pkcs8::PrivateKeyInfo::try_from(der).map_err(|e| bad(e.to_string()))?;
        match info.algorithm.oid.to_string().as_str() {
            oid::EC_PUBLIC_KEY => {
                use p256::pkcs8::DecodePrivateKey as _;
                let secret = p256::SecretKey::from_pkcs8_der(der).map_err(|_| {
                    bad("an EC key that is not on P-256 (signerd imports P-256 only)".into())
                })?;
                let point = secret.public_key().to_sec1_bytes().to_vec();
                let public_key = spki_of_p256(&secret.public_key())?;
                let scalar = Zeroizing::new(secret.to_bytes().to_vec());
                Ok(KeyMaterial {
                    algorithm: KeyAlgorithm::Ecdsa,
                    public_key,
                    public_parts: vec![
                        Attribute::EcParams(curve::P256_PARAMS.to_vec()),
                        Attribute::EcPoint(octet_string(&point)?),
                    ],
                    secret: vec![
                        Attribute::EcParams(curve::P256_PARAMS.to_vec()),
                        Attribute::Value(scalar.to_vec()),
                    ],
                })
            }
            oid::ED25519 => {
                use ed25519_dalek::pkcs8::DecodePrivateKey as _;
                let key = ed25519_dalek::SigningKey::from_pkcs8_der(der)
                    .map_err(|e| bad(e.to_string()))?;
                let seed = Zeroizing::new(key.to_bytes());
                let public = key.verifying_key().to_bytes().to_vec();
                Ok(KeyMaterial {
                    algorithm: KeyAlgorithm::Ed25519,
                    public_key: public.clone(),
                    public_parts: vec![
                        Attribute::EcParams(curve::ED25519_PARAMS.to_vec()),
                        Attribute::EcPoint(octet_string(&public)?),
                    ],
                    secret: vec![
                        Attribute::EcParams(curve::ED25519_PARAMS.to_vec()),
                        Attribute::Value(seed.to_vec()),
                    ],
                })
            }
            oid::RSA_ENCRYPTION => {
                use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
                use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
                let mut key =
                    rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| bad(e.to_string()))?;
                key.precompute().map_err(|e| bad(e.to_string()))?;
                let public = rsa::RsaPublicKey::from(&key);
                let public_key = public
                    .to_public_key_der()
                    .map_err(|e| bad(e.to_string()))?
                    .into_vec();
                let bytes = |n: &rsa::BigUint| n.to_bytes_be();
                let mut secret = vec![
                    Attribute::Modulus(bytes(key.n())),
                    Attribute::PublicExponent(bytes(key.e())),
                    Attribute::PrivateExponent(bytes(key.d())),
                ];
                if let [p, q] = key.primes() {
                    secret.push(Attribute::Prime1(bytes(p)));
                    secret.push(Attribute::Prime2(bytes(q)));
                }
                if let (Some(dp), Some(dq), Some(qinv)) = (key.dp(), key.dq(), key.qinv()) {
                    secret.push(Attribute::Exponent1(bytes(dp)));
                    secret.push(Attribute::Exponent2(bytes(dq)));
                    secret.push(Attribute::Coefficient(qinv.to_bytes_be().1));
                }
                // RsaPrivateKey zeroizes itself on drop.
                Ok(KeyMaterial {
                    algorithm: KeyAlgorithm::Rsa,
                    public_key,
                    public_parts: vec![
                        Attribute::Modulus(bytes(public.n())),
                        Attribute::PublicExponent(bytes(public.e())),
                    ],
                    secret,
                })
            }
            other => Err(bad(format!(
                "key algorithm {other} is not one signerd imports (P-256, Ed25519, RSA)"
            ))),
        }
    }

    fn key_type(&self) -> KeyType {
        ck_key_type(self.algorithm)
    }

    fn public_attributes(&self) -> Result<Vec<Attribute>, TokenError> {
        Ok(self.public_parts.clone())
    }
}

impl Drop for KeyMaterial {
    fn drop(&mut self) {
        wipe(&mut self.secret);
    }
}

/// Zeroizes the secret values in a template.
fn wipe(template: &mut [Attribute]) {
    for attr in template {
        match attr {
            Attribute::Value(v)
            | Attribute::PrivateExponent(v)
            | Attribute::Prime1(v)
            | Attribute::Prime2(v)
            | Attribute::Exponent1(v)
            | Attribute::Exponent2(v)
            | Attribute::Coefficient(v) => v.zeroize(),
            _ => {}
        }
    }
}

fn spki_of_p256(key: &p256::PublicKey) -> Result<Vec<u8>, TokenError> {
    use p256::pkcs8::EncodePublicKey as _;
    key.to_public_key_der()
        .map(|d| d.into_vec())
        .map_err(|e| TokenError::Cryptoki(e.to_string()))
}

/// `CKA_EC_POINT` as PKCS#11 specifies it: the point in a DER OCTET STRING.
fn octet_string(point: &[u8]) -> Result<Vec<u8>, TokenError> {
    der::asn1::OctetString::new(point.to_vec())
        .and_then(|o| o.to_der())
        .map_err(|e| TokenError::Cryptoki(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_material_hides_its_secret_from_debug() {
        let import = PrivateKeyImport {
            id: None,
            label: "x".into(),
            expected: None,
            pkcs8_der: Zeroizing::new(vec![0x42; 8]),
        };
        assert!(!format!("{import:?}").contains("66"));
    }
}
