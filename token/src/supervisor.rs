//! The token supervisor: one background thread per [`Token`](crate::Token) that owns
//! (re)connection, so no request ever reconnects, finalizes or initializes the module.
//!
//! States: **up** (a current connection; probed every [`PROBE_INTERVAL`] by a prober thread,
//! so a hung token is noticed even when no request is running), **draining** (a fault was
//! reported or a probe failed or hung: the generation is condemned, no new call starts on it,
//! and the supervisor waits until every call and session of it has ended; a call stuck in a
//! hung module is waited for however long it takes, the module is never finalized under it,
//! except once the module reported its device gone: a call still waiting (asleep, not working)
//! inside it [`QUIESCE_DEADLINE`] later never returns, so the module is re-initialized without
//! it, its sessions are forgotten rather than closed, and worker threads among those calls are
//! replaced through [`crate::AbandonListener`]s),
//! and **connecting** (find the slot, re-initialize the module when a plain retry does not see
//! the token, open a session and log in; failures back off from [`MIN_BACKOFF`] to
//! [`MAX_BACKOFF`]). A caller outside the workers that finds the token down kicks the
//! supervisor (an attempt now) and waits for the outcome.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags};
use cryptoki::error::{Error as CkError, RvError};

use crate::connection::{Connection, Core, OwnedSession};
use crate::error::{fault_of, CallError, ErrorKind, Fault, TokenError};

/// How often the supervisor checks a token that is up.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// How long a probe (`C_GetTokenInfo`) may take before the token counts as hung: with
/// [`PROBE_INTERVAL`], a token that stops answering is marked down within 600 ms (health
/// must say NOT_SERVING within 1 s, with room for a busy machine).
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// First wait between failed connection attempts.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Longest wait between failed connection attempts (a kick cuts it short).
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How often a draining supervisor looks whether the old generation has ended.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// How long calls of a generation whose module reported its device gone may stay inside the
/// module before they are given up on (when every one of them waits rather than works, for at
/// least [`QUIESCE_SETTLED`]): the module is then re-initialized without them. p11-kit-client
/// (0.24 to 0.26) leaves threads waiting forever on a server that died under them (a reply
/// header read for a call whose reader already failed wakes no one), so waiting without a
/// deadline would never reconnect.
pub(crate) const QUIESCE_DEADLINE: Duration = Duration::from_secs(2);

/// How long every remaining call must have been seen waiting before it is given up on.
const QUIESCE_SETTLED: Duration = Duration::from_millis(100);

/// The supervisor's shared state: what callers report and wait on.
pub(crate) struct Supervisor {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// A fault reported on a generation, not yet handled.
    fault: Option<(u64, Option<RvError>)>,
    /// A caller wants a connection attempt now.
    kick: bool,
    stop: bool,
    /// The supervisor thread has ended.
    stopped: bool,
    /// Connection attempts finished (successful or not).
    attempts: u64,
    /// Why the last attempt failed, or why the token went down.
    last_error: Option<TokenError>,
    /// Generations taken down whose calls and sessions have not all ended yet: nothing is
    /// (re)initialized while one is left.
    draining: Vec<Arc<Connection>>,
}

impl Supervisor {
    pub(crate) fn new() -> Supervisor {
        Supervisor {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call on generation `generation` met a token fault: the generation goes down now (so
    /// health and new requests see it at once) and the supervisor reconnects.
    pub(crate) fn report(&self, core: &Core, generation: u64, rv: Option<RvError>) {
        core.take_down(generation);
        let mut state = self.lock();
        if state.fault.is_none() {
            state.fault = Some((generation, rv));
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Why the token cannot be used now.
    pub(crate) fn down_error(&self) -> TokenError {
        match &self.lock().last_error {
            Some(e) => e.duplicate(),
            None => TokenError::Down {
                reason: "it is reconnecting".into(),
                kind: ErrorKind::Unavailable,
            },
        }
    }

    /// For callers outside the workers: asks for a connection attempt now and waits, up to
    /// `bound`, for the token to be up or for that attempt to fail.
    pub(crate) fn wait_up(
        &self,
        core: &Core,
        bound: Duration,
    ) -> Result<Arc<Connection>, TokenError> {
        let deadline = Instant::now() + bound;
        let mut state = self.lock();
        let seen = state.attempts;
        state.kick = true;
        self.changed.notify_all();
        loop {
            if let Some(conn) = core.current() {
                return Ok(conn);
            }
            if state.attempts > seen || state.stopped {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(state);
        core.current().ok_or_else(|| self.down_error())
    }

    /// Waits up to `timeout` for a report, a kick or a stop.
    fn wait_event(&self, timeout: Duration) -> Event {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.stop {
                return Event::Stop;
            }
            if let Some(fault) = state.fault.take() {
                return Event::Fault(fault.0, fault.1);
            }
            if std::mem::take(&mut state.kick) {
                return Event::Kick;
            }
            let now = Instant::now();
            if now >= deadline {
                return Event::Timeout;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn finish_attempt(&self, error: Option<TokenError>) {
        let mut state = self.lock();
        state.attempts += 1;
        state.last_error = error;
        drop(state);
        self.changed.notify_all();
    }

    /// The generations taken down were given up on (see [`Quiesce`]).
    fn forget_draining(&self) {
        self.lock().draining.clear();
    }

    /// Generation `conn` was taken down: it must drain before the next connection.
    pub(crate) fn drain(&self, conn: Arc<Connection>) {
        self.lock().draining.push(conn);
    }

    /// Calls and sessions still open on generations taken down; `(0, 0)` when none is left.
    fn undrained(&self) -> (usize, usize) {
        let mut state = self.lock();
        state.draining.retain(|c| !c.drained());
        state
            .draining
            .iter()
            .map(|c| c.in_flight())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// The threads inside calls on generations taken down, and whether each waits (asleep)
    /// rather than works.
    fn threads_in_old_calls(&self) -> Vec<(i32, bool)> {
        let draining: Vec<Arc<Connection>> = self.lock().draining.clone();
        draining
            .iter()
            .flat_map(|c| c.threads_in_calls())
            .map(|tid| (tid, crate::threads::is_waiting(tid)))
            .collect()
    }

    /// Gives up on every generation taken down: their sessions are forgotten from now on.
    fn abandon_draining(&self) {
        for conn in &self.lock().draining {
            conn.abandon();
        }
    }

    fn went_down(&self, why: TokenError) {
        self.lock().last_error = Some(why);
        self.changed.notify_all();
    }
}

/// Waiting for the calls of generations taken down to end before the module is re-initialized.
#[derive(Default)]
struct Quiesce {
    /// Since when the supervisor waits.
    draining_since: Option<Instant>,
    /// Since when every remaining call has been seen waiting (asleep in the kernel).
    all_waiting_since: Option<Instant>,
    /// The threads of the calls to give up on.
    stuck: Vec<i32>,
}

impl Quiesce {
    /// Whether to give up on the remaining calls: [`QUIESCE_DEADLINE`] has passed since the
    /// supervisor began to wait, and every thread still in a call has been waiting, not
    /// working, for [`QUIESCE_SETTLED`] (a module still computing, as a long key generation
    /// does, is never re-initialized under). Marks the generations abandoned first, then
    /// looks again: a session close that began before the mark shows there and is waited for.
    fn give_up(&mut self, sup: &Supervisor, since: Instant) -> bool {
        if since.elapsed() < QUIESCE_DEADLINE {
            return false;
        }
        let threads = sup.threads_in_old_calls();
        if !threads.iter().all(|(_, waiting)| *waiting) {
            self.all_waiting_since = None;
            return false;
        }
        let settled = self.all_waiting_since.get_or_insert_with(Instant::now);
        if settled.elapsed() < QUIESCE_SETTLED {
            return false;
        }
        sup.abandon_draining();
        let after = sup.threads_in_old_calls();
        if !after.iter().all(|(_, waiting)| *waiting) {
            self.all_waiting_since = None;
            return false;
        }
        self.stuck = after.into_iter().map(|(tid, _)| tid).collect();
        true
    }
}

enum Event {
    Stop,
    Fault(u64, Option<RvError>),
    Kick,
    Timeout,
}

/// The running supervisor thread.
pub(crate) struct SupervisorHandle {
    core: Arc<Core>,
    thread: Option<JoinHandle<()>>,
}

impl SupervisorHandle {
    /// Stops the supervisor; `false` when it did not end within a while (stuck in a module
    /// call), and then it is left to process exit.
    pub(crate) fn stop(mut self) -> bool {
        self.stop_and_wait()
    }

    fn stop_and_wait(&mut self) -> bool {
        self.signal_stop();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if self.thread.as_ref().is_none_or(JoinHandle::is_finished) {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    fn signal_stop(&self) {
        self.core.supervisor.lock().stop = true;
        self.core.supervisor.changed.notify_all();
    }
}

impl Drop for SupervisorHandle {
    fn drop(&mut self) {
        // Waited for (briefly: it may be inside a hung module call, then it ends at its next
        // look), so a dropped token lets go of the module before the next one loads it.
        self.stop_and_wait();
    }
}

/// Starts the supervisor (and its prober) for `core`; it connects at once.
pub(crate) fn start(core: Arc<Core>) -> std::io::Result<SupervisorHandle> {
    let prober = Prober::start(Arc::downgrade(&core))?;
    let thread = {
        let core = Arc::clone(&core);
        std::thread::Builder::new()
            .name("token-supervisor".into())
            .spawn(move || supervise(&core, prober))?
    };
    Ok(SupervisorHandle {
        core,
        thread: Some(thread),
    })
}

fn supervise(core: &Arc<Core>, mut prober: Prober) {
    let sup = &core.supervisor;
    // The connect-time session: keeps the user logged in while workers come and go.
    let mut anchor: Option<OwnedSession> = None;
    let mut reinit = false;
    let mut backoff = MIN_BACKOFF;
    let mut quiesce = Quiesce::default();
    loop {
        if let Some(conn) = core.current() {
            let down = match sup.wait_event(PROBE_INTERVAL) {
                Event::Stop => break,
                Event::Fault(generation, rv) if generation == conn.generation => Some((
                    rv.is_some_and(|rv| fault_of(rv) == Fault::Token),
                    TokenError::Down {
                        reason: format!("a call failed with {}", rv_text(rv)),
                        kind: ErrorKind::Unavailable,
                    },
                )),
                Event::Fault(..) | Event::Kick => None,
                Event::Timeout => match prober.probe(&conn, PROBE_TIMEOUT) {
                    Probe::Answered(Ok(())) => None,
                    Probe::Answered(Err(call)) => {
                        let reinit = call.fault() == Fault::Token;
                        Some((reinit, call.into_token_error()))
                    }
                    Probe::Hung => Some((
                        false,
                        TokenError::Down {
                            reason: format!(
                                "it did not answer C_GetTokenInfo within {PROBE_TIMEOUT:?}"
                            ),
                            kind: ErrorKind::Unavailable,
                        },
                    )),
                },
            };
            if let Some((needs_reinit, why)) = down {
                tracing::warn!(
                    generation = conn.generation,
                    reason = %why,
                    "token down; reconnecting in the background"
                );
                core.take_down(conn.generation);
                sup.went_down(why);
                reinit |= needs_reinit;
                drop(conn);
                anchor = None;
                backoff = MIN_BACKOFF;
            }
            continue;
        }
        // Down (or never connected).
        drop(anchor.take());
        let (calls, sessions) = sup.undrained();
        if calls + sessions > 0 || prober.busy() {
            let since = *quiesce.draining_since.get_or_insert_with(Instant::now);
            if reinit && quiesce.give_up(sup, since) {
                let threads = quiesce.stuck.len();
                let workers = core.abandon_threads(&quiesce.stuck);
                if prober.busy() {
                    // The old prober is among the stuck threads; it ends if its call returns.
                    match Prober::start(Arc::downgrade(core)) {
                        Ok(fresh) => prober = fresh,
                        Err(e) => tracing::error!(error = %e, "starting a new token prober"),
                    }
                }
                tracing::warn!(
                    calls = threads,
                    workers_replaced = workers,
                    waited_ms = since.elapsed().as_millis() as u64,
                    "calls on the old connection are still waiting inside the PKCS#11 module after it reported the device gone; re-initializing the module without them (their threads are replaced)"
                );
                sup.forget_draining();
            } else {
                core.log.event(
                    "drain",
                    format_args!(
                        "waiting for {calls} calls and {sessions} sessions on the old connection to end before reconnecting (a hung token holds them; the module is not re-initialized under them)"
                    ),
                );
                match sup.wait_event(DRAIN_POLL) {
                    Event::Stop => break,
                    // A call of the old generation met a device error: re-initialize once
                    // it drained (or was given up on).
                    Event::Fault(_, Some(rv)) if fault_of(rv) == Fault::Token => reinit = true,
                    _ => {}
                }
                continue;
            }
        }
        quiesce = Quiesce::default();
        match connect(core, reinit) {
            Ok((conn, session)) => {
                let generation = conn.generation;
                anchor = Some(session);
                if generation > 1 {
                    core.reconnects
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                tracing::info!(
                    token = %conn.description.label,
                    slot = conn.description.slot,
                    module = %core.module_path,
                    generation,
                    "connected to the token"
                );
                core.install(conn);
                sup.finish_attempt(None);
                reinit = false;
                backoff = MIN_BACKOFF;
            }
            Err(e) => {
                core.log
                    .event("connect", format_args!("token still unavailable: {e}"));
                // A token that is not seen again, or a module in error, often only comes back
                // through C_Finalize/C_Initialize (SoftHSM, p11-kit-client after its server
                // restarted): the next attempt re-initializes.
                reinit = e.kind() == ErrorKind::Unavailable;
                sup.finish_attempt(Some(e));
                let waited_from = Instant::now();
                match sup.wait_event(backoff) {
                    Event::Stop => break,
                    // A kick asks for an attempt now, but not more often than MIN_BACKOFF.
                    Event::Kick => {
                        let spent = waited_from.elapsed();
                        if spent < MIN_BACKOFF {
                            std::thread::sleep(MIN_BACKOFF - spent);
                        }
                    }
                    _ => backoff = (backoff * 2).min(MAX_BACKOFF),
                }
            }
        }
    }
    drop(anchor);
    let mut state = sup.lock();
    state.stopped = true;
    drop(state);
    sup.changed.notify_all();
}

fn rv_text(rv: Option<RvError>) -> String {
    rv.map_or_else(|| "an error".into(), |rv| format!("{rv:?}"))
}

/// One connection attempt: re-initialize the module first when `reinit` (nothing of the old
/// generation is left, so nothing can be inside the module), find the slot, open a session and
/// log in.
fn connect(core: &Core, reinit: bool) -> Result<(Arc<Connection>, OwnedSession), TokenError> {
    if reinit {
        reinitialize(core)?;
    }
    let (slot, description) = core.find_slot()?;
    let generation = core
        .generation
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    let conn = Arc::new(Connection::new(generation, slot, description));
    let session = {
        let _entered = conn
            .enter()
            .ok_or_else(|| TokenError::Cryptoki("connection condemned while opening".into()))?;
        core.open_session(&conn)?
    };
    Ok((conn, session))
}

fn reinitialize(core: &Core) -> Result<(), TokenError> {
    // Counted in the stats; the failed attempts around it are logged, rate-limited.
    tracing::debug!(module = %core.module_path, "re-initializing the PKCS#11 module (C_Finalize, C_Initialize)");
    core.reinitializations
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Err(e) = core.module.clone().finalize() {
        tracing::debug!(error = %e, "C_Finalize before re-initialization");
    }
    core.write_keys().clear();
    match core
        .module
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
    {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(e) => Err(CallError::from(e).into_token_error()),
    }
}

/// The prober: a thread of its own, so the supervisor can give up on a probe that hangs (and
/// mark the token down) while the probe stays stuck in the module.
struct Prober {
    requests: mpsc::Sender<Arc<Connection>>,
    answers: mpsc::Receiver<Result<(), CallError>>,
    outstanding: bool,
}

enum Probe {
    Answered(Result<(), CallError>),
    Hung,
}

impl Prober {
    fn start(core: std::sync::Weak<Core>) -> std::io::Result<Prober> {
        let (requests, jobs) = mpsc::channel::<Arc<Connection>>();
        let (answer, answers) = mpsc::channel();
        std::thread::Builder::new()
            .name("token-prober".into())
            .spawn(move || {
                for conn in jobs {
                    let Some(core) = core.upgrade() else { break };
                    let result = match conn.enter() {
                        Some(_entered) => core.present(&conn),
                        None => Ok(()),
                    };
                    drop(conn);
                    if answer.send(result).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Prober {
            requests,
            answers,
            outstanding: false,
        })
    }

    /// Whether a probe is still inside the module (a hung token).
    fn busy(&mut self) -> bool {
        if self.outstanding && self.answers.try_recv().is_ok() {
            self.outstanding = false;
        }
        self.outstanding
    }

    fn probe(&mut self, conn: &Arc<Connection>, timeout: Duration) -> Probe {
        if self.busy() {
            return Probe::Hung;
        }
        if self.requests.send(Arc::clone(conn)).is_err() {
            return Probe::Hung;
        }
        self.outstanding = true;
        match self.answers.recv_timeout(timeout) {
            Ok(result) => {
                self.outstanding = false;
                Probe::Answered(result)
            }
            Err(_) => Probe::Hung,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::TokenDescription;
    use std::sync::mpsc;

    fn connection() -> Arc<Connection> {
        let slot = cryptoki::slot::Slot::try_from(1u64).unwrap();
        let description = TokenDescription {
            label: "t".into(),
            manufacturer: String::new(),
            model: String::new(),
            serial: String::new(),
            slot: 1,
        };
        Arc::new(Connection::new(7, slot, description))
    }

    /// A thread inside a "call" on `conn` (entered before the generation went down) that
    /// sleeps until released, or works (spins) when `spin`.
    fn in_call(
        conn: &Arc<Connection>,
        spin: bool,
    ) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (entered_tx, entered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let conn = Arc::clone(conn);
        let thread = std::thread::spawn(move || {
            let _call = conn.enter().expect("the generation is up");
            entered_tx.send(()).unwrap();
            if spin {
                while released.try_recv().is_err() {
                    std::hint::spin_loop();
                }
            } else {
                let _ = released.recv();
            }
        });
        entered.recv().unwrap();
        (release, thread)
    }

    /// Polls `give_up` as the supervisor does, for up to `within`.
    fn gives_up_within(
        q: &mut Quiesce,
        sup: &Supervisor,
        since: Instant,
        within: Duration,
    ) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if q.give_up(sup, since) {
                return true;
            }
            std::thread::sleep(DRAIN_POLL);
        }
        false
    }

    #[test]
    fn calls_asleep_past_the_deadline_are_given_up_and_their_sessions_forgotten() {
        let sup = Supervisor::new();
        let conn = connection();
        let (release, thread) = in_call(&conn, false);
        conn.condemn();
        sup.drain(Arc::clone(&conn));
        let mut q = Quiesce::default();
        // Before the deadline: waited for, whatever the threads do.
        assert!(!gives_up_within(
            &mut q,
            &sup,
            Instant::now(),
            Duration::from_millis(300)
        ));
        assert!(!conn.is_abandoned());
        // Past it, asleep for QUIESCE_SETTLED: given up, the generation marked abandoned.
        let since = Instant::now() - QUIESCE_DEADLINE;
        assert!(gives_up_within(&mut q, &sup, since, Duration::from_secs(5)));
        assert!(conn.is_abandoned());
        assert_eq!(q.stuck.len(), 1);
        assert_eq!(q.stuck, conn.threads_in_calls());
        release.send(()).unwrap();
        thread.join().unwrap();
        assert!(
            conn.threads_in_calls().is_empty(),
            "a returning call leaves the list"
        );
    }

    #[test]
    fn a_call_still_working_is_never_given_up() {
        let sup = Supervisor::new();
        let conn = connection();
        let (release, thread) = in_call(&conn, true);
        conn.condemn();
        sup.drain(Arc::clone(&conn));
        let mut q = Quiesce::default();
        let since = Instant::now() - 10 * QUIESCE_DEADLINE;
        assert!(!gives_up_within(
            &mut q,
            &sup,
            since,
            Duration::from_millis(500)
        ));
        assert!(!conn.is_abandoned(), "a working call keeps its sessions");
        release.send(()).unwrap();
        thread.join().unwrap();
    }
}
