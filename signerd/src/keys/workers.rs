//! Token workers: a fixed set of threads that carry out every token operation, fed by one
//! bounded queue; a request waits for its answer on a oneshot channel.
//!
//! This replaces a `spawn_blocking` per request (tokio's blocking pool grows to 512 threads under
//! load, and each hand-off costs context switches): the thread count is fixed whatever the load,
//! and when the queue is full a request is refused at once (RESOURCE_EXHAUSTED, "reduce load")
//! instead of waiting without bound. There are as many workers as the token has sessions
//! (`token.sessions`), so a worker always finds a free session: the token is never asked for
//! more parallel work than it was configured for, and no worker waits for another.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use signerd_token::{Token, TokenError};

/// Requests that may wait per worker before new ones are refused (RESOURCE_EXHAUSTED). A token signature takes tens
/// of microseconds (SoftHSM) to tens of milliseconds (network HSMs); 64 waiting per worker keeps
/// a burst of notary-server's requests queued rather than refused, while bounding memory and
/// the wait.
pub const QUEUE_PER_WORKER: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// The worker threads and their queue. Dropping the last handle closes the queue, lets the
/// workers finish what they hold, and joins them.
#[derive(Clone)]
pub(crate) struct TokenWorkers {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    capacity: usize,
}

impl TokenWorkers {
    /// Starts `count` workers (at least one) with a queue of `count * QUEUE_PER_WORKER`.
    pub(crate) fn start(count: usize) -> std::io::Result<TokenWorkers> {
        let count = count.max(1);
        let capacity = count * QUEUE_PER_WORKER;
        let (queue, jobs) = crossbeam_channel::bounded::<Job>(capacity);
        let threads = (0..count)
            .map(|i| {
                let jobs = jobs.clone();
                std::thread::Builder::new()
                    .name(format!("token-worker-{i}"))
                    .spawn(move || {
                        for job in jobs {
                            // A panicking operation drops its reply channel (the caller gets an
                            // error); the worker itself stays.
                            if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                                tracing::error!("a token operation panicked; its request failed");
                            }
                        }
                    })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(TokenWorkers {
            inner: Arc::new(Inner {
                queue: Some(queue),
                threads,
                capacity,
            }),
        })
    }

    /// Worker threads.
    pub(crate) fn count(&self) -> usize {
        self.inner.threads.len()
    }

    /// Requests that may wait for a worker.
    pub(crate) fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Requests waiting for a worker now.
    pub(crate) fn queue_depth(&self) -> usize {
        self.inner.queue.as_ref().map_or(0, Sender::len)
    }

    /// Runs `op` on a worker and waits for its answer; refuses at once when the queue is full.
    pub(crate) async fn run<T, E>(
        &self,
        token: Arc<Token>,
        op: impl FnOnce(&Token) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<TokenError> + Send + 'static,
    {
        self.execute(move || op(&token)).await
    }

    /// Queues `op` and waits for its answer on a oneshot channel.
    async fn execute<T, E>(
        &self,
        op: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<TokenError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone (a cancelled request): nobody to tell.
            let _ = reply.send(op());
        });
        let queue = self
            .inner
            .queue
            .as_ref()
            .ok_or_else(|| TokenError::Cryptoki("token workers stopped".into()))?;
        match queue.try_send(job) {
            Ok(()) => {}
            // "all N token sessions stayed busy; raise token.sessions or reduce load".
            Err(TrySendError::Full(_)) => {
                return Err(TokenError::PoolExhausted(self.count()).into())
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(TokenError::Cryptoki("token workers stopped".into()).into())
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(TokenError::Cryptoki("the token operation failed (see the log)".into()).into())
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends each worker's loop once the queue is drained.
        drop(self.queue.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for TokenWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenWorkers")
            .field("workers", &self.count())
            .field("queue", &self.inner.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test]
    async fn answers_come_back_from_the_workers() {
        let workers = TokenWorkers::start(2).unwrap();
        let name = workers
            .execute(|| Ok::<_, TokenError>(std::thread::current().name().map(str::to_owned)))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("token-worker-"));
    }

    // Multi-threaded: the test blocks its own thread while the spawned requests get queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_at_once_and_work_resumes_after() {
        let workers = TokenWorkers::start(1).unwrap();
        // Hold the only worker until released.
        let (release, held) = mpsc::channel::<()>();
        let (started, wait_started) = mpsc::channel::<()>();
        let blocker = {
            let workers = workers.clone();
            tokio::spawn(async move {
                workers
                    .execute(move || {
                        started.send(()).unwrap();
                        held.recv().unwrap();
                        Ok::<_, TokenError>(())
                    })
                    .await
            })
        };
        wait_started.recv().unwrap();
        // Fill the queue behind it.
        let queued: Vec<_> = (0..QUEUE_PER_WORKER)
            .map(|i| {
                let workers = workers.clone();
                tokio::spawn(async move { workers.execute(move || Ok::<_, TokenError>(i)).await })
            })
            .collect();
        // Let every queued request reach the queue.
        while workers.inner.queue.as_ref().unwrap().len() < QUEUE_PER_WORKER {
            tokio::task::yield_now().await;
        }
        let refused = workers
            .execute(|| Ok::<_, TokenError>(()))
            .await
            .unwrap_err();
        assert!(matches!(refused, TokenError::PoolExhausted(1)), "{refused}");
        assert!(refused.to_string().contains("reduce load"));

        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        for (i, q) in queued.into_iter().enumerate() {
            assert_eq!(q.await.unwrap().unwrap(), i);
        }
        workers.execute(|| Ok::<_, TokenError>(())).await.unwrap();
    }

    #[tokio::test]
    async fn a_panicking_operation_fails_its_request_and_the_worker_stays() {
        let workers = TokenWorkers::start(1).unwrap();
        let failed = workers
            .execute(|| -> Result<(), TokenError> { panic!("operation bug") })
            .await
            .unwrap_err();
        assert!(matches!(failed, TokenError::Cryptoki(_)), "{failed}");
        workers.execute(|| Ok::<_, TokenError>(())).await.unwrap();
    }

    #[test]
    fn dropping_the_last_handle_joins_the_workers() {
        let workers = TokenWorkers::start(3).unwrap();
        assert_eq!(workers.count(), 3);
        assert_eq!(workers.capacity(), 3 * QUEUE_PER_WORKER);
        drop(workers);
    }
}
