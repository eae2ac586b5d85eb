//! The shim's state and every PKCS#11 operation, in safe Rust: slots (one per token signerd
//! exposes), sessions, the login state, object searches and signing operations.
//!
//! Sessions, handles and the login state are the shim's own, not signerd's: when signerd
//! restarts, the next call reconnects and goes on (signerd's admin RPCs other than `Login`
//! need no login of their own; access is the socket's peer uid or the mTLS certificate). The
//! PIN goes to signerd's `Login` RPC for the one call and is wiped after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use signerd_proto::admin::{
    DestroyObjectRequest, DestroyObjectResponse, FindObjectsRequest, FindObjectsResponse,
    GenerateKeyPairResponse, ImportPrivateKeyResponse, ListMechanismsRequest,
    ListMechanismsResponse, ListTokensRequest, ListTokensResponse, LoginResponse, Object,
    SignRequest, SignResponse, TokenInfo, UserType,
};
use zeroize::Zeroizing;

use crate::bridge::{Bridge, LoginRequest, Retry};
use crate::config::Config;
use crate::error::Error;
use crate::log::shim_log;
use crate::mechanism::{self, SignMechanism, SignOperation};
use crate::objects::{AttrValue, ObjectTable, ObjectView};
use crate::template::{self, Attr, NewObject};

/// The PKCS#11 version the shim implements.
pub const CRYPTOKI_VERSION: CK_VERSION = CK_VERSION {
    major: 2,
    minor: 40,
};

/// The shim's own version, for `CK_INFO` and `CK_SLOT_INFO`.
fn library_version() -> CK_VERSION {
    CK_VERSION {
        major: env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0),
        minor: env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0),
    }
}

/// `text` as a blank-padded PKCS#11 string field, cut to fit.
pub fn padded<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let mut end = text.len().min(N);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&text.as_bytes()[..end]);
    out
}

/// What a `C_Sign`/`C_SignFinal` call gives back.
#[derive(Debug, PartialEq, Eq)]
pub enum SignOutput {
    /// Only the length was asked for (null buffer); the operation goes on.
    Length(usize),
    /// The buffer is too small for a signature of this length; the operation goes on.
    TooSmall(usize),
    /// The signature; the operation is over.
    Signature(Vec<u8>),
}

/// Who is logged in to a token, for this application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Login {
    User,
    So,
}

/// One open session.
struct Session {
    slot: CK_SLOT_ID,
    read_write: bool,
    find: Option<FindState>,
    sign: Option<SignState>,
}

struct FindState {
    handles: Vec<CK_OBJECT_HANDLE>,
    next: usize,
}

struct SignState {
    key: Arc<ObjectView>,
    operation: SignOperation,
}

/// What the shim last learnt about signerd's tokens.
#[derive(Default)]
struct Slots {
    tokens: Vec<TokenInfo>,
    reachable: bool,
    why_not: String,
    asked: Option<Instant>,
}

/// How long an answer about signerd's tokens is reused: one `pkcs11-tool -L` asks for the slot
/// list, each slot and each token in a row.
const SLOTS_FRESH_FOR: Duration = Duration::from_millis(1000);

/// The initialized library.
pub struct Shim {
    /// The process that initialized it: a forked child must initialize again.
    pid: u32,
    config: Config,
    bridge: Bridge,
    slots: Mutex<Slots>,
    mechanisms: Mutex<Option<Vec<(CK_MECHANISM_TYPE, CK_MECHANISM_INFO)>>>,
    sessions: Mutex<SessionTable>,
    objects: Mutex<ObjectTable>,
    logins: Mutex<HashMap<CK_SLOT_ID, Login>>,
}

#[derive(Default)]
struct SessionTable {
    last: CK_SESSION_HANDLE,
    open: HashMap<CK_SESSION_HANDLE, Arc<Mutex<Session>>>,
}

// === the library's life ===

static SHIM: RwLock<Option<Arc<Shim>>> = RwLock::new(None);

/// `C_Initialize`: reads the configuration, sets up logging and starts the I/O thread.
pub fn initialize() -> Result<(), Error> {
    let mut global = SHIM.write()?;
    match global.as_ref() {
        Some(shim) if shim.pid == std::process::id() => return Err(Error::AlreadyInitialized),
        Some(_) => forget_parent(&mut global),
        None => {}
    }
    let config = Config::from_env().map_err(|e| {
        shim_log!(Error, "C_Initialize", "configuration error: {e}");
        Error::General(format!("configuration error: {e}"))
    })?;
    crate::log::configure(&config.log, config.log_level);
    let bridge = Bridge::start(&config)?;
    shim_log!(
        Info,
        "C_Initialize",
        "signerd pkcs11-shim {} using signerd at {}",
        env!("CARGO_PKG_VERSION"),
        bridge.describe()
    );
    *global = Some(Arc::new(Shim {
        pid: std::process::id(),
        config,
        bridge,
        slots: Mutex::new(Slots::default()),
        mechanisms: Mutex::new(None),
        sessions: Mutex::new(SessionTable::default()),
        objects: Mutex::new(ObjectTable::default()),
        logins: Mutex::new(HashMap::new()),
    }));
    Ok(())
}

/// `C_Finalize`: closes every session and stops the I/O thread.
pub fn finalize() -> Result<(), Error> {
    let shim = {
        let mut global = SHIM.write()?;
        if global.as_ref().is_some_and(|s| s.pid != std::process::id()) {
            forget_parent(&mut global);
        }
        global.take().ok_or(Error::NotInitialized)?
    };
    // Outside the global lock: joining the I/O thread can take a moment.
    shim.bridge.shutdown();
    Ok(())
}

/// The initialized library, or `CKR_CRYPTOKI_NOT_INITIALIZED` (also in a forked child that
/// has not called `C_Initialize` itself, as PKCS#11 asks).
pub fn get() -> Result<Arc<Shim>, Error> {
    match SHIM.read()?.clone() {
        Some(shim) if shim.pid == std::process::id() => Ok(shim),
        _ => Err(Error::NotInitialized),
    }
}

/// Drops the state a forked child inherited without running its destructors: they would
/// join the parent's I/O thread, which does not exist in the child.
fn forget_parent(global: &mut Option<Arc<Shim>>) {
    if let Some(inherited) = global.take() {
        std::mem::forget(inherited);
    }
}

/// `CK_INFO` of the library.
pub fn library_info() -> CK_INFO {
    CK_INFO {
        cryptokiVersion: CRYPTOKI_VERSION,
        manufacturerID: padded("signerd"),
        flags: 0,
        libraryDescription: padded("signerd PKCS#11 shim"),
        libraryVersion: library_version(),
    }
}

impl Shim {
    // === slots and tokens ===

    /// Asks signerd for its tokens and remembers the answer (or why there was none).
    fn refresh_slots(&self) -> Result<(), Error> {
        if self.config.disabled {
            let mut slots = self.slots.lock()?;
            slots.reachable = false;
            slots.why_not = "the shim is disabled (SIGNERD_SHIM_DISABLE)".into();
            return Ok(());
        }
        if let Some(asked) = self.slots.lock()?.asked {
            if asked.elapsed() < SLOTS_FRESH_FOR {
                return Ok(());
            }
        }
        let answer: Result<ListTokensResponse, Error> =
            self.bridge
                .call("ListTokens", Retry::Idempotent, ListTokensRequest {});
        let mut slots = self.slots.lock()?;
        slots.asked = Some(Instant::now());
        match answer {
            Ok(r) => {
                if r.tokens.is_empty() {
                    slots.reachable = false;
                    slots.why_not = "signerd exposes no token".into();
                } else {
                    slots.tokens = r.tokens;
                    slots.reachable = true;
                    slots.why_not.clear();
                }
            }
            Err(e) => {
                shim_log!(Warn, "C_GetSlotList", "no token: {e}");
                slots.reachable = false;
                slots.why_not = e.to_string();
            }
        }
        Ok(())
    }

    /// `C_GetSlotList`.
    pub fn slot_list(&self, token_present: bool) -> Result<Vec<CK_SLOT_ID>, Error> {
        self.refresh_slots()?;
        if self.config.disabled {
            return Ok(Vec::new());
        }
        let slots = self.slots.lock()?;
        let count = slots.tokens.len().max(1);
        Ok(if slots.reachable || !token_present {
            (0..count as CK_SLOT_ID).collect()
        } else {
            Vec::new()
        })
    }

    /// Fails unless `slot` is a slot the shim has shown.
    fn check_slot(&self, slot: CK_SLOT_ID) -> Result<(), Error> {
        let slots = self.slots.lock()?;
        if self.config.disabled || slot as usize >= slots.tokens.len().max(1) {
            return Err(Error::SlotIdInvalid(slot));
        }
        Ok(())
    }

    /// The token in `slot`, asking signerd first; `CKR_TOKEN_NOT_PRESENT` with the reason
    /// when it cannot be reached.
    fn token(&self, slot: CK_SLOT_ID) -> Result<TokenInfo, Error> {
        self.check_slot(slot)?;
        self.refresh_slots()?;
        let slots = self.slots.lock()?;
        if !slots.reachable {
            return Err(Error::TokenNotPresent(slots.why_not.clone()));
        }
        slots
            .tokens
            .get(slot as usize)
            .cloned()
            .ok_or(Error::SlotIdInvalid(slot))
    }

    /// `C_GetSlotInfo`.
    pub fn slot_info(&self, slot: CK_SLOT_ID) -> Result<CK_SLOT_INFO, Error> {
        self.check_slot(slot)?;
        self.refresh_slots()?;
        let slots = self.slots.lock()?;
        let mut flags = CKF_REMOVABLE_DEVICE | CKF_HW_SLOT;
        if slots.reachable {
            flags |= CKF_TOKEN_PRESENT;
        }
        let description = match slots.tokens.get(slot as usize) {
            Some(t) => format!("signerd token {} via {}", t.label, self.bridge.describe()),
            None => format!("signerd via {}", self.bridge.describe()),
        };
        Ok(CK_SLOT_INFO {
            slotDescription: padded(&description),
            manufacturerID: padded("signerd"),
            flags,
            hardwareVersion: library_version(),
            firmwareVersion: library_version(),
        })
    }

    /// `C_GetTokenInfo`.
    pub fn token_info(&self, slot: CK_SLOT_ID) -> Result<CK_TOKEN_INFO, Error> {
        let token = self.token(slot)?;
        let (mut sessions, mut rw_sessions) = (0, 0);
        for s in self.sessions.lock()?.open.values() {
            let s = s.lock()?;
            if s.slot == slot {
                sessions += 1;
                if s.read_write {
                    rw_sessions += 1;
                }
            }
        }
        Ok(CK_TOKEN_INFO {
            label: padded(&token.label),
            manufacturerID: padded(&token.manufacturer),
            model: padded(&token.model),
            serialNumber: padded(&token.serial),
            flags: CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_LOGIN_REQUIRED,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: sessions,
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: rw_sessions,
            ulMaxPinLen: 255,
            ulMinPinLen: 1,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: library_version(),
            firmwareVersion: library_version(),
            utcTime: [b' '; 16],
        })
    }

    /// The mechanisms offered, asked of signerd once.
    fn mechanisms(&self) -> Result<Vec<(CK_MECHANISM_TYPE, CK_MECHANISM_INFO)>, Error> {
        if let Some(m) = self.mechanisms.lock()?.as_ref() {
            return Ok(m.clone());
        }
        let listed: ListMechanismsResponse = self.bridge.call(
            "ListMechanisms",
            Retry::Idempotent,
            ListMechanismsRequest {},
        )?;
        let offered = mechanism::offered(&listed.mechanisms);
        *self.mechanisms.lock()? = Some(offered.clone());
        Ok(offered)
    }

    /// `C_GetMechanismList`.
    pub fn mechanism_list(&self, slot: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>, Error> {
        self.token(slot)?;
        Ok(self.mechanisms()?.into_iter().map(|(m, _)| m).collect())
    }

    /// `C_GetMechanismInfo`.
    pub fn mechanism_info(
        &self,
        slot: CK_SLOT_ID,
        mechanism: CK_MECHANISM_TYPE,
    ) -> Result<CK_MECHANISM_INFO, Error> {
        self.token(slot)?;
        self.mechanisms()?
            .into_iter()
            .find(|(m, _)| *m == mechanism)
            .map(|(_, info)| info)
            .ok_or(Error::MechanismInvalid(mechanism))
    }

    // === sessions and login ===

    fn session(&self, handle: CK_SESSION_HANDLE) -> Result<Arc<Mutex<Session>>, Error> {
        self.sessions
            .lock()?
            .open
            .get(&handle)
            .cloned()
            .ok_or(Error::SessionHandleInvalid)
    }

    fn login_of(&self, slot: CK_SLOT_ID) -> Result<Option<Login>, Error> {
        Ok(self.logins.lock()?.get(&slot).copied())
    }

    /// `C_OpenSession`.
    pub fn open_session(
        &self,
        slot: CK_SLOT_ID,
        flags: CK_FLAGS,
    ) -> Result<CK_SESSION_HANDLE, Error> {
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(Error::SessionParallelNotSupported);
        }
        self.token(slot)?;
        let read_write = flags & CKF_RW_SESSION != 0;
        if !read_write && self.login_of(slot)? == Some(Login::So) {
            return Err(Error::SessionReadWriteSoExists);
        }
        let mut table = self.sessions.lock()?;
        table.last += 1;
        let handle = table.last;
        table.open.insert(
            handle,
            Arc::new(Mutex::new(Session {
                slot,
                read_write,
                find: None,
                sign: None,
            })),
        );
        shim_log!(
            Info,
            "C_OpenSession",
            "session {handle} on slot {slot} (rw={read_write})"
        );
        Ok(handle)
    }

    /// `C_CloseSession`. The last session of a slot logs its user out.
    pub fn close_session(&self, handle: CK_SESSION_HANDLE) -> Result<(), Error> {
        let mut table = self.sessions.lock()?;
        let session = table
            .open
            .remove(&handle)
            .ok_or(Error::SessionHandleInvalid)?;
        let slot = session.lock()?.slot;
        let mut others = false;
        for s in table.open.values() {
            others |= s.lock()?.slot == slot;
        }
        if !others {
            self.logins.lock()?.remove(&slot);
        }
        Ok(())
    }

    /// `C_CloseAllSessions`.
    pub fn close_all_sessions(&self, slot: CK_SLOT_ID) -> Result<(), Error> {
        self.check_slot(slot)?;
        let mut table = self.sessions.lock()?;
        let mut doomed = Vec::new();
        for (h, s) in &table.open {
            if s.lock()?.slot == slot {
                doomed.push(*h);
            }
        }
        for h in doomed {
            table.open.remove(&h);
        }
        self.logins.lock()?.remove(&slot);
        Ok(())
    }

    /// `C_GetSessionInfo`.
    pub fn session_info(&self, handle: CK_SESSION_HANDLE) -> Result<CK_SESSION_INFO, Error> {
        let session = self.session(handle)?;
        let (slot, rw) = {
            let s = session.lock()?;
            (s.slot, s.read_write)
        };
        let state = match (self.login_of(slot)?, rw) {
            (None, false) => CKS_RO_PUBLIC_SESSION,
            (None, true) => CKS_RW_PUBLIC_SESSION,
            (Some(Login::User), false) => CKS_RO_USER_FUNCTIONS,
            (Some(Login::User), true) => CKS_RW_USER_FUNCTIONS,
            (Some(Login::So), _) => CKS_RW_SO_FUNCTIONS,
        };
        Ok(CK_SESSION_INFO {
            slotID: slot,
            state,
            flags: CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 },
            ulDeviceError: 0,
        })
    }

    /// `C_Login`: signerd checks the PIN; the shim keeps only the fact.
    pub fn login(
        &self,
        handle: CK_SESSION_HANDLE,
        user_type: CK_USER_TYPE,
        pin: Zeroizing<Vec<u8>>,
    ) -> Result<(), Error> {
        let slot = self.session(handle)?.lock()?.slot;
        let (who, wire) = match user_type {
            CKU_USER => (Login::User, UserType::User),
            CKU_SO => (Login::So, UserType::So),
            CKU_CONTEXT_SPECIFIC => return Err(Error::OperationNotInitialized),
            other => return Err(Error::UserTypeInvalid(other)),
        };
        match self.login_of(slot)? {
            Some(current) if current == who => return Err(Error::UserAlreadyLoggedIn),
            Some(_) => return Err(Error::UserAnotherAlreadyLoggedIn),
            None => {}
        }
        if who == Login::So {
            for s in self.sessions.lock()?.open.values() {
                let s = s.lock()?;
                if s.slot == slot && !s.read_write {
                    return Err(Error::SessionReadOnlyExists);
                }
            }
        }
        let request = LoginRequest {
            user_type: wire as i32,
            pin,
        };
        let _: LoginResponse = self.bridge.call("Login", Retry::OnlyIfNotSent, request)?;
        let mut logins = self.logins.lock()?;
        match logins.get(&slot) {
            Some(current) if *current == who => return Err(Error::UserAlreadyLoggedIn),
            Some(_) => return Err(Error::UserAnotherAlreadyLoggedIn),
            None => {}
        }
        logins.insert(slot, who);
        shim_log!(Info, "C_Login", "{who:?} logged in on slot {slot}");
        Ok(())
    }

    /// `C_Logout`.
    pub fn logout(&self, handle: CK_SESSION_HANDLE) -> Result<(), Error> {
        let slot = self.session(handle)?.lock()?.slot;
        self.logins
            .lock()?
            .remove(&slot)
            .map(|_| ())
            .ok_or(Error::UserNotLoggedIn)
    }

    // === objects ===

    /// Whether the configuration hides `view` (e.g. Ed25519 keys from libp11).
    fn hidden(&self, view: &ObjectView) -> bool {
        let key_type = view.key_type();
        self.config.hide_key_types.contains(&key_type)
            || self
                .config
                .max_id_len
                .is_some_and(|max| view.reference().id.len() > max)
    }

    /// The object behind `object`, if this session may see it.
    fn visible_object(
        &self,
        slot: CK_SLOT_ID,
        object: CK_OBJECT_HANDLE,
    ) -> Result<Arc<ObjectView>, Error> {
        let view = self
            .objects
            .lock()?
            .get(object)
            .ok_or(Error::ObjectHandleInvalid)?;
        if self.hidden(&view) {
            return Err(Error::ObjectHandleInvalid);
        }
        if view.is_private() && self.login_of(slot)? != Some(Login::User) {
            return Err(Error::UserNotLoggedIn);
        }
        Ok(view)
    }

    /// Records objects signerd returned and gives their handles.
    fn remember(
        &self,
        objects: Vec<Object>,
    ) -> Result<Vec<(CK_OBJECT_HANDLE, Arc<ObjectView>)>, Error> {
        let mut table = self.objects.lock()?;
        Ok(objects.into_iter().map(|o| table.upsert(o)).collect())
    }

    /// `C_FindObjectsInit`: asks signerd now, so `C_FindObjects` pages through a snapshot.
    pub fn find_init(&self, handle: CK_SESSION_HANDLE, template: &[Attr]) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        if s.find.is_some() {
            return Err(Error::OperationActive);
        }
        let user = self.login_of(s.slot)? == Some(Login::User);
        let handles = match template::find_request(template)? {
            None => Vec::new(),
            Some(request) => {
                let everything = request == FindObjectsRequest::default();
                let found: FindObjectsResponse =
                    self.bridge
                        .call("FindObjects", Retry::Idempotent, request)?;
                let found = self.remember(found.objects)?;
                if everything {
                    let seen: Vec<_> = found.iter().map(|(h, _)| *h).collect();
                    self.objects.lock()?.retain_seen(&seen);
                }
                found
                    .into_iter()
                    .filter(|(_, v)| !self.hidden(v) && (user || !v.is_private()))
                    .filter(|(_, v)| v.matches(template))
                    .map(|(h, _)| h)
                    .collect()
            }
        };
        s.find = Some(FindState { handles, next: 0 });
        Ok(())
    }

    /// `C_FindObjects`.
    pub fn find(
        &self,
        handle: CK_SESSION_HANDLE,
        max: usize,
    ) -> Result<Vec<CK_OBJECT_HANDLE>, Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        let find = s.find.as_mut().ok_or(Error::OperationNotInitialized)?;
        let end = find.handles.len().min(find.next.saturating_add(max));
        let page = find.handles[find.next..end].to_vec();
        find.next = end;
        Ok(page)
    }

    /// `C_FindObjectsFinal`.
    pub fn find_final(&self, handle: CK_SESSION_HANDLE) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        s.find
            .take()
            .map(|_| ())
            .ok_or(Error::OperationNotInitialized)
    }

    /// `C_GetAttributeValue`: one answer per requested type.
    pub fn attributes(
        &self,
        handle: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrValue>, Error> {
        let slot = self.session(handle)?.lock()?.slot;
        let view = self.visible_object(slot, object)?;
        Ok(types.iter().map(|t| view.attribute(*t)).collect())
    }

    /// Checks that the session may change the token.
    fn writable(&self, handle: CK_SESSION_HANDLE) -> Result<(CK_SLOT_ID, Login), Error> {
        let (slot, rw) = {
            let session = self.session(handle)?;
            let s = session.lock()?;
            (s.slot, s.read_write)
        };
        if !rw {
            return Err(Error::SessionReadOnly);
        }
        let who = self.login_of(slot)?.ok_or(Error::UserNotLoggedIn)?;
        Ok((slot, who))
    }

    /// `C_CreateObject`: stores a certificate, or imports a private key into the token (the
    /// notary CLI does this logged in as SO, like ykcs11 allows).
    pub fn create_object(
        &self,
        handle: CK_SESSION_HANDLE,
        template: &[Attr],
    ) -> Result<CK_OBJECT_HANDLE, Error> {
        self.writable(handle)?;
        let object = match template::new_object(template)? {
            NewObject::Certificate(request) => {
                self.bridge
                    .call::<_, Object>("StoreCertificate", Retry::OnlyIfNotSent, request)?
            }
            NewObject::PrivateKey(request) => {
                let response: ImportPrivateKeyResponse =
                    self.bridge
                        .call("ImportPrivateKey", Retry::OnlyIfNotSent, request)?;
                if let Some(public) = response.public_key {
                    self.remember(vec![public])?;
                }
                response.private_key.ok_or_else(|| Error::Refused {
                    call: "ImportPrivateKey",
                    message: "signerd returned no private key object".into(),
                })?
            }
        };
        let (h, view) = self
            .remember(vec![object])?
            .pop()
            .ok_or_else(|| Error::General("no object remembered".into()))?;
        shim_log!(
            Info,
            "C_CreateObject",
            "created {:?} object with CKA_ID {} in signerd's token",
            view.class(),
            hex_id(&view.reference().id)
        );
        Ok(h)
    }

    /// `C_GenerateKeyPair`: the key pair is made in signerd's token.
    pub fn generate_key_pair(
        &self,
        handle: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        public: &[Attr],
        private: &[Attr],
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), Error> {
        self.writable(handle)?;
        let request = template::key_pair_request(mechanism, public, private)?;
        let response: GenerateKeyPairResponse =
            self.bridge
                .call("GenerateKeyPair", Retry::OnlyIfNotSent, request)?;
        let missing = || Error::Refused {
            call: "GenerateKeyPair",
            message: "signerd returned no key object".into(),
        };
        let public = response.public_key.ok_or_else(missing)?;
        let private = response.private_key.ok_or_else(missing)?;
        let mut handles = self.remember(vec![public, private])?;
        let (private_h, view) = handles.pop().ok_or_else(missing)?;
        let (public_h, _) = handles.pop().ok_or_else(missing)?;
        shim_log!(
            Info,
            "C_GenerateKeyPair",
            "generated a {:?} key pair in signerd's token, CKA_ID {}",
            view.key_type(),
            hex_id(&view.reference().id)
        );
        Ok((public_h, private_h))
    }

    /// `C_DestroyObject`.
    pub fn destroy_object(
        &self,
        handle: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> Result<(), Error> {
        let (slot, _) = self.writable(handle)?;
        let view = self.visible_object(slot, object)?;
        let _: DestroyObjectResponse = self.bridge.call(
            "DestroyObject",
            Retry::Idempotent,
            DestroyObjectRequest {
                r#ref: Some(view.reference()),
            },
        )?;
        self.objects.lock()?.remove(object);
        Ok(())
    }

    // === signing ===

    /// `C_SignInit`.
    pub fn sign_init(
        &self,
        handle: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        param: &[u8],
        key: CK_OBJECT_HANDLE,
    ) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        if s.sign.is_some() {
            return Err(Error::OperationActive);
        }
        if self.login_of(s.slot)? != Some(Login::User) {
            return Err(Error::UserNotLoggedIn);
        }
        let mechanism = SignMechanism::parse(mechanism, param)?;
        if !self
            .mechanisms()?
            .iter()
            .any(|(m, _)| *m == mechanism.mechanism_type())
        {
            return Err(Error::MechanismInvalid(mechanism.mechanism_type()));
        }
        let view = match self.visible_object(s.slot, key) {
            Ok(v) => v,
            Err(Error::ObjectHandleInvalid) => return Err(Error::KeyHandleInvalid),
            Err(e) => return Err(e),
        };
        if !view.is_private() {
            return Err(Error::KeyHandleInvalid);
        }
        if view.key_type() != mechanism.key_type() {
            return Err(Error::KeyTypeInconsistent);
        }
        s.sign = Some(SignState {
            key: view,
            operation: SignOperation::new(mechanism),
        });
        Ok(())
    }

    /// `C_Sign`: `capacity` is the caller's buffer size, `None` for a size query.
    pub fn sign(
        &self,
        handle: CK_SESSION_HANDLE,
        data: &[u8],
        capacity: Option<usize>,
    ) -> Result<SignOutput, Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        let state = s.sign.as_mut().ok_or(Error::OperationNotInitialized)?;
        if state.operation.multipart {
            // C_Sign cannot finish a multi-part operation; the operation stays as it was.
            return Err(Error::OperationActive);
        }
        let expected = state.key.signature_len();
        if let Some(len) = expected {
            match capacity {
                None => return Ok(SignOutput::Length(len)),
                Some(c) if c < len => return Ok(SignOutput::TooSmall(len)),
                Some(_) => {}
            }
        }
        let result = state
            .operation
            .update(data)
            .and_then(|()| self.sign_now(state));
        // Anything but a size answer ends the operation.
        s.sign = None;
        finish(result?, capacity)
    }

    /// `C_SignUpdate`.
    pub fn sign_update(&self, handle: CK_SESSION_HANDLE, data: &[u8]) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        let state = s.sign.as_mut().ok_or(Error::OperationNotInitialized)?;
        state.operation.multipart = true;
        let result = state.operation.update(data);
        if result.is_err() {
            s.sign = None;
        }
        result
    }

    /// `C_SignFinal`.
    pub fn sign_final(
        &self,
        handle: CK_SESSION_HANDLE,
        capacity: Option<usize>,
    ) -> Result<SignOutput, Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        let state = s.sign.as_mut().ok_or(Error::OperationNotInitialized)?;
        if let Some(len) = state.key.signature_len() {
            match capacity {
                None => return Ok(SignOutput::Length(len)),
                Some(c) if c < len => return Ok(SignOutput::TooSmall(len)),
                Some(_) => {}
            }
        }
        let result = self.sign_now(state);
        s.sign = None;
        finish(result?, capacity)
    }

    /// Sends the operation to signerd.
    fn sign_now(&self, state: &SignState) -> Result<Vec<u8>, Error> {
        let (mechanism, data, pss) = state.operation.request()?;
        let response: SignResponse = self.bridge.call(
            "Sign",
            Retry::Idempotent,
            SignRequest {
                key: Some(state.key.reference()),
                mechanism: mechanism as u64,
                data,
                pss,
            },
        )?;
        Ok(response.signature)
    }
}

/// The answer for a signature signerd made, given the caller's buffer.
fn finish(signature: Vec<u8>, capacity: Option<usize>) -> Result<SignOutput, Error> {
    match capacity {
        Some(c) if c >= signature.len() => Ok(SignOutput::Signature(signature)),
        // The length was not known beforehand and the buffer is short: the signature is
        // lost, but the caller learns the size for its next attempt.
        _ => Ok(SignOutput::TooSmall(signature.len())),
    }
}

/// A `CKA_ID` for log lines.
fn hex_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim")
            .field("signerd", &self.bridge.describe())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_blank_padded_and_cut_on_char_boundaries() {
        assert_eq!(&padded::<8>("abc"), b"abc     ");
        assert_eq!(&padded::<4>("abcdef"), b"abcd");
        let cut: [u8; 3] = padded("aé");
        assert_eq!(&cut, "aé".as_bytes());
        let cut: [u8; 2] = padded("aé");
        assert_eq!(&cut, b"a ");
    }

    #[test]
    fn unknown_signature_lengths_still_report_a_short_buffer() {
        assert_eq!(
            finish(vec![1; 64], Some(10)).unwrap(),
            SignOutput::TooSmall(64)
        );
        assert_eq!(
            finish(vec![1; 64], Some(64)).unwrap(),
            SignOutput::Signature(vec![1; 64])
        );
    }
}
