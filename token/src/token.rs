//! [`Token`]: TUF keys held in one PKCS#11 token, with pooled sessions, cached object handles
//! and recovery from session and token faults.
//!
//! Every method blocks on the token: call them from a blocking thread, never from an async
//! task. The token is the only store: keys are found by `CKA_ID` (the TUF key ID), and gun and
//! role live in `CKA_LABEL`, so a restarted signerd, or a second one on the same token, finds
//! every key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::encoding;
use crate::error::{CallError, Fault, TokenError};
use crate::key::{KeyAlgorithm, KeyId, KeyInfo, KeyUsage, Signature};
use crate::objects::{today, KeyNaming, KeySpec};
use crate::pin::PinSource;
use crate::pool::SessionPool;
use crate::uri::Pkcs11Uri;

/// DER of the P-256 curve OID (1.2.840.10045.3.1.7), the `CKA_EC_PARAMS` of ECDSA keys.
pub(crate) const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the Ed25519 OID (1.3.101.112), the `CKA_EC_PARAMS` of Ed25519 keys.
pub(crate) const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of the printable string `edwards25519`, how some tokens name the curve instead.
const ED25519_PARAMS_NAME: &[u8] = b"\x13\x0cedwards25519";

/// How to reach a token and how to use it.
#[derive(Clone, Debug)]
pub struct TokenConfig {
    /// The token URI: selector, `module-path`, and usually `pin-source`.
    pub uri: Pkcs11Uri,
    /// A PIN source that overrides the URI's `pin-source`.
    pub pin: Option<PinSource>,
    /// Most sessions to open (signatures run in parallel on this many).
    pub sessions: usize,
    /// Modulus size of new RSA keys.
    pub rsa_bits: u32,
    /// How long a request waits for a free session before it fails.
    pub checkout_timeout: Duration,
}

impl TokenConfig {
    /// A config with the defaults for everything but the URI.
    pub fn new(uri: Pkcs11Uri) -> TokenConfig {
        TokenConfig {
            uri,
            pin: None,
            sessions: 8,
            rsa_bits: 3072,
            checkout_timeout: Duration::from_secs(10),
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
}

/// A found token slot and the sessions open on it.
pub(crate) struct Connection {
    generation: u64,
    pub(crate) slot: Slot,
    pub(crate) description: TokenDescription,
    pool: SessionPool,
}

#[derive(Clone)]
struct CachedKey {
    /// Shared, so a signature on the hot path clones a pointer, not the public key.
    info: Arc<KeyInfo>,
    private: ObjectHandle,
    generation: u64,
}

/// What an operation on one session returns: a value, or a failed call to classify.
pub(crate) type Attempt<T> = Result<T, OpError>;

/// An operation's failure: a PKCS#11 call to classify and maybe retry, or a final answer.
pub(crate) enum OpError {
    Call(CallError),
    Final(TokenError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Call(e.into())
    }
}

impl From<TokenError> for OpError {
    fn from(e: TokenError) -> Self {
        OpError::Final(e)
    }
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

    /// Generates a key pair in the token (private half sensitive and not extractable) and
    /// labels it with its TUF key ID and usage.
    pub fn create_key(
        &self,
        algorithm: KeyAlgorithm,
        usage: &KeyUsage,
    ) -> Result<KeyInfo, TokenError> {
        let key = self.run(|conn, session| self.generate(conn, session, algorithm, usage))?;
        tracing::debug!(key_id = %key.info.id, "key pair generated in the token");
        let info = KeyInfo::clone(&key.info);
        self.write_keys().insert(info.id, key);
        Ok(info)
    }

    /// The public key, algorithm and usage of a key.
    pub fn key_info(&self, id: &KeyId) -> Result<KeyInfo, TokenError> {
        self.run(|conn, session| Ok(KeyInfo::clone(&self.lookup(conn, session, id)?.info)))
    }

    /// Signs `content` with key `id` in Notary's encoding for the key's algorithm.
    pub fn sign(&self, id: &KeyId, content: &[u8]) -> Result<Signature, TokenError> {
        self.run(|conn, session| {
            let key = self.lookup(conn, session, id)?;
            let bytes = match key.info.algorithm {
                KeyAlgorithm::Ecdsa => {
                    let digest = Sha256::digest(content);
                    let sig = self.sign_raw(session, &Mechanism::Ecdsa, &key, &digest)?;
                    encoding::ecdsa_raw_signature(sig).map_err(|reason| {
                        TokenError::MalformedKey {
                            id: id.to_string(),
                            reason,
                        }
                    })?
                }
                KeyAlgorithm::Ed25519 => {
                    let mech = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                    self.sign_raw(session, &mech, &key, content)?
                }
                KeyAlgorithm::Rsa => {
                    let digest = Sha256::digest(content);
                    let mech = Mechanism::RsaPkcsPss(PkcsPssParams {
                        hash_alg: MechanismType::SHA256,
                        mgf: PkcsMgfType::MGF1_SHA256,
                        s_len: 32.into(),
                    });
                    self.sign_raw(session, &mech, &key, &digest)?
                }
            };
            Ok(Signature {
                key: key.info,
                bytes,
            })
        })
    }

    /// Deletes both halves of key `id`; `false` when there was nothing to delete.
    pub fn delete_key(&self, id: &KeyId) -> Result<bool, TokenError> {
        self.write_keys().remove(id);
        self.run(|_conn, session| {
            let objects = session.find_objects(&[Attribute::Id(id.as_bytes().to_vec())])?;
            for object in &objects {
                match session.destroy_object(*object) {
                    Ok(()) | Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(!objects.is_empty())
        })
    }

    /// Every signerd key in the token (private keys whose `CKA_ID` is a TUF key ID).
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>, TokenError> {
        self.run(|conn, session| {
            let handles = session.find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Token(true),
            ])?;
            let mut keys = Vec::new();
            for handle in handles {
                let attrs = session.get_attributes(handle, &[AttributeType::Id])?;
                let id = attrs.iter().find_map(|a| match a {
                    Attribute::Id(bytes) => KeyId::from_cka_id(bytes),
                    _ => None,
                });
                if let Some(id) = id {
                    match self.lookup(conn, session, &id) {
                        Ok(key) => keys.push(KeyInfo::clone(&key.info)),
                        Err(OpError::Final(TokenError::MalformedKey { id, reason })) => {
                            tracing::warn!(%id, %reason, "skipping a key object signerd cannot use");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            keys.sort_by(|a, b| (&a.usage.gun, &a.usage.role, a.id).cmp(&(&b.usage.gun, &b.usage.role, b.id)));
            Ok(keys)
        })
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.current().map(|c| c.pool.open_sessions()).unwrap_or(0)
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

    // === operations on one session ===

    /// Generates a TUF-named key pair (for notary-server's `CreateKey`) and caches it.
    fn generate(
        &self,
        conn: &Connection,
        session: &Session,
        algorithm: KeyAlgorithm,
        usage: &KeyUsage,
    ) -> Attempt<CachedKey> {
        let spec = KeySpec {
            algorithm,
            rsa_bits: None,
            naming: KeyNaming::Tuf(usage.clone()),
        };
        let pair = self.generate_pair(session, &spec)?;
        Ok(CachedKey {
            info: Arc::new(KeyInfo {
                id: pair.tuf_id,
                algorithm,
                public_key: pair.public_key,
                usage: usage.clone(),
            }),
            private: pair.private,
            generation: conn.generation,
        })
    }

    /// Generates a key pair in the token (private half sensitive and not extractable, both
    /// public half dated today), named as `spec` says: every key signerd makes goes through here.
    pub(crate) fn generate_pair(
        &self,
        session: &Session,
        spec: &KeySpec,
    ) -> Attempt<GeneratedPair> {
        // A TUF key ID is a hash of the public key, known only after generation: generate under
        // a random placeholder ID, then set the real CKA_ID and label on both halves.
        let (first_id, first_label) = match &spec.naming {
            KeyNaming::Tuf(usage) => (
                session.generate_random_vec(16)?,
                format!("pending@{}", usage.gun).into_bytes(),
            ),
            KeyNaming::TufId { label } => {
                (session.generate_random_vec(16)?, label.clone().into_bytes())
            }
            KeyNaming::Fixed { id, label } => (id.clone(), label.clone().into_bytes()),
        };
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Private(private),
                Attribute::Id(first_id.clone()),
                Attribute::Label(first_label.clone()),
            ]
        };
        let mut public = common(false);
        // Dated on the public half only: SoftHSM 2.6 stores CK_DATE values of private objects
        // so that reading them back fails with CKR_GENERAL_ERROR.
        public.extend([Attribute::Verify(true), Attribute::StartDate(today())]);
        let mut private = common(true);
        private.extend([
            Attribute::Sign(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ]);
        let algorithm = spec.algorithm;
        let mechanism = match algorithm {
            KeyAlgorithm::Ecdsa => {
                public.push(Attribute::EcParams(P256_PARAMS.to_vec()));
                Mechanism::EccKeyPairGen
            }
            KeyAlgorithm::Ed25519 => {
                public.push(Attribute::EcParams(ED25519_PARAMS.to_vec()));
                Mechanism::EccEdwardsKeyPairGen
            }
            KeyAlgorithm::Rsa => {
                let bits = spec.rsa_bits.unwrap_or(self.config.rsa_bits);
                public.push(Attribute::ModulusBits(u64::from(bits).into()));
                public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        let (pub_handle, priv_handle) = session.generate_key_pair(&mechanism, &public, &private)?;
        let named = (|| -> Attempt<(Vec<u8>, KeyId)> {
            let public_key = read_public_key(session, pub_handle, algorithm)?;
            let id = KeyId::of_public_key(algorithm, &public_key);
            let final_label = match &spec.naming {
                KeyNaming::Tuf(usage) => Some(usage.label()),
                KeyNaming::TufId { label } => Some(label.clone()),
                KeyNaming::Fixed { .. } => None,
            };
            if let Some(label) = final_label {
                let final_attrs = [
                    Attribute::Id(id.as_bytes().to_vec()),
                    Attribute::Label(label.into_bytes()),
                ];
                session.update_attributes(pub_handle, &final_attrs)?;
                session.update_attributes(priv_handle, &final_attrs)?;
            }
            Ok((public_key, id))
        })();
        match named {
            Ok((public_key, tuf_id)) => Ok(GeneratedPair {
                public: pub_handle,
                private: priv_handle,
                public_key,
                tuf_id,
            }),
            Err(e) => {
                // Leave no half-made key behind.
                let _ = session.destroy_object(pub_handle);
                let _ = session.destroy_object(priv_handle);
                Err(e)
            }
        }
    }

    /// The cached key, or the key found in the token by `CKA_ID` (and then cached).
    fn lookup(&self, conn: &Connection, session: &Session, id: &KeyId) -> Attempt<CachedKey> {
        if let Some(key) = self.read_keys().get(id) {
            if key.generation == conn.generation {
                return Ok(key.clone());
            }
        }
        let cka_id = Attribute::Id(id.as_bytes().to_vec());
        let find_one = |class: ObjectClass| -> Attempt<Option<ObjectHandle>> {
            let found = session.find_objects(&[Attribute::Class(class), cka_id.clone()])?;
            Ok(found.first().copied())
        };
        let Some(private) = find_one(ObjectClass::PRIVATE_KEY)? else {
            return Err(TokenError::KeyNotFound(*id).into());
        };
        let malformed = |reason: String| TokenError::MalformedKey {
            id: id.to_string(),
            reason,
        };
        let Some(public) = find_one(ObjectClass::PUBLIC_KEY)? else {
            return Err(
                malformed("the private key has no public key object beside it".into()).into(),
            );
        };
        let attrs =
            session.get_attributes(private, &[AttributeType::KeyType, AttributeType::Label])?;
        let mut key_type = None;
        let mut label = String::new();
        for attr in attrs {
            match attr {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                _ => {}
            }
        }
        let algorithm = match key_type {
            Some(KeyType::EC) => KeyAlgorithm::Ecdsa,
            Some(KeyType::EC_EDWARDS) => KeyAlgorithm::Ed25519,
            Some(KeyType::RSA) => KeyAlgorithm::Rsa,
            other => return Err(malformed(format!("unsupported key type {other:?}")).into()),
        };
        let public_key = read_public_key(session, public, algorithm)?;
        if KeyId::of_public_key(algorithm, &public_key) != *id {
            return Err(
                malformed("its CKA_ID is not the TUF key ID of its public key".into()).into(),
            );
        }
        let key = CachedKey {
            info: Arc::new(KeyInfo {
                id: *id,
                algorithm,
                public_key,
                usage: KeyUsage::from_label(&label),
            }),
            private,
            generation: conn.generation,
        };
        self.write_keys().insert(*id, key.clone());
        Ok(key)
    }

    fn sign_raw(
        &self,
        session: &Session,
        mechanism: &Mechanism,
        key: &CachedKey,
        data: &[u8],
    ) -> Attempt<Vec<u8>> {
        session.sign(mechanism, key.private, data).map_err(|e| {
            let call: CallError = e.into();
            if call.fault() == Fault::StaleHandle {
                // The object went away under us (deleted by another signerd, or the token was
                // swapped): forget it so the retry looks it up again.
                self.write_keys().remove(&key.info.id);
            }
            OpError::Call(call)
        })
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
        let conn = Arc::new(Connection {
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
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
        *guard = Some(Arc::clone(&conn));
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

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, HashMap<KeyId, CachedKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops a key from the handle cache (its objects are about to change).
    pub(crate) fn forget_key(&self, id: &KeyId) {
        self.write_keys().remove(id);
    }

    fn write_keys(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<KeyId, CachedKey>> {
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

/// A key pair just generated in the token.
pub(crate) struct GeneratedPair {
    pub(crate) public: ObjectHandle,
    pub(crate) private: ObjectHandle,
    /// The public key in Notary's encoding.
    pub(crate) public_key: Vec<u8>,
    /// The TUF key ID of the public key (the CKA_ID too, when named the TUF way).
    pub(crate) tuf_id: KeyId,
}

/// Reads a public key object into Notary's encoding for `algorithm`.
pub(crate) fn read_public_key(
    session: &Session,
    handle: ObjectHandle,
    algorithm: KeyAlgorithm,
) -> Attempt<Vec<u8>> {
    let want: &[AttributeType] = match algorithm {
        KeyAlgorithm::Ecdsa | KeyAlgorithm::Ed25519 => {
            &[AttributeType::EcParams, AttributeType::EcPoint]
        }
        KeyAlgorithm::Rsa => &[AttributeType::Modulus, AttributeType::PublicExponent],
    };
    let (mut params, mut point, mut modulus, mut exponent) = (None, None, None, None);
    for attr in session.get_attributes(handle, want)? {
        match attr {
            Attribute::EcParams(v) => params = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            Attribute::Modulus(v) => modulus = Some(v),
            Attribute::PublicExponent(v) => exponent = Some(v),
            _ => {}
        }
    }
    let bad = |reason: String| {
        OpError::Final(TokenError::MalformedKey {
            id: format!("handle {handle}"),
            reason,
        })
    };
    match algorithm {
        KeyAlgorithm::Ecdsa => {
            if params.as_deref() != Some(P256_PARAMS) {
                return Err(bad(
                    "an EC key that is not on P-256 (signerd's ecdsa is P-256 only)".into(),
                ));
            }
            encoding::p256_spki(&point.unwrap_or_default()).map_err(bad)
        }
        KeyAlgorithm::Ed25519 => {
            let p = params.unwrap_or_default();
            if p != ED25519_PARAMS && p != ED25519_PARAMS_NAME {
                return Err(bad("an Edwards key that is not Ed25519".into()));
            }
            encoding::ed25519_raw(&point.unwrap_or_default()).map_err(bad)
        }
        KeyAlgorithm::Rsa => {
            encoding::rsa_spki(&modulus.unwrap_or_default(), &exponent.unwrap_or_default())
                .map_err(bad)
        }
    }
}
