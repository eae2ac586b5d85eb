//! [`KeyStore`]: the token's key operations for async code. Each call runs on one of a fixed
//! set of token workers ([`workers`]), so a slow token never stalls the runtime, the thread
//! count stays bounded under any load, and a full queue is refused at once; no lock is held
//! across an await.
//!
//! Every key operation takes the caller's [`Access`]: the key is looked up first (a cache hit
//! after its first use), checked against the caller's port and policy, and only then used. A
//! key out of the caller's reach answers exactly as an absent key.

mod workers;

use std::sync::Arc;

use signerd_token::{
    KeyAlgorithm, KeyId, KeyInfo, KeyUsage, Signature, Token, TokenError, TokenStats,
};
use tokio::sync::watch;

use crate::edge::error::KeyError;
use crate::edge::policy::Operation;
use crate::edge::Access;
use workers::TokenWorkers;
pub use workers::QUEUE_PER_WORKER;

/// Async access to the keys in one token. Cheap to clone.
#[derive(Clone, Debug)]
pub struct KeyStore {
    token: Arc<Token>,
    workers: TokenWorkers,
    serving: watch::Receiver<bool>,
}

/// The key store's state and counters, for metrics and `signerd status`: read without a token
/// call.
#[derive(Clone, Debug)]
pub struct StoreStats {
    /// The token layer's state and counters.
    pub token: TokenStats,
    /// Token worker threads.
    pub workers: usize,
    /// Requests waiting for a token worker now.
    pub queue_depth: usize,
    /// Requests that may wait before new ones are refused (RESOURCE_EXHAUSTED).
    pub queue_capacity: usize,
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
        let (state, serving) = watch::channel(token.is_up());
        token.on_state_change(Box::new(move |up| {
            state.send_replace(up);
        }));
        Ok(KeyStore {
            token,
            workers,
            serving,
        })
    }

    /// The token's state and the workers' load, read without a token call.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            token: self.token.stats(),
            workers: self.workers.count(),
            queue_depth: self.workers.queue_depth(),
            queue_capacity: self.workers.capacity(),
        }
    }

    /// `true` while the token is up: connected and answering. Changes as the token goes away
    /// and comes back (what health's `Watch` streams).
    pub fn serving(&self) -> watch::Receiver<bool> {
        self.serving.clone()
    }

    /// The token, for shutdown.
    pub fn token(&self) -> &Arc<Token> {
        &self.token
    }

    /// Generates a key pair in the token, when `access` may make a key of `usage`.
    pub async fn create(
        &self,
        access: &Access,
        algorithm: KeyAlgorithm,
        usage: KeyUsage,
    ) -> Result<KeyInfo, KeyError> {
        access.check_usage(Operation::Create, &usage, Some(algorithm))?;
        let info = self
            .blocking(move |t| t.create_key(algorithm, &usage))
            .await?;
        access.facts.key(&info);
        Ok(info)
    }

    /// Public key, algorithm and usage of a key.
    pub async fn info(&self, access: &Access, id: KeyId) -> Result<KeyInfo, KeyError> {
        access.key_id(&id);
        let access = access.clone();
        self.blocking_with(move |t| {
            let info = t.key_info(&id)?;
            access.check_key(Operation::Info, &info)?;
            Ok(info)
        })
        .await
    }

    /// Signs `content` with key `id`.
    pub async fn sign(
        &self,
        access: &Access,
        id: KeyId,
        content: Vec<u8>,
    ) -> Result<Signature, KeyError> {
        access.key_id(&id);
        access.facts.content(&content);
        let access = access.clone();
        self.blocking_with(move |t| {
            let info = t.key_info(&id)?;
            access.check_key(Operation::Sign, &info)?;
            Ok(t.sign(&id, &content)?)
        })
        .await
    }

    /// Deletes a key; `false` when it did not exist, or is out of the caller's reach (then it
    /// stays, and the answer is the same as for an absent key).
    pub async fn delete(&self, access: &Access, id: KeyId) -> Result<bool, KeyError> {
        access.key_id(&id);
        let access = access.clone();
        self.blocking_with(move |t| {
            let info = match t.key_info(&id) {
                Ok(info) => info,
                Err(TokenError::KeyNotFound(_)) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            if !access.reaches(Operation::Delete, &info)? {
                return Ok(false);
            }
            Ok(t.delete_key(&id)?)
        })
        .await
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
        self.blocking_with(op).await
    }

    /// Runs a token operation that may also fail otherwise (a policy refusal) on a token
    /// worker.
    pub(crate) async fn blocking_with<T: Send + 'static, E: From<TokenError> + Send + 'static>(
        &self,
        op: impl FnOnce(&Token) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        self.workers.run(Arc::clone(&self.token), op).await
    }
}
