//! Key generation: every key pair signerd makes, for notary-server's `CreateKey` (named by
//! TUF key ID and `role@gun`) and for the admin API (named as the caller says), is generated
//! in the token, its private half sensitive and never extractable.

use std::sync::Arc;
use std::time::SystemTime;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::Session;
use signerd_vocab::{curve, defaults};

use crate::connection::{CachedKey, Connection, Token};
use crate::date::today;
use crate::encoding::read_public_key;
use crate::error::{refused_input, Attempt, OpError, TokenError};
use crate::gc::{check_label, pending_label, SessionOwner};

/// The length of a session key's random `CKA_ID` in the token: not a TUF key ID's 32 bytes,
/// so the Notary port never takes one for its keys.
const SESSION_ID_LEN: u32 = 16;
use crate::key::{KeyAlgorithm, KeyId, KeyInfo, KeyUsage};
use crate::objects::{describe, TokenObject};

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
    /// RSA modulus size, one of [`signerd_vocab::defaults::RSA_BITS_ALLOWED`]; `None` = the
    /// token's configured default.
    pub rsa_bits: Option<u32>,
    /// How to name both halves.
    pub naming: KeyNaming,
}

/// A key pair just generated in the token.
pub(crate) struct GeneratedPair {
    pub(crate) public: ObjectHandle,
    pub(crate) private: ObjectHandle,
    /// The public key in Notary's encoding.
    pub(crate) public_key: Vec<u8>,
    /// The TUF key ID of the public key (the CKA_ID too, when named the TUF way).
    pub(crate) tuf_id: KeyId,
}

impl Token {
    /// Generates a key pair in the token (private half sensitive and not extractable) and
    /// labels it with its TUF key ID and usage.
    pub fn create_key(
        &self,
        algorithm: KeyAlgorithm,
        usage: &KeyUsage,
    ) -> Result<KeyInfo, TokenError> {
        let key = self.run(|conn, session| self.generate(conn, session, algorithm, usage))?;
        tracing::debug!(key_id = %key.info.id, "key pair generated in the token");
        let info = KeyInfo::clone(&key.info);
        self.write_keys().insert(info.id, key);
        Ok(info)
    }

    /// Generates a key pair named as `spec` says; returns (private, public).
    pub fn generate_key_pair(
        &self,
        spec: &KeySpec,
    ) -> Result<(TokenObject, TokenObject), TokenError> {
        match &spec.naming {
            KeyNaming::Fixed { id, .. } if id.is_empty() => {
                return Err(TokenError::InvalidRequest(
                    "a key pair needs a non-empty CKA_ID (or none, for the TUF key ID)".into(),
                ));
            }
            KeyNaming::Fixed { label, .. } | KeyNaming::TufId { label } => check_label(label)?,
            KeyNaming::Tuf(_) => {}
        }
        self.generate_described(spec, |_| Ok(spec.clone()))
    }

    /// Generates a session key pair for `owner` (see [`crate::gc`]): named in the token by a
    /// random `CKA_ID` and `owner`'s label around the one `spec` gives, so that it is never
    /// listed, is found only by its owner, and is never a Notary key (a TUF key ID is 32
    /// bytes). `spec`'s own `CKA_ID` stays the client's business. Returns (private, public).
    pub fn generate_session_key_pair(
        &self,
        spec: &KeySpec,
        owner: &SessionOwner,
    ) -> Result<(TokenObject, TokenObject), TokenError> {
        let label = match &spec.naming {
            KeyNaming::Fixed { label, .. } | KeyNaming::TufId { label } => label.clone(),
            KeyNaming::Tuf(usage) => usage.label(),
        };
        check_label(&label)?;
        self.generate_described(spec, |session| {
            Ok(KeySpec {
                naming: KeyNaming::Fixed {
                    id: session.generate_random_vec(SESSION_ID_LEN)?,
                    label: owner.label(&label),
                },
                ..spec.clone()
            })
        })
    }

    /// Generates the pair `named` gives in the session that runs it, and describes both
    /// halves; returns (private, public).
    fn generate_described(
        &self,
        spec: &KeySpec,
        named: impl Fn(&Session) -> Attempt<KeySpec>,
    ) -> Result<(TokenObject, TokenObject), TokenError> {
        if let Some(bits) = spec.rsa_bits {
            check_rsa_bits(bits)?;
        }
        let pair = self
            .run(|conn, session| {
                let spec = named(session)?;
                let pair = self.generate_pair(session, &spec)?;
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

    /// Generates a TUF-named key pair (for notary-server's `CreateKey`) and caches it.
    fn generate(
        &self,
        conn: &Connection,
        session: &Session,
        algorithm: KeyAlgorithm,
        usage: &KeyUsage,
    ) -> Attempt<CachedKey> {
        let spec = KeySpec {
            algorithm,
            rsa_bits: None,
            naming: KeyNaming::Tuf(usage.clone()),
        };
        let pair = self.generate_pair(session, &spec)?;
        Ok(CachedKey {
            info: Arc::new(KeyInfo {
                id: pair.tuf_id,
                algorithm,
                public_key: pair.public_key,
                usage: usage.clone(),
            }),
            private: pair.private,
            generation: conn.generation,
        })
    }

    /// Generates a key pair in the token (private half sign-only, sensitive and not
    /// extractable, public half verify-only and dated today), named as `spec` says: every key
    /// signerd makes goes through here.
    ///
    /// A pair named by its TUF key ID is made in the steps `gc` describes, so that no lookup
    /// sees it before it is whole and a crash leaves only objects the collector recognizes.
    pub(crate) fn generate_pair(
        &self,
        session: &Session,
        spec: &KeySpec,
    ) -> Attempt<GeneratedPair> {
        // A TUF key ID is a hash of the public key, known only after generation: generate under
        // a random placeholder ID and the pending label, then name both halves.
        let final_label = match &spec.naming {
            KeyNaming::Tuf(usage) => Some(usage.label()),
            KeyNaming::TufId { label } => Some(label.clone()),
            KeyNaming::Fixed { .. } => None,
        };
        let (first_id, first_label) = match (&spec.naming, &final_label) {
            (KeyNaming::Fixed { id, label }, _) => (id.clone(), label.clone()),
            (_, label) => (
                session.generate_random_vec(16)?,
                pending_label(SystemTime::now(), label.as_deref().unwrap_or_default()),
            ),
        };
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Private(private),
                Attribute::Id(first_id.clone()),
                Attribute::Label(first_label.clone().into_bytes()),
            ]
        };
        let mut public = common(false);
        // Dated on the public half only: SoftHSM 2.6 stores CK_DATE values of private objects
        // so that reading them back fails with CKR_GENERAL_ERROR.
        public.extend(verify_only_public());
        public.push(Attribute::StartDate(today()));
        let mut private = common(true);
        private.extend(sign_only_private());
        let algorithm = spec.algorithm;
        let mechanism = match algorithm {
            KeyAlgorithm::Ecdsa => {
                public.push(Attribute::EcParams(curve::P256_PARAMS.to_vec()));
                Mechanism::EccKeyPairGen
            }
            KeyAlgorithm::Ed25519 => {
                public.push(Attribute::EcParams(curve::ED25519_PARAMS.to_vec()));
                Mechanism::EccEdwardsKeyPairGen
            }
            KeyAlgorithm::Rsa => {
                let bits = spec.rsa_bits.unwrap_or(self.config.rsa_bits);
                check_rsa_bits(bits)?;
                public.push(Attribute::ModulusBits(u64::from(bits).into()));
                public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        let (pub_handle, priv_handle) = session.generate_key_pair(&mechanism, &public, &private)?;
        fault::point("generated");
        let named = (|| -> Attempt<(Vec<u8>, KeyId)> {
            let public_key = read_public_key(session, pub_handle, algorithm)?;
            let id = KeyId::of_public_key(algorithm, &public_key);
            if let Some(label) = final_label {
                let id = Attribute::Id(id.as_bytes().to_vec());
                let label = Attribute::Label(label.into_bytes());
                // The private half is named last but one: once it has its CKA_ID the key is
                // whole, and a public half still labelled pending is only completed.
                session.update_attributes(pub_handle, std::slice::from_ref(&id))?;
                fault::point("public-id");
                session.update_attributes(priv_handle, &[id, label.clone()])?;
                fault::point("private-named");
                session.update_attributes(pub_handle, &[label])?;
            }
            Ok((public_key, id))
        })();
        match named {
            Ok((public_key, tuf_id)) => Ok(GeneratedPair {
                public: pub_handle,
                private: priv_handle,
                public_key,
                tuf_id,
            }),
            Err(e) => {
                // Leave no half-made key behind; what cannot be destroyed now (the token went
                // away) keeps its pending label and is collected at the next start.
                let _ = session.destroy_object(pub_handle);
                let _ = session.destroy_object(priv_handle);
                Err(e)
            }
        }
    }
}

/// Pause points between the steps of making a key pair, for the crash tests: only in builds
/// with the `fault-injection` feature, never in a release.
#[cfg(feature = "fault-injection")]
mod fault {
    /// Names the point to stop at (`generated`, `public-id`, `private-named`).
    const PAUSE_ENV: &str = "SIGNERD_FAULT_PAUSE";
    /// A file written when the point is reached, so a test knows when to kill signerd.
    const MARKER_ENV: &str = "SIGNERD_FAULT_MARKER";

    /// Stops this thread for good at `point` when `SIGNERD_FAULT_PAUSE` names it.
    pub(super) fn point(point: &str) {
        if std::env::var(PAUSE_ENV).ok().as_deref() != Some(point) {
            return;
        }
        if let Some(marker) = std::env::var_os(MARKER_ENV) {
            if let Err(e) = std::fs::write(&marker, point) {
                tracing::error!(error = %e, "fault injection: cannot write the pause marker");
            }
        }
        tracing::warn!(
            point,
            "fault injection: key generation paused until signerd is killed"
        );
        loop {
            std::thread::park();
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
mod fault {
    /// No pause points in a normal build.
    #[inline(always)]
    pub(super) fn point(_point: &str) {}
}

/// The usage attributes of every private key signerd makes or imports: it signs and does
/// nothing else. Said explicitly because tokens differ in their defaults (SoftHSM makes
/// private keys that decrypt unless told otherwise), and sensitive and never extractable.
pub(crate) fn sign_only_private() -> [Attribute; 7] {
    [
        Attribute::Sign(true),
        Attribute::SignRecover(false),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
    ]
}

/// The usage attributes of every public key signerd makes or imports: it verifies signatures
/// and does nothing else.
pub(crate) fn verify_only_public() -> [Attribute; 4] {
    [
        Attribute::Verify(true),
        Attribute::VerifyRecover(false),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
    ]
}

/// Refuses RSA sizes signerd does not make: the same list the config accepts.
fn check_rsa_bits(bits: u32) -> Result<(), TokenError> {
    if defaults::rsa_bits_allowed(bits) {
        Ok(())
    } else {
        Err(TokenError::InvalidRequest(format!(
            "RSA keys of {bits} bits are not made; use {}",
            defaults::rsa_bits_choices()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_sizes_are_those_config_accepts() {
        for bits in defaults::RSA_BITS_ALLOWED {
            assert!(check_rsa_bits(bits).is_ok(), "{bits}");
        }
        let err = check_rsa_bits(8192).unwrap_err().to_string();
        assert_eq!(
            err,
            "RSA keys of 8192 bits are not made; use 2048, 3072 or 4096"
        );
        assert!(matches!(
            check_rsa_bits(1024),
            Err(TokenError::InvalidRequest(_))
        ));
    }
}
