//! The core of [`Token`]: finding the token's slot, sessions and login, and recovery from
//! session and token faults, all behind [`Token::run`], which every operation family (key
//! generation, signing, objects, import, certificates, mechanisms) goes through.
//!
//! **One owner per session.** A token worker (a thread that called [`Token::attach_worker`])
//! owns one logged-in session for the current connection generation, opened lazily and
//! re-opened after a session fault or a reconnect; `run` hands it to the operation, with no
//! pool and no lock on the way. Any other thread (CLI one-shots, the audit writer, tests) gets a
//! session opened for the one call and closed after it.
//!
//! **Recovery off the request path.** Reconnecting is the supervisor's alone (`supervisor`):
//! a call that meets a token fault reports it and fails (the key store answers UNAVAILABLE);
//! the supervisor marks the generation down, waits until no call and no session of it is left
//! (a call hung in the module is waited for, never finalized under; once the module reported
//! its device gone, a call still waiting in it after `supervisor::QUIESCE_DEADLINE` is given up
//! on, see `supervisor`), then finds the slot again,
//! re-initializes the module when only that helps, logs in, and marks the new generation up.
//! Every call into the module on a generation's slot or sessions is counted on that
//! generation's [`Connection`], which is what makes "nothing in flight" a fact.
//!
//! Every method blocks on the token: call them from a blocking thread, never from an async
//! task. The token is the only store: keys are found by `CKA_ID` (the TUF key ID), and gun and
//! role live in `CKA_LABEL`, so a restarted signerd, or a second one on the same token, finds
//! every key. This module imports none of the operation families; they build on it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::{Limit, Slot};
use secrecy::{ExposeSecret, SecretString};
use signerd_vocab::defaults;

use crate::error::{Attempt, CallError, Fault, OpError, TokenError};
use crate::key::{KeyId, KeyInfo};
use crate::pin::PinSource;
use crate::supervisor::{Supervisor, SupervisorHandle};
use crate::uri::Pkcs11Uri;

/// Default of [`TokenConfig::unavailable_after`] (`token.unavailable_after_ms`).
pub const DEFAULT_UNAVAILABLE_AFTER: Duration = Duration::from_secs(2);

/// How to reach a token and how to use it.
#[derive(Clone, Debug)]
pub struct TokenConfig {
    /// The token URI: selector, `module-path`, and usually `pin-source`.
    pub uri: Pkcs11Uri,
    /// A PIN source that overrides the URI's `pin-source`.
    pub pin: Option<PinSource>,
    /// Most sessions to open (signatures run in parallel on this many).
    pub sessions: usize,
    /// Modulus size of new RSA keys, one of [`signerd_vocab::defaults::RSA_BITS_ALLOWED`]
    /// (others are refused when a key is made).
    pub rsa_bits: u32,
    /// How long a request waits for a free session before it fails.
    pub checkout_timeout: Duration,
    /// How long a call waits for a token that is down (reconnecting) before it answers
    /// unavailable; also the bound on a request whose worker is stuck in a hung token.
    pub unavailable_after: Duration,
}

impl TokenConfig {
    /// A config with the defaults ([`signerd_vocab::defaults`]) for everything but the URI.
    pub fn new(uri: Pkcs11Uri) -> TokenConfig {
        TokenConfig {
            uri,
            pin: None,
            sessions: defaults::token_sessions(),
            rsa_bits: defaults::RSA_BITS,
            checkout_timeout: defaults::CHECKOUT_TIMEOUT,
            unavailable_after: DEFAULT_UNAVAILABLE_AFTER,
        }
    }

    fn pin_source(&self) -> Result<&PinSource, TokenError> {
        self.pin
            .as_ref()
            .or(self.uri.pin_source.as_ref())
            .ok_or(TokenError::NoPinSource)
    }
}

/// What a token is, for logs and the health endpoint.
#[derive(Clone, Debug)]
pub struct TokenDescription {
    /// The token label.
    pub label: String,
    /// The token manufacturer.
    pub manufacturer: String,
    /// The token model.
    pub model: String,
    /// The token serial number.
    pub serial: String,
    /// The slot ID.
    pub slot: u64,
}

/// What the token layer is doing, for metrics and `signerd status`: read without a token call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenStats {
    /// The token is connected and answering (what health reports).
    pub up: bool,
    /// The connection generation: 0 before the first connect, one more on each reconnect.
    pub generation: u64,
    /// Connections made after the first one (each a recovery from a token fault).
    pub reconnects: u64,
    /// Logins made again on a live connection, after the token logged a session out.
    pub relogins: u64,
    /// Module re-initializations (`C_Finalize` + `C_Initialize`), the heaviest recovery.
    pub reinitializations: u64,
    /// Calls given up on: still inside the module, waiting, long after the module reported its
    /// device gone, when the module was re-initialized without them (their threads replaced).
    pub abandoned_calls: u64,
    /// Sessions open on the token now.
    pub sessions_open: usize,
    /// Sessions inside an operation now.
    pub sessions_busy: usize,
}

/// Called with the token's new state (`true` = up) each time it changes.
pub type StateListener = Box<dyn Fn(bool) + Send + Sync>;

/// Called with how many worker threads (see [`Token::attach_worker`]) were given up on, stuck
/// in the module: start as many new ones (each stuck one leaves its loop if its call ever
/// returns, see [`WorkerGuard::abandoned`]).
pub type AbandonListener = Box<dyn Fn(usize) + Send + Sync>;

/// Keys in one PKCS#11 token. `Send + Sync`: share it in an `Arc`.
pub struct Token {
    pub(crate) config: TokenConfig,
    pub(crate) module: Pkcs11,
    module_path: String,
    pub(crate) core: Arc<Core>,
    supervisor: SupervisorHandle,
}

/// What the token's users and its supervisor share.
pub(crate) struct Core {
    pub(crate) config: TokenConfig,
    pub(crate) module: Pkcs11,
    pub(crate) module_path: String,
    /// Tells this token's worker sessions apart from another token's on the same thread.
    id: u64,
    /// The connection requests run on; `None` while the token is down.
    current: RwLock<Option<Arc<Connection>>>,
    keys: RwLock<HashMap<KeyId, CachedKey>>,
    /// The last PIN the token refused: never offered again, so signerd cannot lock the token.
    rejected_pin: Mutex<Option<SecretString>>,
    pub(crate) generation: AtomicU64,
    up: AtomicBool,
    pub(crate) reconnects: AtomicU64,
    relogins: AtomicU64,
    pub(crate) reinitializations: AtomicU64,
    pub(crate) abandoned_calls: AtomicU64,
    listeners: Mutex<Vec<StateListener>>,
    abandon_listeners: Mutex<Vec<AbandonListener>>,
    /// The threads attached as workers (kernel thread IDs).
    worker_threads: Mutex<Vec<i32>>,
    /// Worker threads given up on whose calls have not returned yet.
    abandoned_workers: Mutex<Vec<i32>>,
    /// `abandoned_workers` is not empty (read on every job without the lock).
    any_abandoned: AtomicBool,
    pub(crate) supervisor: Supervisor,
    /// Faults under a storm: one line per kind per interval, with a count.
    pub(crate) log: crate::ratelog::RateLog,
}

/// A found token slot: one connection generation, with every call and session on it counted.
pub(crate) struct Connection {
    pub(crate) generation: u64,
    pub(crate) slot: Slot,
    pub(crate) description: TokenDescription,
    /// Set once the generation is down: no new call may start on it.
    condemned: AtomicBool,
    /// Calls into the module on this generation now.
    active: AtomicUsize,
    /// Sessions open on this generation now.
    sessions: AtomicUsize,
    /// Sessions inside an operation now.
    busy: AtomicUsize,
    /// Logins made on this generation (the first is the connect; later ones are re-logins).
    logins: AtomicU64,
    /// The threads inside the module on this generation now (kernel thread IDs): what the
    /// supervisor looks at when calls do not return after the device went away.
    threads: Mutex<Vec<i32>>,
    /// The module was re-initialized with calls of this generation still inside it: its
    /// sessions died with the old module state, and are never closed (their handle numbers may
    /// belong to a new session by then).
    abandoned: AtomicBool,
}

impl Connection {
    pub(crate) fn new(generation: u64, slot: Slot, description: TokenDescription) -> Connection {
        Connection {
            generation,
            slot,
            description,
            condemned: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            logins: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            abandoned: AtomicBool::new(false),
        }
    }

    /// Starts a call on this generation, or `None` when it is down. The supervisor condemns
    /// first and then waits for `active` to reach zero, so a call either is counted before the
    /// supervisor looks or sees the condemnation (both sides use `SeqCst`).
    pub(crate) fn enter(&self) -> Option<Entered<'_>> {
        let entered = self.track();
        if self.condemned.load(Ordering::SeqCst) {
            return None;
        }
        Some(entered)
    }

    /// Counts the calling thread in a call on this generation until the guard drops, whether
    /// or not the generation is down (closing a session of a condemned generation).
    fn track(&self) -> Entered<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        let tid = crate::threads::current_tid();
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tid);
        Entered { conn: self, tid }
    }

    /// The threads inside a call on this generation now.
    pub(crate) fn threads_in_calls(&self) -> Vec<i32> {
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The module is about to be re-initialized under this generation's remaining calls: its
    /// sessions are forgotten from now on, never closed. A close that started before this (it
    /// tracks itself first, then looks) shows in [`Self::threads_in_calls`] afterwards.
    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    pub(crate) fn condemn(&self) {
        self.condemned.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_condemned(&self) -> bool {
        self.condemned.load(Ordering::SeqCst)
    }

    /// Nothing of this generation is left: no call in the module, no session open.
    pub(crate) fn drained(&self) -> bool {
        self.active.load(Ordering::SeqCst) == 0 && self.sessions.load(Ordering::SeqCst) == 0
    }

    pub(crate) fn in_flight(&self) -> (usize, usize) {
        (
            self.active.load(Ordering::SeqCst),
            self.sessions.load(Ordering::SeqCst),
        )
    }
}

/// A call in progress on a connection generation.
pub(crate) struct Entered<'a> {
    conn: &'a Connection,
    tid: i32,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        {
            let mut threads = self.conn.threads.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = threads.iter().position(|t| *t == self.tid) {
                threads.swap_remove(at);
            }
        }
        self.conn.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A logged-in session of one generation; closing it (on drop) is counted too, so the
/// supervisor never re-initializes the module before the close returned.
pub(crate) struct OwnedSession {
    session: Option<Session>,
    conn: Arc<Connection>,
}

impl Drop for OwnedSession {
    fn drop(&mut self) {
        // The close is a call on the generation, counted (with its thread) before looking
        // whether the module was re-initialized under it; the session stays counted in
        // `sessions` until the close returned.
        let closing = self.conn.track();
        if let Some(session) = self.session.take() {
            if self.conn.is_abandoned() {
                // Closed by the re-initialization; its handle number may be a new session's.
                std::mem::forget(session);
            } else {
                drop(session);
            }
        }
        drop(closing);
        self.conn.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

impl OwnedSession {
    fn session(&self) -> &Session {
        // Invariant: only `drop` takes the session out.
        self.session.as_ref().expect("session present until drop")
    }
}

thread_local! {
    /// The sessions a token worker owns, one per token it works for.
    static WORKER_SESSIONS: RefCell<Vec<(u64, Option<OwnedSession>)>> = const { RefCell::new(Vec::new()) };
}

/// Marks the current thread as a token worker of one token for as long as it lives: `run` on
/// this thread uses (and keeps) the thread's own session. Dropping it closes the session.
#[must_use = "the thread is a token worker only while the guard lives"]
pub struct WorkerGuard {
    core: Arc<Core>,
    tid: i32,
}

impl WorkerGuard {
    /// Between jobs: closes the session when its generation went down, so the supervisor
    /// never waits on an idle worker. Cheap when nothing changed.
    pub fn idle(&self) {
        release_condemned(self.core.id);
    }

    /// Whether this worker was given up on while stuck in the module (a replacement runs in
    /// its place, see [`Token::on_workers_abandoned`]): the thread should end now that its
    /// call returned. Cheap when no worker was given up on.
    pub fn abandoned(&self) -> bool {
        if !self.core.any_abandoned.load(Ordering::SeqCst) {
            return false;
        }
        let mut abandoned = lock(&self.core.abandoned_workers);
        let Some(at) = abandoned.iter().position(|t| *t == self.tid) else {
            return false;
        };
        abandoned.swap_remove(at);
        self.core
            .any_abandoned
            .store(!abandoned.is_empty(), Ordering::SeqCst);
        true
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        {
            let mut workers = lock(&self.core.worker_threads);
            if let Some(at) = workers.iter().position(|t| *t == self.tid) {
                workers.swap_remove(at);
            }
        }
        let owned = WORKER_SESSIONS.with(|w| {
            let mut w = w.borrow_mut();
            let at = w.iter().position(|(id, _)| *id == self.core.id);
            at.map(|i| w.swap_remove(i))
        });
        drop(owned);
    }
}

/// Why a session could not be opened.
enum Opened {
    /// The token failed (reported to the supervisor).
    Fault(TokenError),
    /// Anything else (a PIN problem): final.
    Other(TokenError),
}

/// A TUF key found in the token: its handle is valid only on the connection that found it.
#[derive(Clone)]
pub(crate) struct CachedKey {
    /// Shared, so a signature on the hot path clones a pointer, not the public key.
    pub(crate) info: Arc<KeyInfo>,
    pub(crate) private: ObjectHandle,
    /// The connection the handle belongs to.
    pub(crate) generation: u64,
}

/// How often one operation is tried when sessions fail under it.
const ATTEMPTS: usize = 3;

/// Gives each `Token` in the process its own worker-session slot.
static NEXT_TOKEN_ID: AtomicU64 = AtomicU64::new(1);

impl Token {
    /// Loads and initializes the module and starts the token's supervisor, which finds the
    /// token and keeps it connected. The token itself may be absent: signerd starts (and
    /// reports) without it.
    pub fn open(config: TokenConfig) -> Result<Token, TokenError> {
        let path = config.uri.module_path.clone().ok_or(TokenError::NoModule)?;
        let module_path = path.display().to_string();
        let module = Pkcs11::new(&path).map_err(|e| TokenError::ModuleLoad {
            path: module_path.clone(),
            reason: e.to_string(),
        })?;
        match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(TokenError::ModuleLoad {
                    path: module_path,
                    reason: e.to_string(),
                })
            }
        }
        let core = Arc::new(Core {
            config: config.clone(),
            module: module.clone(),
            module_path: module_path.clone(),
            id: NEXT_TOKEN_ID.fetch_add(1, Ordering::Relaxed),
            current: RwLock::new(None),
            keys: RwLock::new(HashMap::new()),
            rejected_pin: Mutex::new(None),
            generation: AtomicU64::new(0),
            up: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            relogins: AtomicU64::new(0),
            reinitializations: AtomicU64::new(0),
            abandoned_calls: AtomicU64::new(0),
            listeners: Mutex::new(Vec::new()),
            abandon_listeners: Mutex::new(Vec::new()),
            worker_threads: Mutex::new(Vec::new()),
            abandoned_workers: Mutex::new(Vec::new()),
            any_abandoned: AtomicBool::new(false),
            supervisor: Supervisor::new(),
            log: crate::ratelog::RateLog::new(crate::ratelog::INTERVAL),
        });
        let supervisor = crate::supervisor::start(Arc::clone(&core)).map_err(|e| {
            TokenError::Cryptoki(format!("cannot start the token supervisor thread: {e}"))
        })?;
        Ok(Token {
            config,
            module,
            module_path,
            core,
            supervisor,
        })
    }

    /// The module this token is reached through.
    pub fn module_path(&self) -> &str {
        &self.module_path
    }

    /// Waits (up to `unavailable_after`) for the token to be connected: proves the
    /// configuration works, or says why not.
    pub fn connect(&self) -> Result<TokenDescription, TokenError> {
        self.run(|conn, _session| Ok(conn.description.clone()))
    }

    /// A liveness probe: the token is present and answers, and a session is logged in.
    pub fn probe(&self) -> Result<(), TokenError> {
        self.run(|conn, session| {
            // C_GetTokenInfo is what notices a removed token (SoftHSM: its files gone); the
            // session state alone can outlive the token.
            self.module.get_token_info(conn.slot)?;
            let info = session.get_session_info()?;
            match info.session_state() {
                SessionState::RwUser | SessionState::RoUser => Ok(()),
                _ => Err(OpError::Call(CallError {
                    rv: Some(RvError::UserNotLoggedIn),
                    call: "C_GetSessionInfo".into(),
                    other: None,
                })),
            }
        })
    }

    /// What the token is (label, manufacturer, model, serial, slot).
    pub fn description(&self) -> Result<TokenDescription, TokenError> {
        self.connect()
    }

    /// How many operations signerd gives the token at once, and so how many token workers it
    /// runs: `token.sessions`, held to the token's own session limit (`ulMaxSessionCount`) when
    /// the token is reachable and reports a finite one.
    ///
    /// `token.sessions` defaults to the cores plus one ([`defaults::token_sessions`]): a
    /// software token (SoftHSM) signs on the worker's own CPU, so workers well beyond the cores
    /// only queue for CPU; a network HSM keeps its worker waiting on the wire, so there the
    /// operator sets more, up to the HSM's session limit.
    pub fn parallelism(&self) -> usize {
        let configured = self.config.sessions.max(1);
        let Some(conn) = self.core.current() else {
            return configured;
        };
        let Some(_entered) = conn.enter() else {
            return configured;
        };
        match self
            .module
            .get_token_info(conn.slot)
            .map(|i| i.max_session_count())
        {
            Ok(Limit::Max(n)) if n > 0 => configured.min(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => configured,
        }
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.stats().sessions_open
    }

    /// The token layer's state and counters, read without a token call.
    pub fn stats(&self) -> TokenStats {
        let core = &self.core;
        let (sessions_open, sessions_busy) = core
            .current()
            .map(|c| {
                (
                    c.sessions.load(Ordering::SeqCst),
                    c.busy.load(Ordering::SeqCst),
                )
            })
            .unwrap_or((0, 0));
        TokenStats {
            up: core.up.load(Ordering::SeqCst),
            generation: core.generation.load(Ordering::Relaxed),
            reconnects: core.reconnects.load(Ordering::Relaxed),
            relogins: core.relogins.load(Ordering::Relaxed),
            reinitializations: core.reinitializations.load(Ordering::Relaxed),
            abandoned_calls: core.abandoned_calls.load(Ordering::Relaxed),
            sessions_open,
            sessions_busy,
        }
    }

    /// Whether the token is up now (connected and answering).
    pub fn is_up(&self) -> bool {
        self.core.up.load(Ordering::SeqCst)
    }

    /// Calls `listener` with the new state each time the token goes up or down (from the
    /// thread that noticed: keep it short and non-blocking).
    pub fn on_state_change(&self, listener: StateListener) {
        self.core
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    /// Calls `listener` each time worker threads are given up on (see [`AbandonListener`]),
    /// from the supervisor's thread: keep it short.
    pub fn on_workers_abandoned(&self, listener: AbandonListener) {
        self.core
            .abandon_listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    /// Makes the calling thread a token worker (see the module docs): it keeps one session of
    /// its own until the guard drops. One per thread and token.
    pub fn attach_worker(&self) -> WorkerGuard {
        WORKER_SESSIONS.with(|w| {
            let mut w = w.borrow_mut();
            if !w.iter().any(|(id, _)| *id == self.core.id) {
                w.push((self.core.id, None));
            }
        });
        let tid = crate::threads::current_tid();
        lock(&self.core.worker_threads).push(tid);
        WorkerGuard {
            core: Arc::clone(&self.core),
            tid,
        }
    }

    /// How long a caller waits for a token that is down (`token.unavailable_after_ms`).
    pub fn unavailable_after(&self) -> Duration {
        self.config.unavailable_after
    }

    /// Why the token cannot be used now, while it is down.
    pub fn down_error(&self) -> TokenError {
        self.core.supervisor.down_error()
    }

    /// Stops the supervisor, closes every session and finalizes the module. Sessions still
    /// held by running operations or workers close when those finish; the module is not
    /// finalized while any call could still be inside it.
    pub fn close(self) {
        let Token {
            module,
            core,
            supervisor,
            ..
        } = self;
        let stopped = supervisor.stop();
        let conn = core
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        core.set_up(false);
        if let Some(conn) = &conn {
            conn.condemn();
        }
        let drained = conn.as_ref().is_none_or(|c| c.drained());
        drop(conn);
        if !stopped || !drained {
            tracing::warn!("token calls still in progress; leaving the module to process exit");
            return;
        }
        if let Err(e) = module.finalize() {
            tracing::warn!(error = %e, "C_Finalize failed");
        }
    }

    // === sessions, login, recovery ===

    /// Runs `op` on this thread's session (a worker's own, or one opened for the call),
    /// retrying on a fresh session after session faults. A token fault is reported to the
    /// supervisor and answered as unavailable at once; so is a token that is down.
    pub(crate) fn run<T>(
        &self,
        mut op: impl FnMut(&Connection, &Session) -> Attempt<T>,
    ) -> Result<T, TokenError> {
        let core = &self.core;
        let worker = WORKER_SESSIONS.with(|w| w.borrow().iter().any(|(id, _)| *id == core.id));
        let mut last = None;
        let mut lost_on = None;
        // A token fault: a worker answers at once (the key store waits for the token and
        // retries what is idempotent); any other caller waits for the supervisor and retries,
        // as it has no one else to do it.
        let mut faulted = None;
        if worker {
            // A session of a generation that went down must not outlive it: the supervisor
            // waits for it before reconnecting.
            release_condemned(core.id);
        }
        for _ in 0..ATTEMPTS {
            let conn = match core.current() {
                Some(conn) => conn,
                // A worker never waits: the key store waits for the token, with its bound.
                None if worker => return Err(faulted.unwrap_or_else(|| self.down_error())),
                None => match core.supervisor.wait_up(core, core.config.unavailable_after) {
                    Ok(conn) => conn,
                    Err(e) => return Err(faulted.unwrap_or(e)),
                },
            };
            let Some(entered) = conn.enter() else {
                faulted = Some(self.down_error());
                if worker {
                    break;
                }
                continue;
            };
            let held = if worker {
                take_worker_session(core.id)
            } else {
                None
            };
            let owned = match held.filter(|s| s.conn.generation == conn.generation) {
                Some(s) => s,
                None => match core.open_session(&conn) {
                    Ok(s) => s,
                    Err(e) => {
                        drop(entered);
                        match core.classify_open_error(&conn, e) {
                            Opened::Fault(e) if !worker => {
                                faulted = Some(e);
                                continue;
                            }
                            Opened::Fault(e) | Opened::Other(e) => return Err(e),
                        }
                    }
                },
            };
            conn.busy.fetch_add(1, Ordering::SeqCst);
            let result = op(&conn, owned.session());
            conn.busy.fetch_sub(1, Ordering::SeqCst);
            let keep = |owned: OwnedSession| {
                if worker {
                    put_worker_session(core.id, owned);
                }
            };
            let call = match result {
                Ok(value) => {
                    keep(owned);
                    return Ok(value);
                }
                Err(OpError::Final(e)) => {
                    match e {
                        // A missing key or half of a key: believe it only while the token is
                        // there (a vanished token makes every search come back empty).
                        TokenError::KeyNotFound(_) | TokenError::MalformedKey { .. } => {
                            // Nor while signerd is out of descriptors: the token may not
                            // have been able to open its object files.
                            if crate::descriptors::exhausted() {
                                keep(owned);
                                return Err(TokenError::OutOfDescriptors);
                            }
                            match core.present(&conn) {
                                Ok(()) => {
                                    keep(owned);
                                    return Err(e);
                                }
                                Err(call) => call,
                            }
                        }
                        e => {
                            keep(owned);
                            return Err(e);
                        }
                    }
                }
                Err(OpError::Call(call)) => match call.fault() {
                    Fault::Call => {
                        keep(owned);
                        return Err(call.into_token_error());
                    }
                    Fault::Session => {
                        core.log.event(
                            "session",
                            format_args!(
                                "token session lost ({} {:?}); retrying on a new session",
                                call.call, call.rv
                            ),
                        );
                        drop(owned);
                        last = Some(call);
                        lost_on = Some(Arc::clone(&conn));
                        continue;
                    }
                    Fault::StaleHandle => {
                        // The operation dropped the one key whose handle went stale (another
                        // replica deleted it): the rest of the index stays good.
                        keep(owned);
                        last = Some(call);
                        continue;
                    }
                    Fault::Token => call,
                },
            };
            // A token fault: the session goes (closed while still counted on the generation).
            drop(owned);
            drop(entered);
            let e = core.token_fault(&conn, call);
            if worker {
                return Err(e);
            }
            faulted = Some(e);
        }
        if let Some(e) = faulted {
            return Err(e);
        }
        match (last, lost_on) {
            // Every fresh session died too: a storm of session faults is a token fault.
            (Some(call), Some(conn)) if call.fault() == Fault::Session => {
                Err(core.token_fault(&conn, call))
            }
            (last, _) => Err(last
                .map(CallError::into_token_error)
                .unwrap_or(TokenError::PoolExhausted(0))),
        }
    }

    /// The handle cache, to read.
    pub(crate) fn read_keys(&self) -> RwLockReadGuard<'_, HashMap<KeyId, CachedKey>> {
        self.core.read_keys()
    }

    /// Drops a key from the handle cache (its objects are about to change).
    pub(crate) fn forget_key(&self, id: &KeyId) {
        self.write_keys().remove(id);
    }

    /// The handle cache, to change.
    pub(crate) fn write_keys(&self) -> RwLockWriteGuard<'_, HashMap<KeyId, CachedKey>> {
        self.core.write_keys()
    }
}

/// Closes this thread's worker session for `token` if its generation went down.
fn release_condemned(token: u64) {
    let stale = WORKER_SESSIONS.with(|w| {
        let mut w = w.borrow_mut();
        w.iter_mut()
            .find(|(id, _)| *id == token)
            .and_then(|(_, s)| {
                if s.as_ref().is_some_and(|s| s.conn.is_condemned()) {
                    s.take()
                } else {
                    None
                }
            })
    });
    drop(stale);
}

fn take_worker_session(token: u64) -> Option<OwnedSession> {
    WORKER_SESSIONS.with(|w| {
        w.borrow_mut()
            .iter_mut()
            .find(|(id, _)| *id == token)
            .and_then(|(_, s)| s.take())
    })
}

fn put_worker_session(token: u64, session: OwnedSession) {
    let displaced = WORKER_SESSIONS.with(|w| {
        w.borrow_mut()
            .iter_mut()
            .find(|(id, _)| *id == token)
            .and_then(|(_, s)| s.replace(session))
    });
    drop(displaced);
}

impl Core {
    /// The connection requests run on, when the token is up.
    pub(crate) fn current(&self) -> Option<Arc<Connection>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes `conn` the connection requests run on (the supervisor, once connected), with the
    /// key index read on it first, so no request searches the token for a key that was there.
    pub(crate) fn install(&self, conn: Arc<Connection>) {
        let index = self.index_keys(&conn);
        *self.write_keys() = index;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        self.set_up(true);
    }

    /// Every key's handle and public key on `conn` (see `lookup`). A failure leaves the index
    /// empty rather than the token down: requests then search for their keys, and a token
    /// fault among them goes to the supervisor as any other.
    fn index_keys(&self, conn: &Arc<Connection>) -> HashMap<KeyId, CachedKey> {
        let started = std::time::Instant::now();
        let result = match conn.enter() {
            None => return HashMap::new(),
            Some(_entered) => self
                .open_session(conn)
                .map_err(OpError::Final)
                .and_then(|owned| crate::lookup::index_keys(conn, owned.session())),
        };
        match result {
            Ok(index) => {
                tracing::info!(
                    keys = index.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    generation = conn.generation,
                    "key index read"
                );
                index
            }
            Err(e) => {
                let e = match e {
                    OpError::Final(e) => e,
                    OpError::Call(call) => call.into_token_error(),
                };
                tracing::warn!(error = %e, "cannot read the key index; keys are searched for on first use");
                HashMap::new()
            }
        }
    }

    /// Takes generation `generation` down (if still current): no new call starts on it. The
    /// supervisor then waits for it to drain before reconnecting.
    pub(crate) fn take_down(&self, generation: u64) -> Option<Arc<Connection>> {
        let taken = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            if current.as_ref().is_some_and(|c| c.generation == generation) {
                current.take()
            } else {
                None
            }
        };
        if let Some(conn) = &taken {
            conn.condemn();
            self.supervisor.drain(Arc::clone(conn));
            self.write_keys().retain(|_, k| k.generation != generation);
            self.set_up(false);
        }
        taken
    }

    /// A token fault seen by a call on `conn`: reported to the supervisor, answered as
    /// unavailable.
    fn token_fault(&self, conn: &Connection, call: CallError) -> TokenError {
        self.log.event(
            "token-fault",
            format_args!(
                "token fault ({} {:?}); the token is marked down and reconnected in the background",
                call.call, call.rv
            ),
        );
        self.supervisor.report(self, conn.generation, call.rv);
        call.into_token_error()
    }

    /// A session could not be opened or logged in on `conn`: a token fault is reported.
    fn classify_open_error(&self, conn: &Connection, e: TokenError) -> Opened {
        match &e {
            TokenError::TokenUnavailable { call, rv } => {
                let call = CallError {
                    rv: Some(*rv),
                    call: call.clone(),
                    other: None,
                };
                Opened::Fault(self.token_fault(conn, call))
            }
            _ => Opened::Other(e),
        }
    }

    /// Whether the token behind `conn` is still there (`C_GetTokenInfo` on its slot).
    pub(crate) fn present(&self, conn: &Connection) -> Result<(), CallError> {
        match self.module.get_token_info(conn.slot) {
            Ok(info) if info.token_initialized() => Ok(()),
            Ok(_) => Err(CallError {
                rv: Some(RvError::TokenNotRecognized),
                call: "C_GetTokenInfo".into(),
                other: None,
            }),
            Err(e) => {
                let call = CallError::from(e);
                // Any failure to describe a token we were using means it is not usable.
                Err(match call.fault() {
                    Fault::Token => call,
                    _ => CallError {
                        rv: Some(RvError::TokenNotPresent),
                        call: call.call,
                        other: None,
                    },
                })
            }
        }
    }

    /// The calls on `threads` (of generations taken down) are given up on: the worker threads
    /// among them are replaced through the listeners; returns how many were workers.
    pub(crate) fn abandon_threads(&self, threads: &[i32]) -> usize {
        self.abandoned_calls
            .fetch_add(threads.len() as u64, Ordering::Relaxed);
        let workers: Vec<i32> = {
            let attached = lock(&self.worker_threads);
            threads
                .iter()
                .copied()
                .filter(|t| attached.contains(t))
                .collect()
        };
        if workers.is_empty() {
            return 0;
        }
        {
            let mut abandoned = lock(&self.abandoned_workers);
            abandoned.extend(&workers);
            self.any_abandoned.store(true, Ordering::SeqCst);
        }
        for listener in lock(&self.abandon_listeners).iter() {
            listener(workers.len());
        }
        workers.len()
    }

    pub(crate) fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::SeqCst) != up {
            for listener in self
                .listeners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                listener(up);
            }
        }
    }

    pub(crate) fn read_keys(&self) -> RwLockReadGuard<'_, HashMap<KeyId, CachedKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write_keys(&self) -> RwLockWriteGuard<'_, HashMap<KeyId, CachedKey>> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn find_slot(&self) -> Result<(Slot, TokenDescription), TokenError> {
        let uri = &self.config.uri;
        let slots = match self.module.get_slots_with_token() {
            Err(CkError::Pkcs11(RvError::CryptokiNotInitialized, _)) => {
                // Someone finalized the module under us (or the library was reset): initialize
                // it again rather than failing until a restart.
                tracing::warn!(module = %self.module_path, "PKCS#11 module not initialized; initializing it again");
                match self.module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
                    Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
                    Err(e) => return Err(CallError::from(e).into_token_error()),
                }
                self.module.get_slots_with_token()
            }
            other => other,
        }
        .map_err(|e| CallError::from(e).into_token_error())?;
        let mut seen = Vec::new();
        for slot in slots {
            if uri.slot_id.is_some_and(|id| id != slot.id()) {
                continue;
            }
            let info = match self.module.get_token_info(slot) {
                Ok(info) => info,
                Err(_) => continue,
            };
            let description = TokenDescription {
                label: info.label().trim().to_owned(),
                manufacturer: info.manufacturer_id().trim().to_owned(),
                model: info.model().trim().to_owned(),
                serial: info.serial_number().trim().to_owned(),
                slot: slot.id(),
            };
            let matches =
                |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
            if info.token_initialized()
                && matches(&uri.token, &description.label)
                && matches(&uri.manufacturer, &description.manufacturer)
                && matches(&uri.model, &description.model)
                && matches(&uri.serial, &description.serial)
            {
                return Ok((slot, description));
            }
            if info.token_initialized() {
                seen.push(format!("'{}'", description.label));
            }
        }
        Err(TokenError::TokenNotFound {
            selector: uri.token_selector(),
            seen: if seen.is_empty() {
                "none".into()
            } else {
                seen.join(", ")
            },
        })
    }

    /// Opens a session on `conn` and logs in (a call on the generation: enter it first).
    pub(crate) fn open_session(&self, conn: &Arc<Connection>) -> Result<OwnedSession, TokenError> {
        let session = self
            .module
            .open_rw_session(conn.slot)
            .map_err(|e| CallError::from(e).into_token_error())?;
        conn.sessions.fetch_add(1, Ordering::SeqCst);
        let owned = OwnedSession {
            session: Some(session),
            conn: Arc::clone(conn),
        };
        if self.login(owned.session())? && conn.logins.fetch_add(1, Ordering::SeqCst) > 0 {
            self.relogins.fetch_add(1, Ordering::Relaxed);
        }
        Ok(owned)
    }

    /// Logs the user in; `true` when this call logged in (not "already logged in").
    fn login(&self, session: &Session) -> Result<bool, TokenError> {
        let source = self.config.pin_source()?;
        let pin = source.read()?;
        let mut rejected = self.rejected_pin.lock().unwrap_or_else(|p| p.into_inner());
        if rejected
            .as_ref()
            .is_some_and(|r| r.expose_secret() == pin.expose_secret())
        {
            return Err(TokenError::PinIncorrect {
                source_desc: source.describe(),
            });
        }
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) => {
                *rejected = None;
                Ok(true)
            }
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                *rejected = None;
                Ok(false)
            }
            Err(CkError::Pkcs11(
                RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                _,
            )) => {
                *rejected = Some(pin);
                tracing::error!(pin_source = %source.describe(), "the token rejected the user PIN");
                Err(TokenError::PinIncorrect {
                    source_desc: source.describe(),
                })
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(TokenError::PinLocked {
                state: "locked",
                source_desc: source.describe(),
            }),
            Err(CkError::Pkcs11(RvError::PinExpired, _)) => Err(TokenError::PinLocked {
                state: "expired",
                source_desc: source.describe(),
            }),
            Err(e) => Err(CallError::from(e).into_token_error()),
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("module", &self.module_path)
            .field("uri", &self.config.uri)
            .finish()
    }
}

/// Locks `mutex`; a panic never happens under these locks (no token call is made under one), so
/// a poisoned one still holds consistent data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
