//! The core of [`Token`]: finding the token's slot, the pool of logged-in sessions, login, and
//! recovery from session and token faults, all behind [`Token::run`], which every operation
//! family (key generation, signing, objects, import, certificates, mechanisms) goes through.
//!
//! Every method blocks on the token: call them from a blocking thread, never from an async
//! task. The token is the only store: keys are found by `CKA_ID` (the TUF key ID), and gun and
//! role live in `CKA_LABEL`, so a restarted signerd, or a second one on the same token, finds
//! every key. This module imports none of the operation families; they build on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

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
use crate::pool::SessionPool;
use crate::uri::Pkcs11Uri;

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
}

impl TokenConfig {
    /// A config with the defaults ([`signerd_vocab::defaults`]) for everything but the URI.
    pub fn new(uri: Pkcs11Uri) -> TokenConfig {
        TokenConfig {
            uri,
            pin: None,
            sessions: defaults::TOKEN_SESSIONS,
            rsa_bits: defaults::RSA_BITS,
            checkout_timeout: defaults::CHECKOUT_TIMEOUT,
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
    /// Sessions open on the token now.
    pub sessions_open: usize,
    /// Sessions inside an operation now.
    pub sessions_busy: usize,
}

/// Called with the token's new state (`true` = up) each time it changes.
pub type StateListener = Box<dyn Fn(bool) + Send + Sync>;

/// Keys in one PKCS#11 token. `Send + Sync`: share it in an `Arc`.
pub struct Token {
    pub(crate) config: TokenConfig,
    pub(crate) module: Pkcs11,
    module_path: String,
    connection: Mutex<Option<Arc<Connection>>>,
    keys: RwLock<HashMap<KeyId, CachedKey>>,
    /// The last PIN the token refused: never offered again, so signerd cannot lock the token.
    rejected_pin: Mutex<Option<SecretString>>,
    generation: AtomicU64,
    last_reinit: Mutex<Option<Instant>>,
    up: AtomicBool,
    reconnects: AtomicU64,
    relogins: AtomicU64,
    reinitializations: AtomicU64,
    listeners: Mutex<Vec<StateListener>>,
}

/// A found token slot and the sessions open on it.
pub(crate) struct Connection {
    pub(crate) generation: u64,
    pub(crate) slot: Slot,
    pub(crate) description: TokenDescription,
    pool: SessionPool,
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

/// Least time between two re-initializations of the module while the token is missing.
const REINIT_INTERVAL: Duration = Duration::from_secs(2);

/// How often one operation is tried when sessions or the token fail under it.
const ATTEMPTS: usize = 3;

impl Token {
    /// Loads and initializes the module. The token itself is found on first use, so signerd
    /// can start (and report) while the token is absent.
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
        Ok(Token {
            config,
            module,
            module_path,
            connection: Mutex::new(None),
            keys: RwLock::new(HashMap::new()),
            rejected_pin: Mutex::new(None),
            generation: AtomicU64::new(0),
            last_reinit: Mutex::new(None),
            up: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            relogins: AtomicU64::new(0),
            reinitializations: AtomicU64::new(0),
            listeners: Mutex::new(Vec::new()),
        })
    }

    /// The module this token is reached through.
    pub fn module_path(&self) -> &str {
        &self.module_path
    }

    /// Finds the token, opens a session and logs in: proves the configuration works.
    pub fn connect(&self) -> Result<TokenDescription, TokenError> {
        self.run(|conn, _session| Ok(conn.description.clone()))
    }

    /// A cheap liveness probe: the token is present and answers, and the session is logged in.
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
    /// The cores are the operator's to weigh: a software token (SoftHSM) signs on the worker's
    /// own CPU, so workers beyond the cores only queue for CPU; a network HSM keeps its worker
    /// waiting on the wire, so more workers help up to the HSM's session limit.
    pub fn parallelism(&self) -> usize {
        let configured = self.config.sessions.max(1);
        let Some(conn) = self.current() else {
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
        self.current().map(|c| c.pool.open_sessions()).unwrap_or(0)
    }

    /// The token layer's state and counters, read without a token call.
    pub fn stats(&self) -> TokenStats {
        let (sessions_open, sessions_busy) = self
            .current()
            .map(|c| (c.pool.open_sessions(), c.pool.busy_sessions()))
            .unwrap_or((0, 0));
        TokenStats {
            up: self.up.load(Ordering::SeqCst),
            generation: self.generation.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            relogins: self.relogins.load(Ordering::Relaxed),
            reinitializations: self.reinitializations.load(Ordering::Relaxed),
            sessions_open,
            sessions_busy,
        }
    }

    /// Whether the token is up now (connected and answering).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Calls `listener` with the new state each time the token goes up or down (from the
    /// thread that noticed: keep it short and non-blocking).
    pub fn on_state_change(&self, listener: StateListener) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    fn set_up(&self, up: bool) {
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

    /// Closes every session and finalizes the module. Sessions still checked out by running
    /// operations close when those finish.
    pub fn close(self) {
        if let Some(conn) = self.lock_connection().take() {
            conn.pool.close_idle();
        }
        let Token {
            module, connection, ..
        } = self;
        drop(connection);
        if let Err(e) = module.finalize() {
            tracing::warn!(error = %e, "C_Finalize failed");
        }
    }

    // === sessions, login, recovery ===

    /// Runs `op` on a pooled session, retrying on a fresh session after session faults and
    /// after reconnecting when the token went away.
    pub(crate) fn run<T>(
        &self,
        mut op: impl FnMut(&Connection, &Session) -> Attempt<T>,
    ) -> Result<T, TokenError> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let conn = self.connection()?;
            let session = conn.pool.checkout(|| self.open_session(&conn))?;
            match op(&conn, &session) {
                Ok(value) => return Ok(value),
                Err(OpError::Final(e)) => return Err(e),
                Err(OpError::Call(call)) => match call.fault() {
                    Fault::Call => return Err(call.into_token_error()),
                    Fault::Session => {
                        tracing::info!(call = %call.call, rv = ?call.rv, "token session lost; retrying on a new session");
                        session.discard();
                        last = Some(call);
                    }
                    Fault::StaleHandle => {
                        self.write_keys()
                            .retain(|_, k| k.generation != conn.generation);
                        last = Some(call);
                    }
                    Fault::Token => {
                        tracing::warn!(call = %call.call, rv = ?call.rv, "token fault; reconnecting");
                        session.discard();
                        self.disconnect(conn.generation);
                        last = Some(call);
                    }
                },
            }
        }
        Err(last
            .map(CallError::into_token_error)
            .unwrap_or(TokenError::PoolExhausted(0)))
    }

    /// The current connection, or a new one: find the slot, open a session and log in.
    fn connection(&self) -> Result<Arc<Connection>, TokenError> {
        let mut guard = self.lock_connection();
        if let Some(conn) = guard.as_ref() {
            return Ok(Arc::clone(conn));
        }
        let (slot, description) = match self.find_slot() {
            Ok(found) => found,
            Err(e @ TokenError::TokenNotFound { .. }) if self.may_reinitialize() => {
                // Many modules (SoftHSM among them) only see a token that came back after
                // C_Finalize/C_Initialize. No session of ours is open while disconnected.
                tracing::info!(module = %self.module_path, "token not found ({e}); re-initializing the module");
                if let Err(e) = self.module.clone().finalize() {
                    tracing::debug!(error = %e, "C_Finalize before re-initialization");
                }
                self.write_keys().clear();
                self.reinitializations.fetch_add(1, Ordering::Relaxed);
                match self
                    .module
                    .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
                {
                    Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
                    Err(e) => return Err(CallError::from(e).into_token_error()),
                }
                self.find_slot()?
            }
            Err(e) => return Err(e),
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Arc::new(Connection {
            generation,
            slot,
            description,
            pool: SessionPool::new(self.config.sessions, self.config.checkout_timeout),
        });
        // Log in now so a wrong PIN or a dead token shows at once, not on the first request.
        drop(conn.pool.checkout(|| self.open_session(&conn))?);
        tracing::info!(
            token = %conn.description.label,
            slot = conn.description.slot,
            module = %self.module_path,
            "connected to the token"
        );
        if generation > 1 {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        *guard = Some(Arc::clone(&conn));
        self.set_up(true);
        Ok(conn)
    }

    /// Re-initializing the module is heavy: at most once per [`REINIT_INTERVAL`].
    fn may_reinitialize(&self) -> bool {
        let mut last = self.last_reinit.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < REINIT_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }

    fn current(&self) -> Option<Arc<Connection>> {
        self.lock_connection().clone()
    }

    /// Drops connection `generation` (if still current) so the next call reconnects.
    fn disconnect(&self, generation: u64) {
        let mut guard = self.lock_connection();
        if guard.as_ref().is_some_and(|c| c.generation == generation) {
            if let Some(conn) = guard.take() {
                conn.pool.close_idle();
            }
            self.set_up(false);
        }
    }

    fn find_slot(&self) -> Result<(Slot, TokenDescription), TokenError> {
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

    fn open_session(&self, conn: &Connection) -> Result<Session, TokenError> {
        let session = self
            .module
            .open_rw_session(conn.slot)
            .map_err(|e| CallError::from(e).into_token_error())?;
        self.login(&session)?;
        Ok(session)
    }

    fn login(&self, session: &Session) -> Result<(), TokenError> {
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
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                *rejected = None;
                Ok(())
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

    fn lock_connection(&self) -> MutexGuard<'_, Option<Arc<Connection>>> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handle cache, to read.
    pub(crate) fn read_keys(&self) -> RwLockReadGuard<'_, HashMap<KeyId, CachedKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops a key from the handle cache (its objects are about to change).
    pub(crate) fn forget_key(&self, id: &KeyId) {
        self.write_keys().remove(id);
    }

    /// The handle cache, to change.
    pub(crate) fn write_keys(&self) -> RwLockWriteGuard<'_, HashMap<KeyId, CachedKey>> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
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
