//! [`KeyStore`]: the token's key operations for async code. Each call runs on one of a fixed
//! set of token workers ([`workers`]), so a slow token never stalls the runtime, the thread
//! count stays bounded under any load, and a full queue is refused at once; no lock is held
//! across an await.

mod workers;

use std::sync::Arc;

use signerd_token::{KeyAlgorithm, KeyId, KeyInfo, KeyUsage, Signature, Token, TokenError};

use workers::TokenWorkers;
pub use workers::QUEUE_PER_WORKER;

/// Async access to the keys in one token. Cheap to clone.
#[derive(Clone, Debug)]
pub struct KeyStore {
    token: Arc<Token>,
    workers: TokenWorkers,
}

impl KeyStore {
    /// Wraps an opened token and starts its workers, one per operation the token is given at
    /// once ([`Token::parallelism`]).
    pub fn new(token: Arc<Token>) -> std::io::Result<KeyStore> {
        let workers = TokenWorkers::start(token.parallelism())?;
        tracing::info!(
            workers = workers.count(),
            queue = workers.capacity(),
            "token workers started"
        );
        Ok(KeyStore { token, workers })
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

    /// Runs a token operation on a token worker.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Token) -> Result<T, TokenError> + Send + 'static,
    ) -> Result<T, TokenError> {
        self.workers.run(Arc::clone(&self.token), op).await
    }
}
