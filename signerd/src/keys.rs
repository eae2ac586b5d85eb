//! [`KeyStore`]: the token's key operations for async code. Each call runs on one of a fixed
//! set of token workers ([`workers`]), so a slow token never stalls the runtime, the thread
//! count stays bounded under any load, and a full queue is refused at once; no lock is held
//! across an await.
//!
//! **Token faults.** The token's supervisor reconnects in the background; here a request never
//! waits on a token that is down for longer than `token.unavailable_after_ms`: it waits for the
//! token to come back up to that bound, then answers UNAVAILABLE. A request whose worker is
//! inside a token that went down (a hung network HSM) gets the same bound. Sign and GetKeyInfo
//! are idempotent: one that failed because the token went away is tried once more when the
//! token is back within the bound.
//!
//! Every key operation takes the caller's [`Access`]: the key is looked up first (a cache hit
//! after its first use), checked against the caller's port and policy, and only then used. A
//! key out of the caller's reach answers exactly as an absent key.

mod polling;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use signerd_token::{
    ErrorKind, KeyAlgorithm, KeyId, KeyInfo, KeyUsage, Signature, Token, TokenError, TokenStats,
};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::edge::error::KeyError;
use crate::edge::policy::Operation;
use crate::edge::Access;
use workers::{TokenWorkers, LOCAL_LANE};
pub use workers::{QUEUE_PER_WORKER, TOTAL_PER_LANE_CAPACITY};

/// Async access to the keys in one token. Cheap to clone.
#[derive(Clone, Debug)]
pub struct KeyStore {
    token: Arc<Token>,
    workers: TokenWorkers,
    serving: watch::Receiver<bool>,
    /// `token.unavailable_after_ms`.
    bound: Duration,
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
    /// Requests that may wait on one lane (one client connection) before its new ones are
    /// refused (RESOURCE_EXHAUSTED); all lanes together hold [`TOTAL_PER_LANE_CAPACITY`] times
    /// that.
    pub queue_capacity: usize,
}

impl KeyStore {
    /// Wraps an opened token and starts its workers, one per operation the token is given at
    /// once ([`Token::parallelism`]), an idle one polling the queue for up to `idle_poll`
    /// before it sleeps (`token.idle_poll_us`).
    pub fn new(token: Arc<Token>, idle_poll: Duration) -> std::io::Result<KeyStore> {
        let workers =
            TokenWorkers::start(token.parallelism(), Some(Arc::clone(&token)), idle_poll)?;
        tracing::info!(
            workers = workers.count(),
            queue = workers.capacity(),
            idle_poll_us = idle_poll.as_micros() as u64,
            "token workers started"
        );
        let (state, serving) = watch::channel(token.is_up());
        token.on_state_change(Box::new(move |up| {
            state.send_replace(up);
        }));
        let bound = token.unavailable_after();
        Ok(KeyStore {
            token,
            workers,
            serving,
            bound,
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
            .on_lane(access.lane, move |t| t.create_key(algorithm, &usage))
            .await?;
        access.facts.key(&info);
        Ok(info)
    }

    /// Public key, algorithm and usage of a key.
    pub async fn info(&self, access: &Access, id: KeyId) -> Result<KeyInfo, KeyError> {
        access.key_id(&id);
        let lane = access.lane;
        let access = access.clone();
        self.idempotent(lane, move || {
            let access = access.clone();
            move |t: &Token| -> Result<KeyInfo, KeyError> {
                let info = t.key_info(&id)?;
                access.check_key(Operation::Info, &info)?;
                Ok(info)
            }
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
        let lane = access.lane;
        let access = access.clone();
        let content = Arc::new(content);
        self.idempotent(lane, move || {
            let access = access.clone();
            let content = Arc::clone(&content);
            move |t: &Token| -> Result<Signature, KeyError> {
                // The index's facts suffice for the policy: the signature itself finds a key
                // deleted meanwhile (NotFound), with no extra token call per request.
                let info = t.indexed_key_info(&id)?;
                access.check_key(Operation::Sign, &info)?;
                Ok(t.sign(&id, &content)?)
            }
        })
        .await
    }

    /// Deletes a key; `false` when it did not exist, or is out of the caller's reach (then it
    /// stays, and the answer is the same as for an absent key).
    pub async fn delete(&self, access: &Access, id: KeyId) -> Result<bool, KeyError> {
        access.key_id(&id);
        let lane = access.lane;
        let access = access.clone();
        self.on_lane(lane, move |t| {
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
    /// worker; UNAVAILABLE within the bound when the token is or goes down.
    pub(crate) async fn blocking_with<T: Send + 'static, E: From<TokenError> + Send + 'static>(
        &self,
        op: impl FnOnce(&Token) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        self.on_lane(LOCAL_LANE, op).await
    }

    /// [`Self::blocking_with`] in the turn of `lane` (the caller's connection).
    async fn on_lane<T: Send + 'static, E: From<TokenError> + Send + 'static>(
        &self,
        lane: u64,
        op: impl FnOnce(&Token) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        self.ready(Instant::now() + self.bound).await?;
        self.bounded(lane, op).await
    }

    /// Runs an idempotent operation (made afresh by `make` for each try); one that failed
    /// because the token went away runs once more when the token is back within the bound.
    async fn idempotent<T, F>(&self, lane: u64, make: impl Fn() -> F) -> Result<T, KeyError>
    where
        T: Send + 'static,
        F: FnOnce(&Token) -> Result<T, KeyError> + Send + 'static,
    {
        self.ready(Instant::now() + self.bound).await?;
        match self.bounded(lane, make()).await {
            Err(KeyError::Token(e)) if e.kind() == ErrorKind::Unavailable => {
                self.ready(Instant::now() + self.bound)
                    .await
                    .map_err(|_| e)?;
                self.bounded(lane, make()).await
            }
            other => other,
        }
    }

    /// Waits until the token is up, or fails with why it is not once `deadline` passes.
    async fn ready(&self, deadline: Instant) -> Result<(), TokenError> {
        if *self.serving.borrow() {
            return Ok(());
        }
        let mut serving = self.serving.clone();
        let up = tokio::time::timeout_at(deadline, serving.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok());
        if up {
            Ok(())
        } else {
            Err(self.token.down_error())
        }
    }

    /// Runs `op` on a worker. While the token is up it may take as long as it takes (a
    /// 4096-bit key generation); once the token goes down it gets the bound to finish, and
    /// the request is answered UNAVAILABLE after that (its worker may be stuck in a hung
    /// token; the job is skipped if it has not started).
    async fn bounded<T: Send + 'static, E: From<TokenError> + Send + 'static>(
        &self,
        lane: u64,
        op: impl FnOnce(&Token) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let run = self.workers.run(lane, Arc::clone(&self.token), op);
        tokio::pin!(run);
        let mut serving = self.serving.clone();
        tokio::select! {
            result = &mut run => return result,
            _ = serving.wait_for(|up| !*up) => {}
        }
        match tokio::time::timeout(self.bound, run).await {
            Ok(result) => result,
            Err(_) => Err(TokenError::Down {
                reason: format!(
                    "the token went down and did not answer within {} ms",
                    self.bound.as_millis()
                ),
                kind: ErrorKind::Unavailable,
            }
            .into()),
        }
    }
}
