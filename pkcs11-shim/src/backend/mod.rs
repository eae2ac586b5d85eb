//! The shim's state and every PKCS#11 operation, in safe Rust: one file per function family
//! ([`slots`], [`sessions`], [`login`], [`objects`], [`find`], [`sign`]) over the one [`Shim`]
//! value that `C_Initialize` makes.
//!
//! Sessions, handles and the login state are the shim's own, not signerd's: when signerd
//! restarts, the next call reconnects and goes on (signerd's admin RPCs other than `Login`
//! need no login of their own; access is the socket's peer uid or the mTLS certificate). The
//! PIN goes to signerd's `Login` RPC for the one call and is wiped after it.

mod find;
mod login;
mod objects;
mod sessions;
mod sign;
mod slots;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use cryptoki_sys::*;

use crate::bridge::Bridge;
use crate::config::Config;
use crate::error::Error;
use crate::log::shim_log;
use crate::objects::ObjectTable;

use login::Login;
use sessions::SessionTable;
use slots::Slots;

pub use sign::SignOutput;

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
    fn the_library_version_is_the_crate_version() {
        let info = library_info();
        let crate_version: Vec<u8> = env!("CARGO_PKG_VERSION")
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(
            (info.libraryVersion.major, info.libraryVersion.minor),
            (crate_version[0], crate_version[1])
        );
        assert!(
            info.libraryVersion.major >= 1,
            "a 0.x provider reads as a prototype to PKCS#11 consumers"
        );
    }

    #[test]
    fn strings_are_blank_padded_and_cut_on_char_boundaries() {
        assert_eq!(&padded::<8>("abc"), b"abc     ");
        assert_eq!(&padded::<4>("abcdef"), b"abcd");
        let cut: [u8; 3] = padded("aé");
        assert_eq!(&cut, "aé".as_bytes());
        let cut: [u8; 2] = padded("aé");
        assert_eq!(&cut, b"a ");
    }
}
