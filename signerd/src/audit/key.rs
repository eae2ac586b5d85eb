//! The audit key: an ECDSA P-256 key generated in the token on first use (sensitive,
//! non-extractable, sign-only, like every key signerd makes), found again by its label after a
//! restart, that signs the checkpoints of the audit trail.

use std::sync::Arc;

use signerd_token::{spki_from_public_key, KeyAlgorithm, KeyInfo, KeyUsage, Token};

use super::trail::{CheckpointSignature, CheckpointSigner};

/// `CKA_LABEL` of the audit key: the admin domain, so the Notary port never reaches it.
pub const AUDIT_KEY_LABEL: &str = "admin:audit@signerd";

/// Whether `key` is the audit key.
pub fn is_audit_key(key: &KeyInfo) -> bool {
    key.usage.label() == AUDIT_KEY_LABEL
}

/// The audit key in `token`, generated when there is none.
pub fn find_or_create(token: &Token) -> Result<KeyInfo, String> {
    let keys = token
        .list_keys()
        .map_err(|e| format!("cannot look for the audit key: {e}"))?;
    if let Some(key) = keys.into_iter().find(is_audit_key) {
        return Ok(key);
    }
    let key = token
        .create_key(KeyAlgorithm::Ecdsa, &KeyUsage::from_label(AUDIT_KEY_LABEL))
        .map_err(|e| format!("cannot generate the audit key: {e}"))?;
    tracing::info!(key_id = %key.id, label = AUDIT_KEY_LABEL, "audit key generated in the token");
    Ok(key)
}

/// Signs checkpoints with the audit key in the token.
#[derive(Debug)]
pub struct TokenCheckpointSigner {
    token: Arc<Token>,
    key: Option<KeyInfo>,
}

impl TokenCheckpointSigner {
    /// Signs with the audit key of `token`, found (or made) at the first checkpoint, so
    /// signerd starts even while the token is away.
    pub fn new(token: Arc<Token>) -> TokenCheckpointSigner {
        TokenCheckpointSigner { token, key: None }
    }
}

impl CheckpointSigner for TokenCheckpointSigner {
    fn sign(&mut self, message: &[u8]) -> Result<CheckpointSignature, String> {
        let key = match &self.key {
            Some(key) => key.clone(),
            None => {
                let key = find_or_create(&self.token)?;
                self.key = Some(key.clone());
                key
            }
        };
        let signature = self.token.sign(&key.id, message).map_err(|e| {
            // The key may have been deleted: look for it (or make one) next time.
            self.key = None;
            format!("the audit key {} cannot sign: {e}", key.id)
        })?;
        Ok(CheckpointSignature {
            key_id: key.id.to_string(),
            algorithm: key.algorithm.as_str().to_owned(),
            public_key: spki_from_public_key(key.algorithm, &key.public_key)?,
            signature: signature.bytes,
        })
    }
}
