//! Token workers: a fixed set of threads that carry out every token operation, fed by one
//! bounded queue that is fair between connections; a request waits for its answer on a oneshot
//! channel.
//!
//! This replaces a `spawn_blocking` per request (tokio's blocking pool grows to 512 threads under
//! load, and each hand-off costs context switches): the thread count is fixed whatever the load,
//! and when the queue is full a request is refused at once (RESOURCE_EXHAUSTED, "reduce load")
//! instead of waiting without bound. Each worker owns one logged-in session of its own
//! ([`Token::attach_worker`]): there are as many workers as sessions signerd gives the token
//! ([`Token::parallelism`]: `token.sessions`, held to the token's `ulMaxSessionCount`), so the
//! token is never asked for more parallel work than configured, and no session is checked out
//! of a shared pool. Between jobs a worker closes its session once the token went down, so the
//! supervisor never waits on an idle worker before reconnecting.
//!
//! **Fairness.** Each request comes on a *lane* (one per client connection on the Notary port;
//! see [`crate::edge::identity::Lane`]) and the workers take the lanes in turn, one job each,
//! rather than the queue's jobs in arrival order. A client that keeps its connection's 128
//! streams full of Signs gets one turn in N (N lanes with work waiting), not 128 places ahead of
//! every other client: the client beside it keeps its share of the token. A lane may hold up to
//! the queue's capacity (`workers × QUEUE_PER_WORKER`, at least the default 128 streams of one
//! connection, so notary-server's one connection is never refused for its own burst); all lanes
//! together up to [`TOTAL_PER_LANE_CAPACITY`] times that.
//!
//! **Idle polling.** The last worker to find the queue empty polls it for up to
//! `token.idle_poll_us` (200 µs by default), yielding its CPU, before it sleeps; the next job
//! goes to it without a wake-up, and a core shared with the runtime thread does not go idle
//! between one answer and the next request. The window adapts to the gaps between jobs and
//! closes when they come sparsely ([`super::polling`]).

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use signerd_token::{Token, TokenError};

use super::polling::IdlePoll;

/// Requests that may wait per worker before new ones are refused (RESOURCE_EXHAUSTED). A token signature takes tens
/// of microseconds (SoftHSM) to tens of milliseconds (network HSMs); 64 waiting per worker keeps
/// a burst of notary-server's requests queued rather than refused, while bounding memory and
/// the wait.
pub const QUEUE_PER_WORKER: usize = 64;

/// How often an idle worker looks whether its session's generation went down.
const IDLE_TICK: Duration = Duration::from_millis(50);

/// How many lanes' worth of capacity all lanes together may hold: a few busy connections queue
/// side by side, many more are refused rather than making every request wait longer.
pub const TOTAL_PER_LANE_CAPACITY: usize = 4;

type Job = Box<dyn FnOnce() + Send>;

/// The lane of work that comes from no client connection (the admin socket, start-up, probes).
pub(crate) const LOCAL_LANE: u64 = crate::edge::identity::Lane::LOCAL.0;

/// Why a job was not queued.
enum Refused {
    Full,
    Closed,
}

/// What a worker got from the queue.
enum Next {
    Job(Job),
    Idle,
    Closed,
}

/// The jobs waiting, one FIFO per lane, and the lanes with work in the order they get their
/// next turn. The lock is held only to push or pop a job: never across a token call.
struct Lanes {
    jobs: HashMap<u64, VecDeque<Job>>,
    turns: VecDeque<u64>,
    closed: bool,
    /// How long a worker that finds the queue empty polls it before it sleeps.
    poll: IdlePoll,
    /// Workers asleep on [`FairQueue::ready`]. A push wakes one only if there is one: with
    /// every worker busy, waking the condition variable is a system call for no one.
    sleeping: usize,
}

/// The fair queue between the request tasks and the worker threads.
struct FairQueue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
    /// Jobs waiting, on every lane: changed under the lock, read without it (by a polling
    /// worker, and for the queue-depth metric).
    waiting: AtomicUsize,
    /// A worker polls the queue ([`FairQueue::poll`]) and takes the next job without a wake-up.
    /// The push that hands it that job clears it, so the push after wakes a sleeping worker.
    polling: AtomicBool,
    /// Workers running a job now.
    busy: AtomicUsize,
    /// Sleeping workers woken for a job (for the tests: a job handed to a polling worker, or
    /// pushed while no worker sleeps, wakes none).
    wakeups: AtomicUsize,
    per_lane: usize,
    total: usize,
}

impl FairQueue {
    /// A queue of `per_lane` jobs per lane whose idle workers poll for up to `max_poll`.
    fn new(per_lane: usize, max_poll: Duration) -> FairQueue {
        FairQueue {
            lanes: Mutex::new(Lanes {
                jobs: HashMap::new(),
                turns: VecDeque::new(),
                closed: false,
                poll: IdlePoll::new(max_poll),
                sleeping: 0,
            }),
            ready: Condvar::new(),
            waiting: AtomicUsize::new(0),
            polling: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            wakeups: AtomicUsize::new(0),
            per_lane,
            total: per_lane * TOTAL_PER_LANE_CAPACITY,
        }
    }

    /// The lock; a panic never happens under it (jobs run outside), so a poisoned lock still
    /// holds consistent lanes.
    fn lock(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, lane: u64, job: Job) -> Result<(), Refused> {
        let mut lanes = self.lock();
        if lanes.closed {
            return Err(Refused::Closed);
        }
        let waiting = self.waiting.load(Ordering::SeqCst);
        if waiting >= self.total {
            return Err(Refused::Full);
        }
        let queue = lanes.jobs.entry(lane).or_default();
        if queue.len() >= self.per_lane {
            return Err(Refused::Full);
        }
        let first = queue.is_empty();
        queue.push_back(job);
        if first {
            lanes.turns.push_back(lane);
        }
        // A polling worker takes this job without a wake-up. Taking its flag before the job
        // counts as waiting makes the poller leave through the flag, not through the count
        // (which would leave this push thinking no one polled, and waking a worker for
        // nothing).
        let handed = self.polling.swap(false, Ordering::SeqCst);
        self.waiting.store(waiting + 1, Ordering::SeqCst);
        lanes.poll.on_job();
        // A worker goes to sleep under the lock (the count, then the wait, which releases it),
        // so one counted here is asleep or about to be, and the wake-up reaches it.
        let wake = !handed && lanes.sleeping > 0;
        drop(lanes);
        if wake {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The next lane's next job, waiting up to `idle` for one. The last worker to go idle
    /// polls the queue for a while before it sleeps (see [`polling`]).
    fn pop(&self, idle: Duration) -> Next {
        let mut lanes = self.lock();
        loop {
            if let Some(lane) = lanes.turns.pop_front() {
                let Some(queue) = lanes.jobs.get_mut(&lane) else {
                    continue;
                };
                let job = queue.pop_front();
                if queue.is_empty() {
                    lanes.jobs.remove(&lane);
                } else {
                    lanes.turns.push_back(lane);
                }
                if let Some(job) = job {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    self.busy.fetch_add(1, Ordering::SeqCst);
                    return Next::Job(job);
                }
                continue;
            }
            if lanes.closed {
                return Next::Closed;
            }
            // While another worker still runs a job the CPU is not idle, and polling beside it
            // would only take turns with it.
            let last_awake = self.busy.load(Ordering::SeqCst) == 0;
            if let Some(window) = lanes.poll.on_empty(last_awake) {
                if self
                    .polling
                    .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    drop(lanes);
                    self.poll(window);
                    lanes = self.lock();
                    continue;
                }
            }
            lanes.sleeping += 1;
            let (guard, timeout) = self
                .ready
                .wait_timeout(lanes, idle)
                .unwrap_or_else(PoisonError::into_inner);
            lanes = guard;
            lanes.sleeping -= 1;
            if timeout.timed_out() && lanes.turns.is_empty() {
                return if lanes.closed {
                    Next::Closed
                } else {
                    Next::Idle
                };
            }
        }
    }

    /// Looks for a job for up to `window`, yielding the CPU between looks (on a shared core
    /// the runtime thread runs whenever it has work), until a push hands one over or the
    /// queue closes. A push after this returns wakes a sleeping worker instead.
    fn poll(&self, window: Duration) {
        let until = Instant::now() + window;
        while self.polling.load(Ordering::SeqCst)
            && self.waiting.load(Ordering::SeqCst) == 0
            && Instant::now() < until
        {
            std::thread::yield_now();
        }
        self.polling.store(false, Ordering::SeqCst);
    }

    /// A worker finished the job [`FairQueue::pop`] gave it.
    fn finished(&self) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    /// Jobs waiting now, on every lane.
    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Refuses new jobs; the workers finish the waiting ones, then stop.
    fn close(&self) {
        self.lock().closed = true;
        self.polling.store(false, Ordering::SeqCst);
        self.ready.notify_all();
    }
}

/// The worker threads and their queue. Dropping the last handle closes the queue, lets the
/// workers finish what they hold, and joins them.
#[derive(Clone)]
pub(crate) struct TokenWorkers {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Arc<FairQueue>,
    crew: Arc<Crew>,
    count: usize,
}

/// Starts worker threads, the first ones and those that replace workers the token layer gave
/// up on (stuck in a module call that will not return, see
/// [`Token::on_workers_abandoned`]).
struct Crew {
    queue: Arc<FairQueue>,
    /// Weak: the token holds the replacement listener, which holds the crew.
    token: Option<Weak<Token>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Names the next thread.
    next: AtomicUsize,
    /// Workers given up on whose threads have not ended (their call never returned).
    stuck: AtomicUsize,
    /// The most stuck workers replaced: past it, capacity shrinks rather than threads grow.
    max_stuck: usize,
}

impl Crew {
    fn spawn(self: &Arc<Self>) -> std::io::Result<()> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let crew = Arc::clone(self);
        let token = self.token.as_ref().and_then(Weak::upgrade);
        let thread = std::thread::Builder::new()
            .name(format!("token-worker-{i}"))
            .spawn(move || {
                let guard = token.as_ref().map(|t| t.attach_worker());
                drop(token);
                loop {
                    match crew.queue.pop(IDLE_TICK) {
                        Next::Job(job) => {
                            // A panicking operation drops its reply channel (the caller gets
                            // an error); the worker itself stays.
                            if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                                tracing::error!("a token operation panicked; its request failed");
                            }
                            crew.queue.finished();
                        }
                        Next::Idle => {}
                        Next::Closed => break,
                    }
                    if let Some(guard) = &guard {
                        if guard.abandoned() {
                            // Replaced while stuck in the module; its call came back at last.
                            crew.stuck.fetch_sub(1, Ordering::SeqCst);
                            tracing::info!("a token worker given up on came back; it ends");
                            break;
                        }
                        guard.idle();
                    }
                }
            })?;
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
        Ok(())
    }

    /// `count` workers were given up on: start as many new ones, up to [`Crew::max_stuck`].
    fn replace(self: &Arc<Self>, count: usize) {
        for _ in 0..count {
            if self.stuck.fetch_add(1, Ordering::SeqCst) >= self.max_stuck {
                self.stuck.fetch_sub(1, Ordering::SeqCst);
                tracing::error!(
                    stuck = self.max_stuck,
                    "too many token workers are stuck in the PKCS#11 module to replace another: signerd runs with fewer workers; restart it to get them back"
                );
                return;
            }
            if let Err(e) = self.spawn() {
                self.stuck.fetch_sub(1, Ordering::SeqCst);
                tracing::error!(error = %e, "starting a token worker in place of a stuck one");
                return;
            }
        }
    }
}

impl TokenWorkers {
    /// Starts `count` workers (at least one) with a queue of `count * QUEUE_PER_WORKER` per
    /// lane; each owns a session of `token` (none in unit tests that run no token operation).
    /// A worker the token layer gives up on is replaced by a new thread (up to `count` stuck
    /// ones at a time).
    /// The last worker to go idle polls the queue for up to `max_poll` before it sleeps.
    pub(crate) fn start(
        count: usize,
        token: Option<Arc<Token>>,
        max_poll: Duration,
    ) -> std::io::Result<TokenWorkers> {
        let count = count.max(1);
        let queue = Arc::new(FairQueue::new(count * QUEUE_PER_WORKER, max_poll));
        let crew = Arc::new(Crew {
            queue: Arc::clone(&queue),
            token: token.as_ref().map(Arc::downgrade),
            threads: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            stuck: AtomicUsize::new(0),
            max_stuck: count,
        });
        for _ in 0..count {
            crew.spawn()?;
        }
        if let Some(token) = &token {
            let crew = Arc::downgrade(&crew);
            token.on_workers_abandoned(Box::new(move |n| {
                if let Some(crew) = crew.upgrade() {
                    crew.replace(n);
                }
            }));
        }
        Ok(TokenWorkers {
            inner: Arc::new(Inner { queue, crew, count }),
        })
    }

    /// Worker threads.
    pub(crate) fn count(&self) -> usize {
        self.inner.count
    }

    /// Requests that may wait for a worker on one lane (one client connection).
    pub(crate) fn capacity(&self) -> usize {
        self.inner.queue.per_lane
    }

    /// Requests waiting for a worker now, on every lane.
    pub(crate) fn queue_depth(&self) -> usize {
        self.inner.queue.waiting()
    }

    /// Runs `op` on a worker in `lane`'s turn and waits for its answer; refuses at once when the
    /// lane's queue or the whole queue is full.
    pub(crate) async fn run<T, E>(
        &self,
        lane: u64,
        token: Arc<Token>,
        op: impl FnOnce(&Token) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<TokenError> + Send + 'static,
    {
        self.execute(lane, move || op(&token)).await
    }

    /// Queues `op` on `lane` and waits for its answer on a oneshot channel.
    async fn execute<T, E>(
        &self,
        lane: u64,
        op: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<TokenError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A caller that gave up (cancelled, or answered unavailable while the token hung)
            // is not worked for.
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(op());
        });
        match self.inner.queue.push(lane, job) {
            Ok(()) => {}
            // "all N token sessions stayed busy; raise token.sessions or reduce load".
            Err(Refused::Full) => return Err(TokenError::PoolExhausted(self.count()).into()),
            Err(Refused::Closed) => {
                return Err(TokenError::Cryptoki("token workers stopped".into()).into())
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(TokenError::Cryptoki("the token operation failed (see the log)".into()).into())
        })
    }
}

/// How long dropping the workers waits for their threads: a thread stuck in a hung module is
/// left behind (the process is ending).
const JOIN_TIMEOUT: Duration = Duration::from_secs(2);

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends each worker's loop once the queue is drained.
        self.queue.close();
        let threads = std::mem::take(
            &mut *self
                .crew
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let deadline = std::time::Instant::now() + JOIN_TIMEOUT;
        for thread in threads {
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl std::fmt::Debug for TokenWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenWorkers")
            .field("workers", &self.count())
            .field("per_lane", &self.inner.queue.per_lane)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test]
    async fn answers_come_back_from_the_workers() {
        let workers = TokenWorkers::start(2, None, crate::config::defaults::IDLE_POLL).unwrap();
        let name = workers
            .execute(LOCAL_LANE, || {
                Ok::<_, TokenError>(std::thread::current().name().map(str::to_owned))
            })
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("token-worker-"));
    }

    // Multi-threaded: the test blocks its own thread while the spawned requests get queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_at_once_and_work_resumes_after() {
        let workers = TokenWorkers::start(1, None, crate::config::defaults::IDLE_POLL).unwrap();
        let (release, blocker) = hold_the_worker(&workers).await;
        // Fill the queue behind it.
        let queued: Vec<_> = (0..QUEUE_PER_WORKER)
            .map(|i| {
                let workers = workers.clone();
                tokio::spawn(async move {
                    workers
                        .execute(LOCAL_LANE, move || Ok::<_, TokenError>(i))
                        .await
                })
            })
            .collect();
        // Let every queued request reach the queue.
        while workers.queue_depth() < QUEUE_PER_WORKER {
            tokio::task::yield_now().await;
        }
        let refused = workers
            .execute(LOCAL_LANE, || Ok::<_, TokenError>(()))
            .await
            .unwrap_err();
        assert!(matches!(refused, TokenError::PoolExhausted(1)), "{refused}");
        assert!(refused.to_string().contains("reduce load"));

        release.send(()).unwrap();
        blocker.await.unwrap();
        for (i, q) in queued.into_iter().enumerate() {
            assert_eq!(q.await.unwrap().unwrap(), i);
        }
        workers
            .execute(LOCAL_LANE, || Ok::<_, TokenError>(()))
            .await
            .unwrap();
    }

    /// Holds the only worker of `workers` until the returned sender is used.
    async fn hold_the_worker(
        workers: &TokenWorkers,
    ) -> (mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, held) = mpsc::channel::<()>();
        let (started, wait_started) = mpsc::channel::<()>();
        let workers = workers.clone();
        let blocker = tokio::spawn(async move {
            workers
                .execute(LOCAL_LANE, move || {
                    started.send(()).unwrap();
                    held.recv().unwrap();
                    Ok::<_, TokenError>(())
                })
                .await
                .unwrap()
        });
        wait_started.recv().unwrap();
        (release, blocker)
    }

    // A connection with its whole lane full does not go ahead of another connection's one
    // request: the workers take the lanes in turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lanes_take_turns_so_a_full_lane_does_not_starve_another() {
        let workers = TokenWorkers::start(1, None, crate::config::defaults::IDLE_POLL).unwrap();
        let (release, blocker) = hold_the_worker(&workers).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let queue = |lane: u64, n: usize| {
            let workers = workers.clone();
            let order = Arc::clone(&order);
            tokio::spawn(async move {
                workers
                    .execute(lane, move || {
                        order.lock().unwrap().push((lane, n));
                        Ok::<_, TokenError>(())
                    })
                    .await
            })
        };
        let flood: Vec<_> = (0..QUEUE_PER_WORKER).map(|n| queue(1, n)).collect();
        while workers.queue_depth() < QUEUE_PER_WORKER {
            tokio::task::yield_now().await;
        }
        // The flood's lane is full: its next request is refused, another lane's is not.
        let refused = workers
            .execute(1, || Ok::<_, TokenError>(()))
            .await
            .unwrap_err();
        assert!(matches!(refused, TokenError::PoolExhausted(1)), "{refused}");
        let other = queue(2, 0);
        while workers.queue_depth() < QUEUE_PER_WORKER + 1 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        blocker.await.unwrap();
        other.await.unwrap().unwrap();
        for f in flood {
            f.await.unwrap().unwrap();
        }
        let order = order.lock().unwrap();
        let at = order.iter().position(|&(lane, _)| lane == 2).unwrap();
        assert!(
            at <= 1,
            "the other lane's request ran after {at} of the flood's: {order:?}"
        );
        assert_eq!(order.len(), QUEUE_PER_WORKER + 1);
    }

    #[tokio::test]
    async fn a_panicking_operation_fails_its_request_and_the_worker_stays() {
        let workers = TokenWorkers::start(1, None, crate::config::defaults::IDLE_POLL).unwrap();
        let failed = workers
            .execute(LOCAL_LANE, || -> Result<(), TokenError> {
                panic!("operation bug")
            })
            .await
            .unwrap_err();
        assert!(matches!(failed, TokenError::Cryptoki(_)), "{failed}");
        workers
            .execute(LOCAL_LANE, || Ok::<_, TokenError>(()))
            .await
            .unwrap();
    }

    /// Waits until `check` holds of the queue (a worker thread gets there on its own).
    fn until(workers: &TokenWorkers, what: &str, check: impl Fn(&FairQueue) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check(&workers.inner.queue) {
            assert!(Instant::now() < deadline, "waited 10 s until {what}");
            std::thread::yield_now();
        }
    }

    fn wakeups(workers: &TokenWorkers) -> usize {
        workers.inner.queue.wakeups.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_polling_worker_takes_the_next_job_without_a_wakeup() {
        let workers = TokenWorkers::start(1, None, Duration::from_secs(30)).unwrap();
        until(&workers, "the idle worker polls", |q| {
            q.polling.load(Ordering::SeqCst)
        });
        let woken = wakeups(&workers);
        for i in 0..3 {
            let answer = workers
                .execute(LOCAL_LANE, move || Ok::<_, TokenError>(i))
                .await
                .unwrap();
            assert_eq!(answer, i);
            // Its job done, the worker polls again: the job came within the window.
            until(&workers, "the worker polls again", |q| {
                q.polling.load(Ordering::SeqCst)
            });
        }
        assert_eq!(wakeups(&workers), woken, "a job woke a sleeping worker");
    }

    // Multi-threaded: the first job holds its worker until the second one runs on the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_job_while_the_poller_is_busy_wakes_a_sleeping_worker() {
        let workers = TokenWorkers::start(2, None, Duration::from_secs(30)).unwrap();
        until(&workers, "an idle worker polls", |q| {
            q.polling.load(Ordering::SeqCst)
        });
        until(&workers, "the other sleeps", |q| q.lock().sleeping == 1);
        let woken = wakeups(&workers);
        let (ran, second_ran) = mpsc::channel::<()>();
        let first = {
            let workers = workers.clone();
            tokio::spawn(async move {
                workers
                    .execute(LOCAL_LANE, move || {
                        Ok::<_, TokenError>(second_ran.recv_timeout(Duration::from_secs(10)))
                    })
                    .await
            })
        };
        until(&workers, "the poller takes the first job", |q| {
            q.busy.load(Ordering::SeqCst) == 1
        });
        workers
            .execute(LOCAL_LANE, move || {
                ran.send(()).unwrap();
                Ok::<_, TokenError>(())
            })
            .await
            .unwrap();
        first.await.unwrap().unwrap().unwrap();
        assert_eq!(
            wakeups(&workers),
            woken + 1,
            "the first job went to the poller, the second woke the sleeping worker"
        );
    }

    #[test]
    fn the_poller_takes_one_job_without_a_wakeup_and_the_next_job_wakes_a_worker() {
        let queue = FairQueue::new(4, crate::config::defaults::IDLE_POLL);
        // As a worker that sleeps, and another that polls.
        queue.lock().sleeping = 1;
        queue.polling.store(true, Ordering::SeqCst);
        assert!(queue.push(LOCAL_LANE, Box::new(|| ())).is_ok());
        assert_eq!(queue.wakeups.load(Ordering::SeqCst), 0);
        assert!(
            !queue.polling.load(Ordering::SeqCst),
            "the push ends the poll"
        );
        assert!(queue.push(LOCAL_LANE, Box::new(|| ())).is_ok());
        assert_eq!(queue.wakeups.load(Ordering::SeqCst), 1);
        assert_eq!(queue.waiting(), 2);
    }

    #[test]
    fn a_job_pushed_while_no_worker_sleeps_wakes_none() {
        let queue = FairQueue::new(4, crate::config::defaults::IDLE_POLL);
        // Every worker busy: none polls, none sleeps.
        for _ in 0..3 {
            assert!(queue.push(LOCAL_LANE, Box::new(|| ())).is_ok());
        }
        assert_eq!(queue.wakeups.load(Ordering::SeqCst), 0);
        assert_eq!(queue.waiting(), 3);
    }

    // Multi-threaded: the job is pushed from the runtime while the worker thread sleeps.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sleeping_worker_is_woken_for_a_job() {
        // No polling: the idle worker goes straight to sleep.
        let workers = TokenWorkers::start(1, None, Duration::ZERO).unwrap();
        until(&workers, "the idle worker sleeps", |q| {
            q.lock().sleeping == 1
        });
        let answer = workers
            .execute(LOCAL_LANE, || Ok::<_, TokenError>(7))
            .await
            .unwrap();
        assert_eq!(answer, 7);
        assert_eq!(wakeups(&workers), 1);
    }

    #[test]
    fn dropping_the_last_handle_joins_the_workers() {
        let workers = TokenWorkers::start(3, None, crate::config::defaults::IDLE_POLL).unwrap();
        assert_eq!(workers.count(), 3);
        assert_eq!(workers.capacity(), 3 * QUEUE_PER_WORKER);
        drop(workers);
    }
}
