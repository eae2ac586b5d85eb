//! [`KeyStore`]: the token's key operations for async code. Each call runs on tokio's blocking
//! pool, so a slow token never stalls the runtime; no lock is held across an await.

use std::sync::Arc;

use signerd_token::{KeyAlgorithm, KeyId, KeyInfo, KeyUsage, Signature, Token, TokenError};

/// Async access to the keys in one token. Cheap to clone.
#[derive(Clone, Debug)]
pub struct KeyStore {
    token: Arc<Token>,
}

impl KeyStore {
    /// Wraps an opened token.
    pub fn new(token: Arc<Token>) -> KeyStore {
        KeyStore { token }
    }

    /// The token, for shutdown.
    pub fn token(&self) -> &Arc<Token> {
        &self.token
    }

    /// Generates a key pair in the token.
    pub async fn create(
        &self,
        algorithm: KeyAlgorithm,
        usage: KeyUsage,
    ) -> Result<KeyInfo, TokenError> {
        self.blocking(move |t| t.create_key(algorithm, &usage))
            .await
    }

    /// Public key, algorithm and usage of a key.
    pub async fn info(&self, id: KeyId) -> Result<KeyInfo, TokenError> {
        self.blocking(move |t| t.key_info(&id)).await
    }

    /// Signs `content` with key `id`.
    pub async fn sign(&self, id: KeyId, content: Vec<u8>) -> Result<Signature, TokenError> {
        self.blocking(move |t| t.sign(&id, &content)).await
    }

    /// Deletes a key; `false` when it did not exist.
    pub async fn delete(&self, id: KeyId) -> Result<bool, TokenError> {
        self.blocking(move |t| t.delete_key(&id)).await
    }

    /// Probes the token: it answers and the session is logged in.
    pub async fn probe(&self) -> Result<(), TokenError> {
        self.blocking(|t| t.probe()).await
    }

    /// Runs a token operation on tokio's blocking pool.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Token) -> Result<T, TokenError> + Send + 'static,
    ) -> Result<T, TokenError> {
        let token = Arc::clone(&self.token);
        tokio::task::spawn_blocking(move || op(&token))
            .await
            .unwrap_or_else(|e| Err(TokenError::Cryptoki(format!("token task failed: {e}"))))
    }
}
