//! Session management and login.

use cryptoki_sys::*;
use zeroize::Zeroizing;

use super::args::*;
use crate::backend;
use crate::error::Error;

cryptoki_fn! {
    /// Opens a session (serial only; no notification callbacks are made).
    fn C_OpenSession(
        slotID: CK_SLOT_ID,
        flags: CK_FLAGS,
        pApplication: *mut std::os::raw::c_void,
        Notify: CK_NOTIFY,
        phSession: *mut CK_SESSION_HANDLE,
    ) {
        let _ = (pApplication, Notify);
        let shim = backend::get()?;
        // SAFETY: checked by `out`.
        let handle = unsafe { out(phSession, "phSession") }?;
        *handle = shim.open_session(slotID, flags)?;
        Ok(())
    }
}

cryptoki_fn! {
    /// Closes a session; the last one on a slot logs the user out.
    fn C_CloseSession(hSession: CK_SESSION_HANDLE) {
        backend::get()?.close_session(hSession)
    }
}

cryptoki_fn! {
    /// Closes every session on a slot.
    fn C_CloseAllSessions(slotID: CK_SLOT_ID) {
        backend::get()?.close_all_sessions(slotID)
    }
}

cryptoki_fn! {
    /// The session's slot, state and flags.
    fn C_GetSessionInfo(hSession: CK_SESSION_HANDLE, pInfo: *mut CK_SESSION_INFO) {
        let shim = backend::get()?;
        // SAFETY: checked by `out`.
        let info = unsafe { out(pInfo, "pInfo") }?;
        *info = shim.session_info(hSession)?;
        Ok(())
    }
}

cryptoki_fn! {
    /// Logs in as CKU_USER or CKU_SO: signerd checks the PIN; the copy is wiped on return.
    fn C_Login(hSession: CK_SESSION_HANDLE, userType: CK_USER_TYPE, pPin: *mut CK_UTF8CHAR, ulPinLen: CK_ULONG) {
        let shim = backend::get()?;
        if pPin.is_null() {
            // A protected authentication path (PIN pad) does not exist here.
            return Err(Error::ArgumentsBad("pPin (no protected authentication path)"));
        }
        // SAFETY: checked by `bytes_in` (non-null, aligned, length); the caller gave
        // ulPinLen bytes.
        let pin = Zeroizing::new(unsafe { bytes_in(pPin, ulPinLen, "pPin") }?.to_vec());
        shim.login(hSession, userType, pin)
    }
}

cryptoki_fn! {
    /// Logs the application out of the session's token.
    fn C_Logout(hSession: CK_SESSION_HANDLE) {
        backend::get()?.logout(hSession)
    }
}
