//! The login state: who is logged in to each token, for this application. signerd checks the
//! PIN; the shim keeps only the fact.

use cryptoki_sys::*;
use signerd_client::secret::LoginRequest;
use signerd_proto::admin::{LoginResponse, UserType};
use zeroize::Zeroizing;

use super::Shim;
use crate::error::Error;
use crate::log::shim_log;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Login {
    /// `CKU_USER`.
    User,
    /// `CKU_SO`.
    So,
}

impl Shim {
    pub(super) fn login_of(&self, slot: CK_SLOT_ID) -> Result<Option<Login>, Error> {
        Ok(self.logins.lock()?.get(&slot).copied())
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
        let _: LoginResponse = self.bridge.call(request)?;
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
}
