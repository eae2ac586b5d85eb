//! Admission: how many key operations of the Notary port run at once, and whose turn is next.
//!
//! A key operation costs signerd's CPU (TLS, HTTP/2, decoding, the reply) before and after the
//! token's part. One client that keeps its connection's 128 streams full would otherwise take
//! the runtime's CPU in proportion to its open streams, and a client beside it with 8 calls in
//! flight would get a few percent of it. Here a bounded number of operations run at once
//! ([`Admission::for_workers`]: enough to keep every token worker and the runtime's threads
//! busy, 8 per worker while the lanes batch, below, and 4 beside a lighter lane); the others
//! wait, undecoded, in their connection's lane, and a freed place goes to the next lane in
//! turn. No lane holds more than its share of the places (the places divided by the
//! active lanes, rounded down) while another lane is active. A lane is active while it holds
//! or waits for a place and for [`RECENT`] after it freed its last one: a client with a few
//! calls in flight holds none for a moment between its calls, and a connection that keeps 128
//! streams full must not take its places then, or that client's calls wait behind its own on
//! the runtime. One connection alone (notary-server) still gets every place.
//!
//! The active lanes also set the runtime threads' CPU policy and whether a connection's
//! answers are written together ([`Admission::informing`], [`crate::scheduling`],
//! [`crate::coalesce`]): batching while one lane is active, or several that each want more
//! than their share of the places (they hold it and more calls wait), none more than twice
//! what another wants; not while a lighter lane is active beside another.
//!
//! Waiting calls are bounded by the HTTP/2 limits (`server.max_concurrent_streams` per
//! connection, `server.max_connections`) and by `server.request_timeout`; no lock is held
//! across an await.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tonic::server::NamedService;
use tower_layer::Layer;
use tower_service::Service;

use super::identity::Lane;
use super::operation::Operation;
use super::record::Port;
use crate::scheduling::Scheduling;

/// The places for key operations, shared by every connection of a port. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Admission {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    places: Places,
    /// Whether the token is up. While it is down no call waits for a place: each goes straight
    /// on to the key store, which answers UNAVAILABLE within `token.unavailable_after_ms`;
    /// places held by calls that wait out that bound must not add a second wait to it.
    serving: Option<tokio::sync::watch::Receiver<bool>>,
}

/// How many key operations run at once: more while the active lanes batch (longer batches for
/// the token workers, fewer thread switches), fewer while a lighter lane is active beside
/// another (its calls wait behind fewer of the others').
#[derive(Clone, Copy, Debug)]
struct Places {
    batching: usize,
    mixed: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Places free, of [`Places::batching`].
    free: usize,
    /// Calls waiting, one FIFO per lane.
    waiting: HashMap<u64, VecDeque<oneshot::Sender<()>>>,
    /// Lanes with calls waiting, in the order of their next turn.
    turns: VecDeque<u64>,
    /// Places held, per lane that holds any.
    held: HashMap<u64, usize>,
    /// Lanes that neither hold nor wait now, with when they freed their last place: still
    /// active until [`RECENT`] after that.
    recent: HashMap<u64, Instant>,
    /// Told whether the active lanes batch (the runtime threads' CPU policy and the
    /// coalescing of answers follow it).
    scheduling: Option<Scheduling>,
}

/// Places per token worker while the active lanes batch. Each batch of work the runtime thread
/// hands the workers is at most the places, so the count sets how often a core shared by the
/// runtime thread and the workers switches between them: with 8 rather than 4, signerd pinned
/// to one core switched half as often (0.12 context switches per ECDSA request against
/// 0.23-0.25) and its runtime thread spent 14.3-16.8 µs per request against 16.3-20.3
/// (docs/performance.md, "Longer batches for the workers").
pub const PLACES_PER_WORKER: usize = 8;

/// Places per token worker while a lighter lane is active beside another: with 8, a
/// connection that keeps its streams full held twice as many places beside `hostile_input`'s
/// normal client, whose share of its own rate fell to 57-85 % (median 64 %, 10 runs) from
/// 67-81 % (median 71 %).
pub const MIXED_PLACES_PER_WORKER: usize = 4;

/// How long a lane that freed its last place still counts as active. A client with a few calls
/// in flight holds no place for a moment between its calls (its network round trip and its
/// own work: on a loaded machine of two cores, milliseconds). Were it inactive then, the share
/// of a connection that keeps its streams full would widen each time, and that connection
/// would take the client's places ("deceptive idleness"). A lane quiet for longer leaves its
/// share to the others (from their next admission or release on).
const RECENT: Duration = Duration::from_millis(20);

/// The most places one of `active` lanes may hold: all of them when it is alone, else an even
/// share rounded down (at least one).
fn share_of(places: usize, active: usize) -> usize {
    if active <= 1 {
        places
    } else {
        (places / active).max(1)
    }
}

impl State {
    /// Lanes that hold a place, wait for one, or freed their last one less than [`RECENT`]
    /// ago (those quiet for longer are forgotten here).
    fn active(&mut self) -> usize {
        let now = Instant::now();
        self.recent
            .retain(|_, freed| now.duration_since(*freed) < RECENT);
        self.held.len()
            + self
                .waiting
                .keys()
                .filter(|l| !self.held.contains_key(l))
                .count()
            + self.recent.len()
    }

    /// Whether `lane` may take a place now, none waiting before it: under its share among the
    /// active lanes (`lane` counted among them), and fewer places held than are open.
    fn may_take(&mut self, places: Places, lane: u64) -> bool {
        if !self.turns.is_empty() {
            return false;
        }
        let active = self.active();
        let newcomer = !self.held.contains_key(&lane)
            && !self.waiting.contains_key(&lane)
            && !self.recent.contains_key(&lane);
        let active = active + usize::from(newcomer);
        let open = self.decide(places, active, newcomer);
        self.holds(lane) < share_of(open, active) && self.in_use(places) < open
    }

    /// Places held, by every lane.
    fn in_use(&self, places: Places) -> usize {
        places.batching - self.free
    }

    /// Whether the `active` lanes batch: one alone, or each wanting more than its share of
    /// the batching places, evenly; never beside a `newcomer` (wanting one call). Tells
    /// [`State::scheduling`] and returns how many places are open: the mixed count while they
    /// do not.
    fn decide(&self, places: Places, active: usize, newcomer: bool) -> usize {
        let batching =
            active <= 1 || (!newcomer && self.saturated_evenly(share_of(places.batching, active)));
        if let Some(scheduling) = &self.scheduling {
            scheduling.set_batching(batching);
        }
        if batching {
            places.batching
        } else {
            places.mixed
        }
    }

    /// Every active lane wants more than `share` places (calls held and waiting), and none
    /// more than twice what another wants: lanes behind a load balancer, or several busy
    /// notary-servers. A lane quiet between its calls wants none.
    fn saturated_evenly(&self, share: usize) -> bool {
        if !self.recent.is_empty() {
            return false;
        }
        let wants =
            |lane: &u64| self.holds(*lane) + self.waiting.get(lane).map_or(0, VecDeque::len);
        let (mut least, mut most) = (usize::MAX, 0);
        let lanes = self.held.keys().chain(
            self.waiting
                .keys()
                .filter(|lane| !self.held.contains_key(lane)),
        );
        for lane in lanes {
            let wanted = wants(lane);
            least = least.min(wanted);
            most = most.max(wanted);
        }
        least > share && most <= least.saturating_mul(2)
    }

    fn holds(&self, lane: u64) -> usize {
        self.held.get(&lane).copied().unwrap_or(0)
    }

    fn take(&mut self, lane: u64) {
        self.free -= 1;
        self.recent.remove(&lane);
        *self.held.entry(lane).or_default() += 1;
    }

    /// Hands free places to the waiting lanes in turn, skipping (but keeping the turn of) a
    /// lane that holds its share.
    fn dispatch(&mut self, places: Places) {
        // Every lane in turn waits, so is active; the share is counted once (a lane that goes
        // idle meanwhile, its waiters cancelled, widens it from the next release on).
        let active = self.active();
        let open = self.decide(places, active, false);
        let share = share_of(open, active);
        let mut skipped = 0;
        while self.in_use(places) < open && skipped < self.turns.len() {
            let Some(lane) = self.turns.pop_front() else {
                break;
            };
            if !self.waiting.contains_key(&lane) {
                continue;
            }
            if self.holds(lane) >= share {
                self.turns.push_back(lane);
                skipped += 1;
                continue;
            }
            let queue = self.waiting.get_mut(&lane).expect("checked above");
            let next = queue.pop_front();
            if queue.is_empty() {
                self.waiting.remove(&lane);
            } else {
                self.turns.push_back(lane);
            }
            skipped = 0;
            // A waiter that gave up (its call was cancelled) dropped its receiver: next.
            if next.is_some_and(|waiter| waiter.send(()).is_ok()) {
                self.take(lane);
            }
        }
    }
}

/// One admitted operation; dropping it frees its place for the next lane in turn.
#[derive(Debug)]
pub struct Admitted {
    inner: Arc<Shared>,
    lane: u64,
}

impl Admission {
    /// `places` operations at once (at least one).
    pub fn new(places: usize) -> Admission {
        Admission::with(
            Places {
                batching: places,
                mixed: places,
            },
            None,
            None,
        )
    }

    /// The same admission, letting every call through while `serving` says the token is down.
    pub fn following(self, serving: tokio::sync::watch::Receiver<bool>) -> Admission {
        let scheduling = self.inner.lock().scheduling.clone();
        Admission::with(self.inner.places, Some(serving), scheduling)
    }

    /// The same admission, telling `scheduling` whether the active connections batch (the
    /// runtime threads run under `SCHED_BATCH` while they do, [`crate::scheduling`]).
    pub fn informing(self, scheduling: Scheduling) -> Admission {
        let serving = self.inner.serving.clone();
        Admission::with(self.inner.places, serving, Some(scheduling))
    }

    /// What this admission tells whether the active connections batch (a fresh
    /// [`Scheduling`], which always says they do, when it tells none).
    pub fn scheduling(&self) -> Scheduling {
        self.inner.lock().scheduling.clone().unwrap_or_default()
    }

    fn with(
        places: Places,
        serving: Option<tokio::sync::watch::Receiver<bool>>,
        scheduling: Option<Scheduling>,
    ) -> Admission {
        let batching = places.batching.max(1);
        let places = Places {
            batching,
            mixed: places.mixed.clamp(1, batching),
        };
        Admission {
            inner: Arc::new(Shared {
                state: Mutex::new(State {
                    free: places.batching,
                    scheduling,
                    ..State::default()
                }),
                places,
                serving,
            }),
        }
    }

    /// The places for a server whose token has `workers` workers: [`PLACES_PER_WORKER`] per
    /// worker while the lanes batch, [`MIXED_PLACES_PER_WORKER`] while a lighter one is active
    /// beside another (one operation signing while the others are read, queued and answered),
    /// plus one per core (26 and 14 with 3 workers on 2 cores): one connection alone keeps the
    /// token busy, and a client with 128 streams open still holds only its turn's share.
    pub fn for_workers(workers: usize) -> Admission {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Admission::with(
            Places {
                batching: PLACES_PER_WORKER * workers + cores,
                mixed: MIXED_PLACES_PER_WORKER * workers + cores,
            },
            None,
            None,
        )
    }

    /// Operations that may run at once while the lanes batch (fewer while they do not).
    pub fn places(&self) -> usize {
        self.inner.places.batching
    }

    /// Waits for a place in `lane`'s turn; `None` (no place needed) while the token is down.
    pub async fn admit(&self, lane: Lane) -> Option<Admitted> {
        let mut serving = self.inner.serving.clone();
        if serving.as_ref().is_some_and(|s| !*s.borrow()) {
            return None;
        }
        let receiver = {
            let mut state = self.inner.lock();
            if state.may_take(self.inner.places, lane.0) {
                state.take(lane.0);
                return Some(Admitted {
                    inner: Arc::clone(&self.inner),
                    lane: lane.0,
                });
            }
            let (sender, receiver) = oneshot::channel();
            let state = &mut *state;
            state.recent.remove(&lane.0);
            let queue = state.waiting.entry(lane.0).or_default();
            if queue.is_empty() {
                state.turns.push_back(lane.0);
            }
            queue.push_back(sender);
            // Free places may wait for a lane under its share (this one, arriving).
            state.dispatch(self.inner.places);
            receiver
        };
        let mut wait = Waiting {
            receiver: Some(receiver),
            inner: Arc::clone(&self.inner),
            lane: lane.0,
        };
        let receiver = wait.receiver.as_mut().expect("set above");
        let down = async {
            match serving.as_mut() {
                Some(s) => {
                    let _ = s.wait_for(|up| !*up).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // The sender is only dropped unsent when the admission itself goes: admit anyway.
            _ = receiver => {}
            // The token went down while this call waited: on without a place (`wait` passes
            // one handed over meanwhile on when dropped).
            () = down => return None,
        }
        wait.receiver = None;
        Some(Admitted {
            inner: Arc::clone(&self.inner),
            lane: lane.0,
        })
    }
}

impl Shared {
    /// The lock; nothing panics under it, so a poisoned lock still holds consistent lanes.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees a place `lane` held and hands it (and any place the lane's smaller share frees
    /// up) to the waiting lanes in turn, or keeps it free.
    fn release(&self, lane: u64) {
        let mut state = self.lock();
        if let Some(held) = state.held.get_mut(&lane) {
            *held -= 1;
            if *held == 0 {
                state.held.remove(&lane);
                if !state.waiting.contains_key(&lane) {
                    state.recent.insert(lane, Instant::now());
                }
            }
        }
        state.free += 1;
        state.dispatch(self.places);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.inner.release(self.lane);
    }
}

/// A call waiting for its place; one cancelled after its place was handed over passes the
/// place on.
struct Waiting {
    receiver: Option<oneshot::Receiver<()>>,
    inner: Arc<Shared>,
    lane: u64,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                self.inner.release(self.lane);
            }
        }
    }
}

/// Makes [`Admit`]: key operations of the Notary port wait for a place; other calls (health,
/// the admin port) do not.
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    port: Port,
    admission: Admission,
}

impl AdmissionLayer {
    /// Admits the key operations of `port` through `admission`.
    pub fn new(port: Port, admission: Admission) -> AdmissionLayer {
        AdmissionLayer { port, admission }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit {
            inner,
            port: self.port,
            admission: self.admission.clone(),
        }
    }
}

/// The service [`AdmissionLayer`] makes.
#[derive(Clone, Debug)]
pub struct Admit<S> {
    inner: S,
    port: Port,
    admission: Admission,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for Admit<S>
where
    S: Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        // The admin port's callers are local and few; its streams may stay open long.
        if self.port != Port::Notary || Operation::of_method(self.port, method).is_none() {
            return Box::pin(self.inner.call(request));
        }
        let lane = request
            .extensions()
            .get::<Lane>()
            .copied()
            .unwrap_or(Lane::LOCAL);
        let admission = self.admission.clone();
        // The ready clone is the one called; a fresh clone waits for readiness again.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let _place = admission.admit(lane).await;
            inner.call(request).await
        })
    }
}

impl<S: NamedService> NamedService for Admit<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admits on `lane` in a task; the task ends (and frees the place) when `done` fires.
    fn hold(
        admission: &Admission,
        lane: u64,
        order: &Arc<Mutex<Vec<u64>>>,
    ) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let (done, finished) = oneshot::channel::<()>();
        let admission = admission.clone();
        let order = Arc::clone(order);
        let task = tokio::spawn(async move {
            let _place = admission.admit(Lane(lane)).await.unwrap();
            order.lock().unwrap().push(lane);
            let _ = finished.await;
        });
        (done, task)
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// The scheduling is told the lanes do not batch while a second, light lane is active, and
    /// that they do once that lane has been quiet for [`RECENT`].
    #[tokio::test]
    async fn the_scheduling_follows_the_active_lanes() {
        let scheduling = Scheduling::new();
        let admission = Admission::new(4).informing(scheduling.clone());
        let batch = crate::scheduling::Policy::Batch;
        let order = Arc::new(Mutex::new(Vec::new()));
        let (first, first_task) = hold(&admission, 1, &order);
        settle().await;
        assert_eq!(scheduling.wanted(), batch, "one lane");
        let (second, second_task) = hold(&admission, 2, &order);
        settle().await;
        assert_eq!(
            scheduling.wanted(),
            crate::scheduling::Policy::Other,
            "two lanes"
        );
        second.send(()).unwrap();
        second_task.await.unwrap();
        tokio::time::sleep(RECENT * 2).await;
        // Lane 1's next admission finds lane 2 gone.
        let (again, again_task) = hold(&admission, 1, &order);
        settle().await;
        assert_eq!(scheduling.wanted(), batch, "lane 2 quiet");
        for (done, task) in [(first, first_task), (again, again_task)] {
            done.send(()).unwrap();
            task.await.unwrap();
        }
    }

    /// Lanes that each want more than their share, evenly, batch; a lighter lane beside them
    /// (a newcomer, or one wanting less than half of another) does not.
    #[tokio::test]
    async fn even_saturated_lanes_batch_and_a_lighter_lane_beside_them_does_not() {
        let scheduling = Scheduling::new();
        // Four places: a share of two each for two lanes.
        let admission = Admission::new(4).informing(scheduling.clone());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut calls = Vec::new();
        let mut add = |lane, count| {
            calls.extend((0..count).map(|_| hold(&admission, lane, &order)));
        };
        add(1, 8);
        settle().await;
        assert!(scheduling.batching(), "one lane alone");
        add(2, 1);
        settle().await;
        assert!(
            !scheduling.batching(),
            "lane 2 wants one call beside lane 1's eight"
        );
        add(2, 2);
        settle().await;
        assert!(
            !scheduling.batching(),
            "lane 2 wants three, over its share but less than half of lane 1's eight"
        );
        add(2, 3);
        settle().await;
        assert!(scheduling.batching(), "eight and six, over a share of two");
        add(3, 1);
        settle().await;
        assert!(!scheduling.batching(), "a third lane arrives with one call");
        for (done, task) in calls {
            drop(done);
            task.await.unwrap();
        }
    }

    /// Beside a lighter lane only the mixed count of places is open: a place freed while more
    /// than that are held stays closed.
    #[tokio::test]
    async fn beside_a_lighter_lane_only_the_mixed_places_are_open() {
        let admission = Admission::with(
            Places {
                batching: 4,
                mixed: 2,
            },
            None,
            None,
        );
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut first: Vec<_> = (0..4).map(|_| hold(&admission, 1, &order)).collect();
        settle().await;
        assert_eq!(
            order.lock().unwrap().len(),
            4,
            "alone, lane 1 batches: 4 places"
        );
        let (second, second_task) = hold(&admission, 2, &order);
        settle().await;
        for held in [3, 2] {
            let (done, task) = first.pop().unwrap();
            done.send(()).unwrap();
            task.await.unwrap();
            settle().await;
            assert_eq!(
                *order.lock().unwrap(),
                vec![1; 4],
                "{held} held by lane 1, of 2 open beside lane 2: the freed place stays closed"
            );
        }
        let (done, task) = first.pop().unwrap();
        done.send(()).unwrap();
        task.await.unwrap();
        settle().await;
        assert_eq!(
            *order.lock().unwrap(),
            vec![1, 1, 1, 1, 2],
            "one held, one open"
        );
        for (done, task) in first.into_iter().chain([(second, second_task)]) {
            done.send(()).unwrap();
            task.await.unwrap();
        }
    }

    #[tokio::test]
    async fn freed_places_go_to_the_lanes_in_turn() {
        let admission = Admission::new(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let (first, first_task) = hold(&admission, 1, &order);
        settle().await;
        // Lane 1 queues ten more calls, then lane 2 one.
        let flood: Vec<_> = (0..10).map(|_| hold(&admission, 1, &order)).collect();
        settle().await;
        let (other, other_task) = hold(&admission, 2, &order);
        settle().await;
        assert_eq!(*order.lock().unwrap(), vec![1], "one place, taken");

        first.send(()).unwrap();
        first_task.await.unwrap();
        settle().await;
        // Lane 1 queued first, so it has the next turn; then lane 2, not after ten of lane 1's.
        assert_eq!(*order.lock().unwrap(), vec![1, 1]);
        let mut flood = flood.into_iter();
        let (done, task) = flood.next().unwrap();
        done.send(()).unwrap();
        task.await.unwrap();
        settle().await;
        assert_eq!(*order.lock().unwrap(), vec![1, 1, 2]);
        other.send(()).unwrap();
        other_task.await.unwrap();
    }

    // A lane alone takes every place; once another lane is active, places freed go to the
    // lane under its share, even when the lane over it asked first.
    #[tokio::test]
    async fn a_lane_over_its_share_waits_while_another_lane_is_active() {
        let admission = Admission::new(4);
        let order = Arc::new(Mutex::new(Vec::new()));
        let first: Vec<_> = (0..4).map(|_| hold(&admission, 1, &order)).collect();
        settle().await;
        assert_eq!(
            order.lock().unwrap().len(),
            4,
            "alone, lane 1 holds every place"
        );
        // Lane 1 asks for more before lane 2 asks for three.
        let more: Vec<_> = (0..3).map(|_| hold(&admission, 1, &order)).collect();
        settle().await;
        let other: Vec<_> = (0..3).map(|_| hold(&admission, 2, &order)).collect();
        settle().await;
        // Two of lane 1's calls end: lane 1 then holds two, its share of four places between
        // two lanes, so both places go to lane 2.
        let mut first = first.into_iter();
        for _ in 0..2 {
            let (done, task) = first.next().unwrap();
            done.send(()).unwrap();
            task.await.unwrap();
            settle().await;
        }
        assert_eq!(order.lock().unwrap()[4..], [2, 2]);
        assert_eq!(admission.inner.lock().holds(1), 2);
        for (done, task) in first.chain(more).chain(other) {
            let _ = done.send(());
            task.await.unwrap();
        }
        assert_eq!(admission.inner.lock().free, 4);
    }

    // A lane that freed its last place keeps its share for RECENT: the lane that waits for more
    // does not get the freed places then, and the first lane's next call gets one at once.
    // Once the first lane has been quiet for longer, the waiting lane gets every place.
    #[tokio::test]
    async fn a_lane_between_its_calls_keeps_its_share_for_a_moment() {
        let admission = Admission::new(4);
        let order = Arc::new(Mutex::new(Vec::new()));
        let first: Vec<_> = (0..2).map(|_| hold(&admission, 1, &order)).collect();
        settle().await;
        let other: Vec<_> = (0..2).map(|_| hold(&admission, 2, &order)).collect();
        settle().await;
        // Lane 1 asks for two more; both lanes hold their share of two.
        let more: Vec<_> = (0..2).map(|_| hold(&admission, 1, &order)).collect();
        settle().await;
        assert_eq!(order.lock().unwrap().len(), 4);
        // Lane 2's calls end: it holds nothing now, but between its calls it stays active.
        for (done, task) in other {
            done.send(()).unwrap();
            task.await.unwrap();
        }
        settle().await;
        assert_eq!(order.lock().unwrap().len(), 4, "lane 1 still waits");
        assert_eq!(admission.inner.lock().free, 2);
        // Lane 2's next call gets its place at once, ahead of lane 1's waiting calls.
        let (again, again_task) = hold(&admission, 2, &order);
        settle().await;
        assert_eq!(order.lock().unwrap()[4..], [2]);
        again.send(()).unwrap();
        again_task.await.unwrap();
        // Lane 2 stays quiet for longer: at lane 1's next release its share is every place.
        tokio::time::sleep(RECENT + Duration::from_millis(10)).await;
        let mut first = first.into_iter();
        let (done, task) = first.next().unwrap();
        done.send(()).unwrap();
        task.await.unwrap();
        settle().await;
        assert_eq!(order.lock().unwrap()[5..], [1, 1]);
        assert_eq!(admission.inner.lock().holds(1), 3);
        for (done, task) in first.chain(more) {
            let _ = done.send(());
            task.await.unwrap();
        }
        assert_eq!(admission.inner.lock().free, 4);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_is_skipped_and_the_place_goes_on() {
        let admission = Admission::new(1);
        let held = admission.admit(Lane(1)).await.unwrap();
        let cancelled = tokio::spawn({
            let admission = admission.clone();
            async move {
                let _place = admission.admit(Lane(2)).await.unwrap();
                std::future::pending::<()>().await;
            }
        });
        settle().await;
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { drop(admission.admit(Lane(3)).await) }
        });
        settle().await;
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the place reached lane 3")
            .unwrap();
        // Every place is free again.
        let again = admission.admit(Lane(4)).await.unwrap();
        drop(again);
        assert_eq!(admission.inner.lock().free, 1);
    }

    #[tokio::test]
    async fn while_the_token_is_down_calls_pass_without_a_place() {
        let (state, serving) = tokio::sync::watch::channel(true);
        let admission = Admission::new(1).following(serving);
        let held = admission.admit(Lane(1)).await.expect("a place while up");
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(Lane(2)).await.is_none() }
        });
        settle().await;
        // The token goes down: the waiting call goes on without a place, and so do new ones.
        state.send_replace(false);
        assert!(waiting.await.unwrap(), "passed without a place");
        assert!(admission.admit(Lane(3)).await.is_none());
        state.send_replace(true);
        drop(held);
        assert!(admission.admit(Lane(4)).await.is_some());
    }
}
