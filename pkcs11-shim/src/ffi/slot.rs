//! Slot and token management: slots, tokens and mechanisms.

use cryptoki_sys::*;

use super::args::*;
use crate::backend;
use crate::error::Error;

cryptoki_fn! {
    /// One slot per token signerd exposes.
    fn C_GetSlotList(tokenPresent: CK_BBOOL, pSlotList: *mut CK_SLOT_ID, pulCount: *mut CK_ULONG) {
        let shim = backend::get()?;
        if pulCount.is_null() {
            return Err(Error::ArgumentsBad("pulCount"));
        }
        let slots = shim.slot_list(tokenPresent != CK_FALSE)?;
        // SAFETY: `list_out` checks both pointers; the caller sized the list by *pulCount.
        unsafe { list_out(&slots, pSlotList, pulCount) }
    }
}

cryptoki_fn! {
    /// The slot, with `CKF_TOKEN_PRESENT` when signerd answers.
    fn C_GetSlotInfo(slotID: CK_SLOT_ID, pInfo: *mut CK_SLOT_INFO) {
        let shim = backend::get()?;
        // SAFETY: checked by `out`.
        let info = unsafe { out(pInfo, "pInfo") }?;
        *info = shim.slot_info(slotID)?;
        Ok(())
    }
}

cryptoki_fn! {
    /// signerd's token, or `CKR_TOKEN_NOT_PRESENT` with the reason in the log.
    fn C_GetTokenInfo(slotID: CK_SLOT_ID, pInfo: *mut CK_TOKEN_INFO) {
        let shim = backend::get()?;
        // SAFETY: checked by `out`.
        let info = unsafe { out(pInfo, "pInfo") }?;
        *info = shim.token_info(slotID)?;
        Ok(())
    }
}

cryptoki_fn! {
    /// The mechanisms the token supports (and those the shim adds by hashing first).
    fn C_GetMechanismList(slotID: CK_SLOT_ID, pMechanismList: *mut CK_MECHANISM_TYPE, pulCount: *mut CK_ULONG) {
        let shim = backend::get()?;
        if pulCount.is_null() {
            return Err(Error::ArgumentsBad("pulCount"));
        }
        let list = shim.mechanism_list(slotID)?;
        // SAFETY: `list_out` checks both pointers; the caller sized the list by *pulCount.
        unsafe { list_out(&list, pMechanismList, pulCount) }
    }
}

cryptoki_fn! {
    /// Key sizes and flags of one mechanism.
    fn C_GetMechanismInfo(slotID: CK_SLOT_ID, type_: CK_MECHANISM_TYPE, pInfo: *mut CK_MECHANISM_INFO) {
        let shim = backend::get()?;
        // SAFETY: checked by `out`.
        let info = unsafe { out(pInfo, "pInfo") }?;
        *info = shim.mechanism_info(slotID, type_)?;
        Ok(())
    }
}
