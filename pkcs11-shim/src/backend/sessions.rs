//! Sessions: serial sessions of the shim's own, each on one slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cryptoki_sys::*;

use super::find::FindState;
use super::login::Login;
use super::sign::SignState;
use super::verify::VerifyState;
use super::Shim;
use crate::error::Error;
use crate::log::shim_log;

/// One open session.
pub(super) struct Session {
    pub(super) slot: CK_SLOT_ID,
    pub(super) read_write: bool,
    pub(super) find: Option<FindState>,
    pub(super) sign: Option<SignState>,
    pub(super) verify: Option<VerifyState>,
}

#[derive(Default)]
pub(super) struct SessionTable {
    pub(super) last: CK_SESSION_HANDLE,
    pub(super) open: HashMap<CK_SESSION_HANDLE, Arc<Mutex<Session>>>,
}

impl Shim {
    pub(super) fn session(&self, handle: CK_SESSION_HANDLE) -> Result<Arc<Mutex<Session>>, Error> {
        self.sessions
            .lock()?
            .open
            .get(&handle)
            .cloned()
            .ok_or(Error::SessionHandleInvalid)
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
                verify: None,
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
        drop(table);
        let keys = self.objects.lock()?.drop_session_objects(|s| s == handle);
        self.destroy_session_keys(keys);
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
        for h in &doomed {
            table.open.remove(h);
        }
        self.logins.lock()?.remove(&slot);
        drop(table);
        let keys = self
            .objects
            .lock()?
            .drop_session_objects(|s| doomed.contains(&s));
        self.destroy_session_keys(keys);
        Ok(())
    }

    /// `C_SessionCancel` (PKCS#11 3.0): ends the operations `flags` names.
    pub fn session_cancel(&self, handle: CK_SESSION_HANDLE, flags: CK_FLAGS) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        if flags & CKF_SIGN != 0 {
            s.sign = None;
        }
        if flags & CKF_VERIFY != 0 {
            s.verify = None;
        }
        if flags & CKF_FIND_OBJECTS != 0 {
            s.find = None;
        }
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
}
