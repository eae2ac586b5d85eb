//! Object-level operations on the token, for signerd's admin API and the PKCS#11 shim behind it:
//! find keys and certificates, generate key pairs under a chosen name, sign with a named
//! mechanism, store certificates, import private keys, destroy objects, list mechanisms.
//!
//! Objects are named by [`ObjectRef`] (class, `CKA_ID`, optional `CKA_LABEL`), never by handle:
//! handles change when the token or signerd restarts. Every operation runs through
//! [`Token::run`], so it gets the same pooled sessions, retries and recovery as signing.

use std::time::{SystemTime, UNIX_EPOCH};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;
use cryptoki::types::Date;
use der::{Decode as _, Encode as _};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{is_caller_error, TokenError};
use crate::key::{public_key_from_spki, spki_from_public_key, KeyAlgorithm, KeyId, KeyUsage};
use crate::token::ED25519_PARAMS;
use crate::token::{read_public_key, Attempt, Connection, OpError, Token, P256_PARAMS};

/// The classes of object the admin API deals in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `CKO_PRIVATE_KEY`.
    PrivateKey,
    /// `CKO_PUBLIC_KEY`.
    PublicKey,
    /// `CKO_CERTIFICATE` (X.509).
    Certificate,
}

impl ObjectKind {
    fn class(self) -> ObjectClass {
        match self {
            ObjectKind::PrivateKey => ObjectClass::PRIVATE_KEY,
            ObjectKind::PublicKey => ObjectClass::PUBLIC_KEY,
            ObjectKind::Certificate => ObjectClass::CERTIFICATE,
        }
    }

    fn from_class(class: ObjectClass) -> Option<ObjectKind> {
        match class {
            ObjectClass::PRIVATE_KEY => Some(ObjectKind::PrivateKey),
            ObjectClass::PUBLIC_KEY => Some(ObjectKind::PublicKey),
            ObjectClass::CERTIFICATE => Some(ObjectKind::Certificate),
            _ => None,
        }
    }

    /// The RFC 7512 `type` value (`private`, `public`, `cert`).
    pub fn uri_type(self) -> &'static str {
        match self {
            ObjectKind::PrivateKey => "private",
            ObjectKind::PublicKey => "public",
            ObjectKind::Certificate => "cert",
        }
    }
}

/// A stable name for token objects: class, `CKA_ID`, and optionally `CKA_LABEL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// The object class.
    pub kind: ObjectKind,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// `CKA_LABEL`; `None` matches any label.
    pub label: Option<String>,
}

impl ObjectRef {
    /// The PKCS#11 template that finds the objects this reference names.
    fn template(&self) -> Vec<Attribute> {
        let mut t = vec![
            Attribute::Class(self.kind.class()),
            Attribute::Token(true),
            Attribute::Id(self.id.clone()),
        ];
        if let Some(label) = &self.label {
            t.push(Attribute::Label(label.clone().into_bytes()));
        }
        t
    }

    fn describe(&self) -> String {
        let id = match KeyId::from_cka_id(&self.id) {
            Some(k) => k.to_string(),
            None => format!("0x{}", hex::encode(&self.id)),
        };
        match &self.label {
            Some(l) => format!(
                "{} object with CKA_ID {id} and label '{l}'",
                self.kind.uri_type()
            ),
            None => format!("{} object with CKA_ID {id}", self.kind.uri_type()),
        }
    }
}

/// Which objects to find; every field left `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectFilter {
    /// Only this class.
    pub kind: Option<ObjectKind>,
    /// Only this `CKA_ID`.
    pub id: Option<Vec<u8>>,
    /// Only this exact `CKA_LABEL`.
    pub label: Option<String>,
    /// Only objects labelled `role@<gun>` for this gun.
    pub gun: Option<String>,
    /// Only objects labelled `<role>@gun` for this role.
    pub role: Option<String>,
    /// Only objects whose (subject) public key has this TUF key ID.
    pub tuf_key_id: Option<KeyId>,
    /// Only keys of this type (and certificates for such keys).
    pub key_type: Option<KeyAlgorithm>,
}

/// What the admin API tells about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenObject {
    /// Class, `CKA_ID` and label.
    pub reference: ObjectRef,
    /// The key type (for certificates, the subject key's), when it is one signerd knows.
    pub key_type: Option<KeyAlgorithm>,
    /// Gun and role read from a `role@gun` label.
    pub usage: KeyUsage,
    /// The TUF key ID of the (subject) public key, when it can be computed.
    pub tuf_key_id: Option<KeyId>,
    /// DER SubjectPublicKeyInfo of the (subject) public key (Ed25519 too).
    pub public_key_spki: Option<Vec<u8>>,
    /// The DER certificate (certificates only).
    pub certificate_der: Option<Vec<u8>>,
    /// `CKA_START_DATE` as `YYYY-MM-DD`, when set.
    pub created: Option<String>,
    /// Modulus size (RSA keys only).
    pub rsa_bits: Option<u32>,
    /// `CKA_SENSITIVE` (private keys).
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE` (private keys).
    pub extractable: bool,
    /// RFC 7512 URI of the object (token, id, object label, type).
    pub uri: String,
}

/// How a new key pair is named in the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyNaming {
    /// `CKA_ID` = the TUF key ID, `CKA_LABEL` = `role@gun`: how notary-server's keys are named.
    Tuf(KeyUsage),
    /// `CKA_ID` = the TUF key ID, with a label the caller chose.
    TufId {
        /// `CKA_LABEL`.
        label: String,
    },
    /// A `CKA_ID` and label the caller chose (e.g. a PKCS#11 client).
    Fixed {
        /// `CKA_ID`.
        id: Vec<u8>,
        /// `CKA_LABEL`.
        label: String,
    },
}

/// A key pair to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// Key type.
    pub algorithm: KeyAlgorithm,
    /// RSA modulus size; `None` = the token's configured default.
    pub rsa_bits: Option<u32>,
    /// How to name both halves.
    pub naming: KeyNaming,
}

/// RSA-PSS parameters as PKCS#11 numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PssParams {
    /// `CKM_SHA256`, ...
    pub hash: u64,
    /// `CKG_MGF1_SHA256`, ...
    pub mgf: u64,
    /// Salt length in bytes.
    pub salt_len: u64,
}

/// A signing mechanism signerd carries out, by its PKCS#11 name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignMechanism {
    /// `CKM_ECDSA`: the data is a digest; raw `r||s`.
    Ecdsa,
    /// `CKM_ECDSA_SHA256`: signerd hashes the message, then `CKM_ECDSA` (SoftHSM lacks it).
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

/// PKCS#11 mechanism numbers signerd names.
pub mod ckm {
    /// `CKM_RSA_PKCS`.
    pub const RSA_PKCS: u64 = 0x0001;
    /// `CKM_RSA_PKCS_PSS`.
    pub const RSA_PKCS_PSS: u64 = 0x000d;
    /// `CKM_SHA256_RSA_PKCS`.
    pub const SHA256_RSA_PKCS: u64 = 0x0040;
    /// `CKM_SHA256_RSA_PKCS_PSS`.
    pub const SHA256_RSA_PKCS_PSS: u64 = 0x0043;
    /// `CKM_SHA256`.
    pub const SHA256: u64 = 0x0250;
    /// `CKM_ECDSA`.
    pub const ECDSA: u64 = 0x1041;
    /// `CKM_ECDSA_SHA256`.
    pub const ECDSA_SHA256: u64 = 0x1044;
    /// `CKM_EDDSA`.
    pub const EDDSA: u64 = 0x1057;
    /// `CKG_MGF1_SHA256`.
    pub const MGF1_SHA256: u64 = 0x0002;
}

impl SignMechanism {
    /// The mechanism a PKCS#11 number names; PSS mechanisms need `pss`.
    pub fn from_ckm(mechanism: u64, pss: Option<PssParams>) -> Result<SignMechanism, TokenError> {
        let need_pss = || {
            pss.ok_or_else(|| {
                TokenError::InvalidRequest(format!(
                    "mechanism 0x{mechanism:x} (RSA-PSS) needs PSS parameters (hash, MGF, salt length)"
                ))
            })
        };
        Ok(match mechanism {
            ckm::ECDSA => SignMechanism::Ecdsa,
            ckm::ECDSA_SHA256 => SignMechanism::EcdsaSha256,
            ckm::EDDSA => SignMechanism::Eddsa,
            ckm::RSA_PKCS => SignMechanism::RsaPkcs,
            ckm::RSA_PKCS_PSS => SignMechanism::RsaPkcsPss(need_pss()?),
            ckm::SHA256_RSA_PKCS => SignMechanism::Sha256RsaPkcs,
            ckm::SHA256_RSA_PKCS_PSS => SignMechanism::Sha256RsaPkcsPss(need_pss()?),
            other => {
                return Err(TokenError::InvalidRequest(format!(
                    "signing mechanism 0x{other:x} is not supported; use CKM_ECDSA, CKM_ECDSA_SHA256, CKM_EDDSA, CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS or CKM_SHA256_RSA_PKCS_PSS"
                )))
            }
        })
    }

    /// The mechanism that makes Notary's signature for a key of `algorithm` over a message
    /// (ECDSA P-256 with SHA-256, pure Ed25519, RSA-PSS SHA-256 salt 32).
    pub fn notary(algorithm: KeyAlgorithm) -> SignMechanism {
        match algorithm {
            KeyAlgorithm::Ecdsa => SignMechanism::EcdsaSha256,
            KeyAlgorithm::Ed25519 => SignMechanism::Eddsa,
            KeyAlgorithm::Rsa => SignMechanism::Sha256RsaPkcsPss(PssParams {
                hash: ckm::SHA256,
                mgf: ckm::MGF1_SHA256,
                salt_len: 32,
            }),
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

    /// The key type the mechanism signs with.
    pub fn key_type(&self) -> KeyAlgorithm {
        match self {
            SignMechanism::Ecdsa | SignMechanism::EcdsaSha256 => KeyAlgorithm::Ecdsa,
            SignMechanism::Eddsa => KeyAlgorithm::Ed25519,
            _ => KeyAlgorithm::Rsa,
        }
    }

    /// The cryptoki mechanism and the bytes to hand the token.
    fn prepare(&self, data: &[u8]) -> Result<(Mechanism<'static>, Vec<u8>), TokenError> {
        Ok(match self {
            SignMechanism::Ecdsa => (Mechanism::Ecdsa, data.to_vec()),
            SignMechanism::EcdsaSha256 => (Mechanism::Ecdsa, Sha256::digest(data).to_vec()),
            SignMechanism::Eddsa => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                data.to_vec(),
            ),
            SignMechanism::RsaPkcs => (Mechanism::RsaPkcs, data.to_vec()),
            SignMechanism::RsaPkcsPss(p) => (Mechanism::RsaPkcsPss(pss_params(p)?), data.to_vec()),
            SignMechanism::Sha256RsaPkcs => (Mechanism::Sha256RsaPkcs, data.to_vec()),
            SignMechanism::Sha256RsaPkcsPss(p) => {
                (Mechanism::Sha256RsaPkcsPss(pss_params(p)?), data.to_vec())
            }
        })
    }
}

impl SignMechanism {
    /// Refuses input the token would refuse, before it sees it: some tokens (SoftHSM among
    /// them) answer oversized input with CKR_GENERAL_ERROR, which reads as a token fault.
    fn check_input(&self, input: &[u8], modulus_len: Option<usize>) -> Result<(), TokenError> {
        let refuse = |what: String| {
            Err(TokenError::InvalidRequest(format!(
                "{}: {what}",
                self.name()
            )))
        };
        match self {
            SignMechanism::Ecdsa if input.is_empty() || input.len() > 64 => refuse(format!(
                "the data is a digest of 1 to 64 bytes, not {}",
                input.len()
            )),
            SignMechanism::RsaPkcs => match modulus_len {
                Some(k) if input.len() + 11 > k => refuse(format!(
                    "{} bytes do not fit a {}-bit PKCS#1 v1.5 block (at most {})",
                    input.len(),
                    k * 8,
                    k.saturating_sub(11)
                )),
                _ => Ok(()),
            },
            SignMechanism::RsaPkcsPss(p) => {
                let want = match p.hash {
                    0x0220 => 20, // CKM_SHA_1
                    0x0255 => 28, // CKM_SHA224
                    ckm::SHA256 => 32,
                    0x0260 => 48, // CKM_SHA384
                    0x0270 => 64, // CKM_SHA512
                    _ => return Ok(()),
                };
                if input.len() == want {
                    Ok(())
                } else {
                    refuse(format!(
                        "the data is the {want}-byte digest, not {} bytes",
                        input.len()
                    ))
                }
            }
            _ => Ok(()),
        }
    }
}

fn pss_params(p: &PssParams) -> Result<PkcsPssParams, TokenError> {
    let hash_alg = MechanismType::try_from(p.hash).map_err(|_| {
        TokenError::InvalidRequest(format!("PSS hash mechanism 0x{:x} is unknown", p.hash))
    })?;
    let mgf = PkcsMgfType::try_from(p.mgf)
        .map_err(|_| TokenError::InvalidRequest(format!("PSS MGF 0x{:x} is unknown", p.mgf)))?;
    Ok(PkcsPssParams {
        hash_alg,
        mgf,
        s_len: p.salt_len.into(),
    })
}

/// A mechanism the token offers (or signerd adds), as `C_GetMechanismInfo` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MechanismFacts {
    /// `CKM_*` number.
    pub mechanism: u64,
    /// Smallest key size.
    pub min_key_bits: u64,
    /// Largest key size.
    pub max_key_bits: u64,
    /// `CKF_*` flags.
    pub flags: u64,
}

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

// === impl Token ===

impl Token {
    /// What the token is (label, manufacturer, model, serial, slot).
    pub fn description(&self) -> Result<crate::TokenDescription, TokenError> {
        self.connect()
    }

    /// Every token object matching `filter`, sorted by class, label and `CKA_ID`.
    pub fn find_objects(&self, filter: &ObjectFilter) -> Result<Vec<TokenObject>, TokenError> {
        self.run(|conn, session| {
            let mut template = vec![Attribute::Token(true)];
            if let Some(kind) = filter.kind {
                template.push(Attribute::Class(kind.class()));
            }
            if let Some(id) = &filter.id {
                template.push(Attribute::Id(id.clone()));
            }
            if let Some(label) = &filter.label {
                template.push(Attribute::Label(label.clone().into_bytes()));
            }
            let mut found = Vec::new();
            for handle in session.find_objects(&template)? {
                let Some(object) = describe(conn, session, handle)? else {
                    continue;
                };
                if matches_filter(&object, filter) {
                    found.push(object);
                }
            }
            found.sort_by(|a, b| {
                let key = |o: &TokenObject| {
                    (
                        o.reference.label.clone(),
                        o.reference.id.clone(),
                        o.reference.kind as u8,
                    )
                };
                key(a).cmp(&key(b))
            });
            Ok(found)
        })
    }

    /// Generates a key pair named as `spec` says; returns (private, public).
    pub fn generate_key_pair(
        &self,
        spec: &KeySpec,
    ) -> Result<(TokenObject, TokenObject), TokenError> {
        if let KeyNaming::Fixed { id, .. } = &spec.naming {
            if id.is_empty() {
                return Err(TokenError::InvalidRequest(
                    "a key pair needs a non-empty CKA_ID (or none, for the TUF key ID)".into(),
                ));
            }
        }
        if let Some(bits) = spec.rsa_bits {
            if !(2048..=8192).contains(&bits) {
                return Err(TokenError::InvalidRequest(format!(
                    "RSA keys of {bits} bits are not made; use 2048 to 8192"
                )));
            }
        }
        let pair = self
            .run(|conn, session| {
                let pair = self.generate_pair(session, spec)?;
                let describe_one = |handle| {
                    describe(conn, session, handle)?.ok_or_else(|| {
                        OpError::Final(TokenError::Cryptoki("a new key object has no class".into()))
                    })
                };
                Ok((describe_one(pair.private)?, describe_one(pair.public)?))
            })
            .map_err(refused_input)?;
        tracing::debug!(id = %hex::encode(&pair.0.reference.id), "key pair generated in the token");
        Ok(pair)
    }

    /// Signs `data` with the private key `key` names, using `mechanism`.
    pub fn sign_with(
        &self,
        key: &ObjectRef,
        mechanism: SignMechanism,
        data: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        if key.kind != ObjectKind::PrivateKey {
            return Err(TokenError::InvalidRequest(format!(
                "only private keys sign; the reference names a {} object",
                key.kind.uri_type()
            )));
        }
        let (cryptoki_mech, input) = mechanism.prepare(data)?;
        self.run(|_conn, session| {
            let handle = find_one(session, key)?;
            let (mut key_type, mut modulus_len) = (None, None);
            for attr in
                session.get_attributes(handle, &[AttributeType::KeyType, AttributeType::Modulus])?
            {
                match attr {
                    Attribute::KeyType(t) => key_type = key_algorithm(t),
                    Attribute::Modulus(m) => modulus_len = Some(m.len()),
                    _ => {}
                }
            }
            if key_type != Some(mechanism.key_type()) {
                return Err(OpError::Final(TokenError::InvalidRequest(format!(
                    "{} signs with {} keys; the {} is {}",
                    mechanism.name(),
                    mechanism.key_type(),
                    key.describe(),
                    key_type.map(|k| k.as_str()).unwrap_or("of another type")
                ))));
            }
            mechanism
                .check_input(&input, modulus_len)
                .map_err(OpError::Final)?;
            Ok(session.sign(&cryptoki_mech, handle, &input)?)
        })
        .map_err(refused_input)
    }

    /// Stores a DER X.509 certificate as a token object. With no `id`, its `CKA_ID` is the TUF
    /// key ID of its subject public key, the `CKA_ID` signerd gives that key's pair.
    pub fn store_certificate(
        &self,
        id: Option<Vec<u8>>,
        label: &str,
        certificate_der: &[u8],
    ) -> Result<TokenObject, TokenError> {
        let cert = x509_cert::Certificate::from_der(certificate_der).map_err(|e| {
            TokenError::InvalidRequest(format!("the certificate is not DER X.509: {e}"))
        })?;
        let tbs = &cert.tbs_certificate;
        let der = |what: &str, r: der::Result<Vec<u8>>| {
            r.map_err(|e| TokenError::InvalidRequest(format!("certificate {what}: {e}")))
        };
        let subject = der("subject", tbs.subject.to_der())?;
        let issuer = der("issuer", tbs.issuer.to_der())?;
        let serial = der("serial", tbs.serial_number.to_der())?;
        let id = match id.filter(|i| !i.is_empty()) {
            Some(id) => id,
            None => {
                let spki = der("public key", tbs.subject_public_key_info.to_der())?;
                let (alg, public) = public_key_from_spki(&spki).map_err(|e| {
                    TokenError::InvalidRequest(format!(
                        "no CKA_ID given and none can be derived from the certificate's key: {e}"
                    ))
                })?;
                KeyId::of_public_key(alg, &public).as_bytes().to_vec()
            }
        };
        let template = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Id(id),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Subject(subject),
            Attribute::Issuer(issuer),
            Attribute::SerialNumber(serial),
            Attribute::Value(certificate_der.to_vec()),
            Attribute::StartDate(today()),
        ];
        self.run(|conn, session| {
            let handle = session.create_object(&template)?;
            describe(conn, session, handle)?.ok_or_else(|| {
                OpError::Final(TokenError::Cryptoki(
                    "the new certificate has no class".into(),
                ))
            })
        })
        .map_err(refused_input)
    }

    /// Imports an unencrypted PKCS#8 private key (P-256, Ed25519 or RSA) as a sensitive,
    /// non-extractable private key object plus its public key object; returns (private,
    /// public). Every copy of the secret signerd makes is zeroized.
    pub fn import_private_key(
        &self,
        import: PrivateKeyImport,
    ) -> Result<(TokenObject, TokenObject), TokenError> {
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
        public.extend([Attribute::Verify(true), Attribute::StartDate(today())]);
        public.extend(material.public_attributes()?);
        let mut private = common(ObjectClass::PRIVATE_KEY, true);
        private.extend([
            Attribute::Sign(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ]);
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

    /// Destroys every object `reference` names; returns how many. Destroying nothing is not
    /// an error.
    pub fn destroy_objects(&self, reference: &ObjectRef) -> Result<usize, TokenError> {
        if let Some(id) = KeyId::from_cka_id(&reference.id) {
            self.forget_key(&id);
        }
        let template = reference.template();
        self.run(|_conn, session| {
            let mut destroyed = 0;
            for object in session.find_objects(&template)? {
                match session.destroy_object(object) {
                    Ok(()) => destroyed += 1,
                    Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(destroyed)
        })
    }

    /// The mechanisms the token supports, plus `CKM_ECDSA_SHA256` when the token has only
    /// `CKM_ECDSA` (signerd hashes first).
    pub fn list_mechanisms(&self) -> Result<Vec<MechanismFacts>, TokenError> {
        self.run(|conn, _session| {
            let mut facts = Vec::new();
            for mech in self.module.get_mechanism_list(conn.slot)? {
                let info = self.module.get_mechanism_info(conn.slot, mech)?;
                facts.push(MechanismFacts {
                    mechanism: u64::from(mech),
                    min_key_bits: info.min_key_size() as u64,
                    max_key_bits: info.max_key_size() as u64,
                    flags: mechanism_flags(&info),
                });
            }
            let has = |m| facts.iter().any(|f| f.mechanism == m);
            if has(ckm::ECDSA) && !has(ckm::ECDSA_SHA256) {
                if let Some(ecdsa) = facts.iter().find(|f| f.mechanism == ckm::ECDSA).copied() {
                    facts.push(MechanismFacts {
                        mechanism: ckm::ECDSA_SHA256,
                        flags: ecdsa.flags & (CKF_SIGN | CKF_VERIFY),
                        ..ecdsa
                    });
                }
            }
            facts.sort_by_key(|f| f.mechanism);
            Ok(facts)
        })
    }
}

const CKF_HW: u64 = 0x1;
const CKF_ENCRYPT: u64 = 0x100;
const CKF_DECRYPT: u64 = 0x200;
const CKF_DIGEST: u64 = 0x400;
const CKF_SIGN: u64 = 0x800;
const CKF_SIGN_RECOVER: u64 = 0x1000;
const CKF_VERIFY: u64 = 0x2000;
const CKF_VERIFY_RECOVER: u64 = 0x4000;
const CKF_GENERATE: u64 = 0x8000;
const CKF_GENERATE_KEY_PAIR: u64 = 0x10000;
const CKF_WRAP: u64 = 0x20000;
const CKF_UNWRAP: u64 = 0x40000;
const CKF_DERIVE: u64 = 0x80000;
const CKF_EC_F_P: u64 = 0x100000;
const CKF_EC_OID: u64 = 0x800000;
const CKF_EC_UNCOMPRESS: u64 = 0x1000000;
const CKF_EC_COMPRESS: u64 = 0x2000000;

/// The `CKF_*` bits of a mechanism (cryptoki exposes them one by one).
fn mechanism_flags(info: &cryptoki::mechanism::MechanismInfo) -> u64 {
    [
        (info.hardware(), CKF_HW),
        (info.encrypt(), CKF_ENCRYPT),
        (info.decrypt(), CKF_DECRYPT),
        (info.digest(), CKF_DIGEST),
        (info.sign(), CKF_SIGN),
        (info.sign_recover(), CKF_SIGN_RECOVER),
        (info.verify(), CKF_VERIFY),
        (info.verify_recover(), CKF_VERIFY_RECOVER),
        (info.generate(), CKF_GENERATE),
        (info.generate_key_pair(), CKF_GENERATE_KEY_PAIR),
        (info.wrap(), CKF_WRAP),
        (info.unwrap(), CKF_UNWRAP),
        (info.derive(), CKF_DERIVE),
        (info.ec_f_p(), CKF_EC_F_P),
        (info.ec_from_oid(), CKF_EC_OID),
        (info.ec_uncompressed(), CKF_EC_UNCOMPRESS),
        (info.ec_compressed(), CKF_EC_COMPRESS),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |acc, (_, bit)| acc | bit)
}

/// A PKCS#11 refusal of the request's own inputs (data length, mechanism, template) as an
/// invalid request, so the admin API answers INVALID_ARGUMENT rather than INTERNAL.
fn refused_input(e: TokenError) -> TokenError {
    match e {
        TokenError::Pkcs11 { call, rv } if is_caller_error(rv) => TokenError::InvalidRequest(
            format!("the token refused the request: {call} failed with {rv:?}"),
        ),
        other => other,
    }
}

/// The one object `reference` names (the first, if several do).
fn find_one(session: &Session, reference: &ObjectRef) -> Attempt<ObjectHandle> {
    session
        .find_objects(&reference.template())?
        .first()
        .copied()
        .ok_or_else(|| {
            OpError::Final(TokenError::ObjectNotFound(format!(
                "no {} in the token; list objects with `signerd key list`",
                reference.describe()
            )))
        })
}

fn key_algorithm(t: KeyType) -> Option<KeyAlgorithm> {
    match t {
        KeyType::EC => Some(KeyAlgorithm::Ecdsa),
        KeyType::EC_EDWARDS => Some(KeyAlgorithm::Ed25519),
        KeyType::RSA => Some(KeyAlgorithm::Rsa),
        _ => None,
    }
}

fn matches_filter(o: &TokenObject, f: &ObjectFilter) -> bool {
    f.gun.as_ref().is_none_or(|g| *g == o.usage.gun)
        && f.role.as_ref().is_none_or(|r| *r == o.usage.role)
        && f.tuf_key_id.is_none_or(|id| o.tuf_key_id == Some(id))
        && f.key_type.is_none_or(|t| o.key_type == Some(t))
}

/// Reads what the admin API tells about an object; `None` for classes it does not deal in.
fn describe(
    conn: &Connection,
    session: &Session,
    handle: ObjectHandle,
) -> Attempt<Option<TokenObject>> {
    let class = session
        .get_attributes(handle, &[AttributeType::Class])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Class(c) => ObjectKind::from_class(c),
            _ => None,
        });
    let Some(kind) = class else { return Ok(None) };
    // Only attributes of this class are asked for. A private key's date is read from its public
    // half: SoftHSM 2.6 fails C_GetAttributeValue of CK_DATE values of private objects.
    let wanted: &[AttributeType] = match kind {
        ObjectKind::PrivateKey => &[
            AttributeType::Id,
            AttributeType::Label,
            AttributeType::KeyType,
            AttributeType::Sensitive,
            AttributeType::Extractable,
        ],
        ObjectKind::PublicKey => &[
            AttributeType::Id,
            AttributeType::Label,
            AttributeType::KeyType,
            AttributeType::StartDate,
            AttributeType::ModulusBits,
        ],
        ObjectKind::Certificate => &[
            AttributeType::Id,
            AttributeType::Label,
            AttributeType::StartDate,
        ],
    };
    let attrs = session.get_attributes(handle, wanted)?;
    let (mut id, mut label, mut key_type, mut created) = (Vec::new(), String::new(), None, None);
    let (mut sensitive, mut extractable, mut bits) = (false, false, None);
    for attr in attrs {
        match attr {
            Attribute::Id(v) => id = v,
            Attribute::Label(v) => label = String::from_utf8_lossy(&v).into_owned(),
            Attribute::KeyType(t) => key_type = key_algorithm(t),
            Attribute::StartDate(d) => created = date_text(&d),
            Attribute::Sensitive(b) => sensitive = b,
            Attribute::Extractable(b) => extractable = b,
            Attribute::ModulusBits(b) => bits = u32::try_from(u64::from(b)).ok(),
            _ => {}
        }
    }
    let mut object = TokenObject {
        reference: ObjectRef {
            kind,
            id,
            label: Some(label.clone()),
        },
        key_type,
        usage: if label.contains('@') {
            KeyUsage::from_label(&label)
        } else {
            KeyUsage::default()
        },
        tuf_key_id: None,
        public_key_spki: None,
        certificate_der: None,
        created,
        rsa_bits: None,
        sensitive: kind == ObjectKind::PrivateKey && sensitive,
        extractable: kind == ObjectKind::PrivateKey && extractable,
        uri: String::new(),
    };
    // The public half: the object itself, the public key object beside a private key, or the
    // subject key of a certificate.
    let public = match kind {
        ObjectKind::PublicKey => {
            key_type.and_then(|alg| read_public_key(session, handle, alg).ok().map(|p| (alg, p)))
        }
        ObjectKind::PrivateKey => {
            let beside = session.find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(object.reference.id.clone()),
            ])?;
            if let Some(&h) = beside.first() {
                object.created = session
                    .get_attributes(h, &[AttributeType::StartDate])?
                    .into_iter()
                    .find_map(|a| match a {
                        Attribute::StartDate(d) => date_text(&d),
                        _ => None,
                    });
            }
            match (key_type, beside.first()) {
                (Some(alg), Some(&h)) => read_public_key(session, h, alg).ok().map(|p| (alg, p)),
                _ => None,
            }
        }
        ObjectKind::Certificate => {
            let value = session
                .get_attributes(handle, &[AttributeType::Value])?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Value(v) => Some(v),
                    _ => None,
                });
            let subject_key = value.as_deref().and_then(|der| {
                let cert = x509_cert::Certificate::from_der(der).ok()?;
                let spki = cert.tbs_certificate.subject_public_key_info.to_der().ok()?;
                public_key_from_spki(&spki).ok()
            });
            object.certificate_der = value;
            if let Some((alg, _)) = &subject_key {
                object.key_type = Some(*alg);
            }
            subject_key
        }
    };
    if let Some((alg, public_key)) = public {
        object.tuf_key_id = Some(KeyId::of_public_key(alg, &public_key));
        object.public_key_spki = spki_from_public_key(alg, &public_key).ok();
        if alg == KeyAlgorithm::Rsa {
            object.rsa_bits = bits.or_else(|| rsa_bits_of(&public_key));
        }
    } else if key_type == Some(KeyAlgorithm::Rsa) {
        object.rsa_bits = bits;
    }
    object.uri = object_uri(&conn.description, &object.reference);
    Ok(Some(object))
}

fn rsa_bits_of(spki_der: &[u8]) -> Option<u32> {
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    let key = rsa::RsaPublicKey::from_public_key_der(spki_der).ok()?;
    u32::try_from(key.n().bits()).ok()
}

/// Characters left as they are in URI attribute values (RFC 7512 `pk11-pchar`, conservatively).
const URI_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The RFC 7512 URI of an object in the token `token`.
fn object_uri(token: &crate::TokenDescription, r: &ObjectRef) -> String {
    let enc = |v: &str| utf8_percent_encode(v, URI_VALUE).to_string();
    let id: String = r.id.iter().map(|b| format!("%{b:02x}")).collect();
    let mut uri = format!(
        "pkcs11:token={};manufacturer={};serial={};model={};id={id}",
        enc(&token.label),
        enc(&token.manufacturer),
        enc(&token.serial),
        enc(&token.model),
    );
    if let Some(label) = r.label.as_deref().filter(|l| !l.is_empty()) {
        uri.push_str(&format!(";object={}", enc(label)));
    }
    uri.push_str(&format!(";type={}", r.kind.uri_type()));
    uri
}

/// `YYYY-MM-DD` of a `CK_DATE`, or `None` when empty or not digits.
fn date_text(d: &Date) -> Option<String> {
    if d.is_empty() {
        return None;
    }
    let text = format!(
        "{}-{}-{}",
        String::from_utf8_lossy(&d.year),
        String::from_utf8_lossy(&d.month),
        String::from_utf8_lossy(&d.day)
    );
    text.chars()
        .all(|c| c.is_ascii_digit() || c == '-')
        .then_some(text)
}

/// Today's date (UTC) as a `CK_DATE`, for `CKA_START_DATE` of new objects.
pub(crate) fn today() -> Date {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(days as i64);
    let text = |n: i64, w: usize| format!("{n:0w$}");
    Date::new_from_str_slice(&text(y, 4), &text(m, 2), &text(d, 2))
        .unwrap_or_else(|_| Date::new_empty())
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
            "1.2.840.10045.2.1" => {
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
                        Attribute::EcParams(P256_PARAMS.to_vec()),
                        Attribute::EcPoint(octet_string(&point)?),
                    ],
                    secret: vec![
                        Attribute::EcParams(P256_PARAMS.to_vec()),
                        Attribute::Value(scalar.to_vec()),
                    ],
                })
            }
            "1.3.101.112" => {
                use ed25519_dalek::pkcs8::DecodePrivateKey as _;
                let key = ed25519_dalek::SigningKey::from_pkcs8_der(der)
                    .map_err(|e| bad(e.to_string()))?;
                let seed = Zeroizing::new(key.to_bytes());
                let public = key.verifying_key().to_bytes().to_vec();
                Ok(KeyMaterial {
                    algorithm: KeyAlgorithm::Ed25519,
                    public_key: public.clone(),
                    public_parts: vec![
                        Attribute::EcParams(ED25519_PARAMS.to_vec()),
                        Attribute::EcPoint(octet_string(&public)?),
                    ],
                    secret: vec![
                        Attribute::EcParams(ED25519_PARAMS.to_vec()),
                        Attribute::Value(seed.to_vec()),
                    ],
                })
            }
            "1.2.840.113549.1.1.1" => {
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
        match self.algorithm {
            KeyAlgorithm::Ecdsa => KeyType::EC,
            KeyAlgorithm::Ed25519 => KeyType::EC_EDWARDS,
            KeyAlgorithm::Rsa => KeyType::RSA,
        }
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
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn mechanisms_parse_and_need_pss_params() {
        assert_eq!(
            SignMechanism::from_ckm(ckm::ECDSA_SHA256, None).unwrap(),
            SignMechanism::EcdsaSha256
        );
        assert!(matches!(
            SignMechanism::from_ckm(ckm::RSA_PKCS_PSS, None),
            Err(TokenError::InvalidRequest(_))
        ));
        let err = SignMechanism::from_ckm(0x1234, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("0x1234") && err.contains("CKM_EDDSA"), "{err}");
        assert_eq!(
            SignMechanism::notary(KeyAlgorithm::Rsa).key_type(),
            KeyAlgorithm::Rsa
        );
    }

    #[test]
    fn uris_percent_encode_ids_and_labels() {
        let token = crate::TokenDescription {
            label: "signerd test".into(),
            manufacturer: "SoftHSM project".into(),
            model: "SoftHSM v2".into(),
            serial: "abc".into(),
            slot: 0,
        };
        let uri = object_uri(
            &token,
            &ObjectRef {
                kind: ObjectKind::Certificate,
                id: vec![0x01, 0xff],
                label: Some("root@example.com/org/app".into()),
            },
        );
        assert_eq!(
            uri,
            "pkcs11:token=signerd%20test;manufacturer=SoftHSM%20project;serial=abc;model=SoftHSM%20v2;id=%01%ff;object=root%40example.com%2Forg%2Fapp;type=cert"
        );
        let parsed: crate::Pkcs11Uri = uri.parse().unwrap();
        assert_eq!(parsed.id, Some(vec![0x01, 0xff]));
        assert_eq!(parsed.object.as_deref(), Some("root@example.com/org/app"));
    }

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
