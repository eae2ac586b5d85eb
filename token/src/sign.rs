//! Signing, by the one mechanism table in `signerd-vocab`: notary-server's `Sign` (by TUF key
//! ID, the mechanism [`SignMechanism::notary`] gives for the key's algorithm, in Notary's
//! encoding) and the admin API's sign (by object reference, with the mechanism the caller
//! names).

use std::borrow::Cow;

use cryptoki::error::RvError;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::{Session, UserType};
use sha2::{Digest, Sha256};
use signerd_vocab::{KeyType, PssParams, SignMechanism};

use crate::connection::{CachedKey, Token};
use crate::encoding::{self, key_algorithm};
use crate::error::{refused_input, Attempt, CallError, Fault, OpError, TokenError};
use crate::key::{KeyAlgorithm, KeyId, Signature};
use crate::objects::{find_one, ObjectKind, ObjectRef};

impl Token {
    /// Signs `content` with key `id` in Notary's encoding for the key's algorithm.
    pub fn sign(&self, id: &KeyId, content: &[u8]) -> Result<Signature, TokenError> {
        self.run(|conn, session| {
            let key = self.lookup(conn, session, id)?;
            let algorithm = key.info.algorithm;
            let notary = SignMechanism::notary(algorithm);
            // Notary's path hashes here and hands the token the raw mechanism, which every
            // token that has the key type offers.
            let digest;
            let message = if notary.hashes() {
                digest = Sha256::digest(content);
                &digest[..]
            } else {
                content
            };
            let (mechanism, input) = prepare(notary.raw(), message)?;
            let signature = match self.sign_raw(session, &mechanism, &key, &input) {
                Err(OpError::Call(call)) if wants_login_per_signature(&call) => {
                    // Notary's mechanism with its hash, fed the content, can be run in parts.
                    self.sign_reauthenticated(session, key.private, notary, content, call)
                        .inspect_err(|e| {
                            if matches!(e, OpError::Call(c) if c.fault() == Fault::StaleHandle) {
                                self.forget_key(id);
                            }
                        })?
                }
                signed => signed?,
            };
            let bytes = match algorithm {
                KeyAlgorithm::Ecdsa => {
                    encoding::ecdsa_raw_signature(signature).map_err(|reason| {
                        TokenError::MalformedKey {
                            id: id.to_string(),
                            reason,
                        }
                    })?
                }
                KeyAlgorithm::Ed25519 | KeyAlgorithm::Rsa => signature,
            };
            Ok(Signature {
                key: key.info,
                bytes,
            })
        })
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
        let (cryptoki_mech, input) = prepare(mechanism, data)?;
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
            let wanted = KeyAlgorithm::from(mechanism.key_type());
            if key_type != Some(wanted) {
                return Err(OpError::Final(TokenError::InvalidRequest(format!(
                    "{} signs with {wanted} keys; the {} is {}",
                    mechanism.name(),
                    key.describe(),
                    key_type.map(|k| k.as_str()).unwrap_or("of another type")
                ))));
            }
            check_input(mechanism, &input, modulus_len).map_err(OpError::Final)?;
            match session.sign(&cryptoki_mech, handle, &input) {
                Err(e) => match CallError::from(e) {
                    call if wants_login_per_signature(&call) => {
                        self.sign_reauthenticated(session, handle, mechanism, data, call)
                    }
                    call => Err(OpError::Call(call)),
                },
                Ok(signature) => Ok(signature),
            }
        })
        .map_err(refused_input)
    }

    /// Signs with a key marked `CKA_ALWAYS_AUTHENTICATE` (a YubiKey's PIV slot 9c): the user
    /// PIN again (`C_Login(CKU_CONTEXT_SPECIFIC)`) between `C_SignInit` and the signature.
    ///
    /// `refused` is the plain signature's `CKR_USER_NOT_LOGGED_IN`, returned as it was when
    /// the key is not so marked. The cryptoki crate offers no single-part `C_Sign` after a
    /// separate `C_SignInit`, so the signature is made in parts, with the mechanism that hashes
    /// `data` itself; a mechanism that cannot run in parts is refused with what to use.
    fn sign_reauthenticated(
        &self,
        session: &Session,
        key: ObjectHandle,
        mechanism: SignMechanism,
        data: &[u8],
        refused: CallError,
    ) -> Attempt<Vec<u8>> {
        let always = session
            .get_attributes(key, &[AttributeType::AlwaysAuthenticate])?
            .into_iter()
            .any(|a| matches!(a, Attribute::AlwaysAuthenticate(true)));
        if !always {
            return Err(OpError::Call(refused));
        }
        let Some(in_parts) = multi_part(mechanism)? else {
            return Err(OpError::Final(TokenError::InvalidRequest(format!(
                "the key asks for the PIN before each signature (CKA_ALWAYS_AUTHENTICATE), \
                 which signerd gives only to mechanisms that hash the data themselves; {} does \
                 not (use CKM_ECDSA_SHA256, CKM_SHA256_RSA_PKCS or CKM_SHA256_RSA_PKCS_PSS, or \
                 a key without CKA_ALWAYS_AUTHENTICATE)",
                mechanism.name()
            ))));
        };
        let source = self
            .config
            .pin
            .as_ref()
            .or(self.config.uri.pin_source.as_ref())
            .ok_or(TokenError::NoPinSource)?;
        let pin = source.read().map_err(TokenError::from)?;
        session.sign_init(&in_parts, key).map_err(|e| {
            let call = CallError::from(e);
            match call.rv {
                Some(RvError::MechanismInvalid) => {
                    OpError::Final(TokenError::InvalidRequest(format!(
                        "the key asks for the PIN before each signature \
                         (CKA_ALWAYS_AUTHENTICATE), so signerd signs with {} in parts, which \
                         this token does not offer; use a key without CKA_ALWAYS_AUTHENTICATE",
                        mechanism.name()
                    )))
                }
                _ => OpError::Call(call),
            }
        })?;
        if let Err(e) = session.login(UserType::ContextSpecific, Some(&pin)) {
            // End the signing operation, so the pooled session can sign again: a C_SignFinal
            // that fails (as it does without the login) always ends it.
            let _ = session.sign_final();
            let call = CallError::from(e);
            return Err(match call.rv {
                Some(RvError::PinIncorrect) => OpError::Final(TokenError::PinIncorrect {
                    source_desc: source.describe(),
                }),
                Some(RvError::PinLocked) => OpError::Final(TokenError::PinLocked {
                    state: "locked",
                    source_desc: source.describe(),
                }),
                _ => OpError::Call(call),
            });
        }
        session.sign_update(data)?;
        Ok(session.sign_final()?)
    }

    /// Signs with a cached key's handle; a stale handle drops the key from the cache.
    fn sign_raw(
        &self,
        session: &Session,
        mechanism: &Mechanism,
        key: &CachedKey,
        data: &[u8],
    ) -> Attempt<Vec<u8>> {
        session.sign(mechanism, key.private, data).map_err(|e| {
            let call: CallError = e.into();
            if call.fault() == Fault::StaleHandle {
                // The object went away under us (deleted by another signerd, or the token was
                // swapped): forget it so the retry looks it up again.
                self.forget_key(&key.info.id);
            }
            OpError::Call(call)
        })
    }
}

/// Whether a failed signature is the token asking for the PIN again: `C_Sign` (not the login
/// of the session, which `C_SignInit` would have reported) answering `CKR_USER_NOT_LOGGED_IN`.
fn wants_login_per_signature(call: &CallError) -> bool {
    call.rv == Some(RvError::UserNotLoggedIn) && call.call == "C_Sign"
}

/// The cryptoki mechanism that hashes the data itself and so runs in parts, for mechanisms
/// that have one: `None` for the raw ones (`CKM_ECDSA`, `CKM_EDDSA`, `CKM_RSA_PKCS`,
/// `CKM_RSA_PKCS_PSS`), which sign a digest in one call.
fn multi_part(mechanism: SignMechanism) -> Result<Option<Mechanism<'static>>, TokenError> {
    Ok(match mechanism {
        SignMechanism::EcdsaSha256 => Some(Mechanism::EcdsaSha256),
        SignMechanism::Sha256RsaPkcs => Some(Mechanism::Sha256RsaPkcs),
        SignMechanism::Sha256RsaPkcsPss(p) => Some(Mechanism::Sha256RsaPkcsPss(pss_params(&p)?)),
        SignMechanism::Ecdsa
        | SignMechanism::Eddsa
        | SignMechanism::RsaPkcs
        | SignMechanism::RsaPkcsPss(_) => None,
    })
}

/// The cryptoki mechanism and the bytes to hand the token. `CKM_ECDSA_SHA256` is hashed here
/// and signed as `CKM_ECDSA`: SoftHSM, among others, lacks it.
fn prepare(
    mechanism: SignMechanism,
    data: &[u8],
) -> Result<(Mechanism<'static>, Cow<'_, [u8]>), TokenError> {
    let data = Cow::Borrowed(data);
    Ok(match mechanism {
        SignMechanism::Ecdsa => (Mechanism::Ecdsa, data),
        SignMechanism::EcdsaSha256 => {
            (Mechanism::Ecdsa, Cow::Owned(Sha256::digest(&data).to_vec()))
        }
        SignMechanism::Eddsa => (
            Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
            data,
        ),
        SignMechanism::RsaPkcs => (Mechanism::RsaPkcs, data),
        SignMechanism::RsaPkcsPss(p) => (Mechanism::RsaPkcsPss(pss_params(&p)?), data),
        SignMechanism::Sha256RsaPkcs => (Mechanism::Sha256RsaPkcs, data),
        SignMechanism::Sha256RsaPkcsPss(p) => (Mechanism::Sha256RsaPkcsPss(pss_params(&p)?), data),
    })
}

/// Refuses input the token would refuse, before it sees it: some tokens (SoftHSM among them)
/// answer oversized input with CKR_GENERAL_ERROR, which reads as a token fault.
fn check_input(
    mechanism: SignMechanism,
    input: &[u8],
    modulus_len: Option<usize>,
) -> Result<(), TokenError> {
    let refuse = |what: String| {
        Err(TokenError::InvalidRequest(format!(
            "{}: {what}",
            mechanism.name()
        )))
    };
    match mechanism {
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
        SignMechanism::RsaPkcsPss(p) => match p.digest_len() {
            Some(want) if input.len() != want => refuse(format!(
                "the data is the {want}-byte digest, not {} bytes",
                input.len()
            )),
            _ => Ok(()),
        },
        _ => Ok(()),
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

/// The mechanism table speaks of key types; the token layer of TUF algorithms: the same three.
impl From<KeyAlgorithm> for KeyType {
    fn from(algorithm: KeyAlgorithm) -> KeyType {
        match algorithm {
            KeyAlgorithm::Ecdsa => KeyType::EcP256,
            KeyAlgorithm::Ed25519 => KeyType::Ed25519,
            KeyAlgorithm::Rsa => KeyType::Rsa,
        }
    }
}

impl From<KeyType> for KeyAlgorithm {
    fn from(key_type: KeyType) -> KeyAlgorithm {
        match key_type {
            KeyType::EcP256 => KeyAlgorithm::Ecdsa,
            KeyType::Ed25519 => KeyAlgorithm::Ed25519,
            KeyType::Rsa => KeyAlgorithm::Rsa,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signerd_vocab::ckm;

    #[test]
    fn mechanisms_parse_and_need_pss_params() {
        assert_eq!(
            SignMechanism::from_ckm(ckm::ECDSA_SHA256, None).unwrap(),
            SignMechanism::EcdsaSha256
        );
        assert!(matches!(
            SignMechanism::from_ckm(ckm::RSA_PKCS_PSS, None).map_err(TokenError::from),
            Err(TokenError::InvalidRequest(_))
        ));
        let err = TokenError::from(SignMechanism::from_ckm(0x1234, None).unwrap_err()).to_string();
        assert!(err.contains("0x1234") && err.contains("CKM_EDDSA"), "{err}");
        assert_eq!(
            KeyAlgorithm::from(SignMechanism::notary(KeyAlgorithm::Rsa).key_type()),
            KeyAlgorithm::Rsa
        );
    }

    #[test]
    fn algorithms_and_key_types_agree() {
        for algorithm in KeyAlgorithm::ALL {
            let key_type = KeyType::from(algorithm);
            assert_eq!(KeyAlgorithm::from(key_type), algorithm);
            assert_eq!(key_type.tuf_keytype(), algorithm.as_str());
            assert_eq!(key_type.notary_method(), algorithm.signature_method());
        }
    }

    #[test]
    fn notary_signs_raw_mechanisms_over_a_digest() {
        // What Token::sign hands the token for each algorithm: unchanged from before the
        // mechanism table was shared.
        let content = b"{\"signed\":{}}";
        let digest = Sha256::digest(content);
        for algorithm in KeyAlgorithm::ALL {
            let notary = SignMechanism::notary(algorithm);
            let message: &[u8] = if notary.hashes() { &digest } else { content };
            let (mechanism, input) = prepare(notary.raw(), message).unwrap();
            match algorithm {
                KeyAlgorithm::Ecdsa => {
                    assert_eq!(mechanism.mechanism_type(), MechanismType::ECDSA);
                    assert_eq!(&*input, &digest[..]);
                }
                KeyAlgorithm::Ed25519 => {
                    assert_eq!(mechanism.mechanism_type(), MechanismType::EDDSA);
                    assert_eq!(&*input, content);
                }
                KeyAlgorithm::Rsa => {
                    assert_eq!(mechanism.mechanism_type(), MechanismType::RSA_PKCS_PSS);
                    assert_eq!(&*input, &digest[..]);
                    let Mechanism::RsaPkcsPss(p) = mechanism else {
                        unreachable!("matched above")
                    };
                    assert_eq!(p.hash_alg, MechanismType::SHA256);
                    assert_eq!(p.mgf, PkcsMgfType::MGF1_SHA256);
                }
            }
        }
    }

    #[test]
    fn inputs_the_token_would_refuse_are_refused_first() {
        assert!(check_input(SignMechanism::Ecdsa, &[], None).is_err());
        assert!(check_input(SignMechanism::Ecdsa, &[0; 32], None).is_ok());
        assert!(check_input(SignMechanism::RsaPkcs, &[0; 250], Some(256)).is_err());
        let pss = SignMechanism::RsaPkcsPss(PssParams::NOTARY);
        let err = check_input(pss, &[0; 20], None).unwrap_err().to_string();
        assert_eq!(
            err,
            "CKM_RSA_PKCS_PSS: the data is the 32-byte digest, not 20 bytes"
        );
        assert!(check_input(pss, &[0; 32], None).is_ok());
    }
}
