//! The C ABI: every `C_*` export, and the only module of the shim with `unsafe`.
//!
//! Each export is made by [`cryptoki_fn!`]: it runs its body as `Result<(), Error>` inside
//! [`boundary`], which catches panics, logs, and turns the result into a `CK_RV` through the one
//! `From<Error> for CK_RV`. Bodies check every pointer and length first ([`args`]), copy what
//! they read into owned Rust values, and hand those to the safe [`crate::backend`]. The exports
//! live in one file per function family, as PKCS#11 groups them: [`general`], [`slot`],
//! [`session`], [`object`], [`sign`], [`verify`], [`key`], and the ones the shim does not offer in
//! [`unsupported`].
#![allow(unsafe_code)]
#![allow(non_snake_case)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use cryptoki_sys::*;

use crate::error::Error;
use crate::log::shim_log;

/// Runs an export's body: panics become `CKR_GENERAL_ERROR`, errors their `CK_RV`.
fn boundary(function: &'static str, body: impl FnOnce() -> Result<(), Error>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            shim_log!(Debug, function, "ok");
            CKR_OK
        }
        Ok(Err(e)) => {
            if e.is_noteworthy() {
                shim_log!(Warn, function, "{e}");
            } else {
                shim_log!(Debug, function, "{e}");
            }
            CK_RV::from(e)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            shim_log!(
                Error,
                function,
                "internal panic caught at the FFI boundary: {what}"
            );
            CKR_GENERAL_ERROR
        }
    }
}

/// Defines one exported `C_*` function whose body returns `Result<(), Error>`.
macro_rules! cryptoki_fn {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        ///
        /// # Safety
        /// Pointer arguments must be null or valid as the PKCS#11 2.40 specification says for
        /// this function; null pointers and short lengths are detected and refused.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> CK_RV {
            $crate::ffi::boundary(
                stringify!($name),
                move || -> Result<(), $crate::error::Error> { $body },
            )
        }
    };
}

/// Defines exports the shim does not offer: `CKR_FUNCTION_NOT_SUPPORTED`, touching nothing.
macro_rules! not_supported {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            cryptoki_fn! {
                /// Not offered by the signerd shim.
                fn $name($($arg: $ty),*) {
                    let _ = ($($arg,)*);
                    Err($crate::error::Error::FunctionNotSupported)
                }
            }
        )*
    };
}

/// A function list of type `$list` at `$version`: the 2.40 functions every list has, then
/// the `$extra` ones (3.0's), in the order the specification lays them out. One table for
/// both lists, so an export cannot be wired into one and forgotten in the other.
macro_rules! function_list {
    ($list:ident, $version:expr $(, $extra:ident)* $(,)?) => {
        $list {
            version: $version,
            C_Initialize: Some(C_Initialize),
            C_Finalize: Some(C_Finalize),
            C_GetInfo: Some(C_GetInfo),
            C_GetFunctionList: Some(C_GetFunctionList),
            C_GetSlotList: Some(C_GetSlotList),
            C_GetSlotInfo: Some(C_GetSlotInfo),
            C_GetTokenInfo: Some(C_GetTokenInfo),
            C_GetMechanismList: Some(C_GetMechanismList),
            C_GetMechanismInfo: Some(C_GetMechanismInfo),
            C_InitToken: Some(C_InitToken),
            C_InitPIN: Some(C_InitPIN),
            C_SetPIN: Some(C_SetPIN),
            C_OpenSession: Some(C_OpenSession),
            C_CloseSession: Some(C_CloseSession),
            C_CloseAllSessions: Some(C_CloseAllSessions),
            C_GetSessionInfo: Some(C_GetSessionInfo),
            C_GetOperationState: Some(C_GetOperationState),
            C_SetOperationState: Some(C_SetOperationState),
            C_Login: Some(C_Login),
            C_Logout: Some(C_Logout),
            C_CreateObject: Some(C_CreateObject),
            C_CopyObject: Some(C_CopyObject),
            C_DestroyObject: Some(C_DestroyObject),
            C_GetObjectSize: Some(C_GetObjectSize),
            C_GetAttributeValue: Some(C_GetAttributeValue),
            C_SetAttributeValue: Some(C_SetAttributeValue),
            C_FindObjectsInit: Some(C_FindObjectsInit),
            C_FindObjects: Some(C_FindObjects),
            C_FindObjectsFinal: Some(C_FindObjectsFinal),
            C_EncryptInit: Some(C_EncryptInit),
            C_Encrypt: Some(C_Encrypt),
            C_EncryptUpdate: Some(C_EncryptUpdate),
            C_EncryptFinal: Some(C_EncryptFinal),
            C_DecryptInit: Some(C_DecryptInit),
            C_Decrypt: Some(C_Decrypt),
            C_DecryptUpdate: Some(C_DecryptUpdate),
            C_DecryptFinal: Some(C_DecryptFinal),
            C_DigestInit: Some(C_DigestInit),
            C_Digest: Some(C_Digest),
            C_DigestUpdate: Some(C_DigestUpdate),
            C_DigestKey: Some(C_DigestKey),
            C_DigestFinal: Some(C_DigestFinal),
            C_SignInit: Some(C_SignInit),
            C_Sign: Some(C_Sign),
            C_SignUpdate: Some(C_SignUpdate),
            C_SignFinal: Some(C_SignFinal),
            C_SignRecoverInit: Some(C_SignRecoverInit),
            C_SignRecover: Some(C_SignRecover),
            C_VerifyInit: Some(C_VerifyInit),
            C_Verify: Some(C_Verify),
            C_VerifyUpdate: Some(C_VerifyUpdate),
            C_VerifyFinal: Some(C_VerifyFinal),
            C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
            C_VerifyRecover: Some(C_VerifyRecover),
            C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
            C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
            C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
            C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
            C_GenerateKey: Some(C_GenerateKey),
            C_GenerateKeyPair: Some(C_GenerateKeyPair),
            C_WrapKey: Some(C_WrapKey),
            C_UnwrapKey: Some(C_UnwrapKey),
            C_DeriveKey: Some(C_DeriveKey),
            C_SeedRandom: Some(C_SeedRandom),
            C_GenerateRandom: Some(C_GenerateRandom),
            C_GetFunctionStatus: Some(C_GetFunctionStatus),
            C_CancelFunction: Some(C_CancelFunction),
            C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
            $($extra: Some($extra),)*
        }
    };
}

mod args;
mod general;
mod interface;
mod key;
mod object;
mod session;
mod sign;
mod slot;
mod unsupported;
mod verify;

use args::out;
use general::*;
use key::*;
use object::*;
use session::*;
use sign::*;
use slot::*;
use unsupported::*;
use verify::*;

// === the function list ===

/// The PKCS#11 2.40 function list the shim hands out.
static FUNCTION_LIST: CK_FUNCTION_LIST =
    function_list!(CK_FUNCTION_LIST, crate::backend::CRYPTOKI_VERSION);

cryptoki_fn! {
    /// Hands out the shim's function list; works before `C_Initialize`.
    fn C_GetFunctionList(ppFunctionList: *mut *mut CK_FUNCTION_LIST) {
        // SAFETY: checked by `out`: non-null, aligned, and the caller's writable pointer slot.
        let slot = unsafe { out(ppFunctionList, "ppFunctionList") }?;
        // The list is never written through this pointer (PKCS#11 treats it as read-only).
        *slot = ptr::addr_of!(FUNCTION_LIST).cast_mut();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_general_error() {
        let rv = boundary("C_Test", || panic!("boom"));
        assert_eq!(rv, CKR_GENERAL_ERROR);
        assert_eq!(
            boundary("C_Test", || Err(Error::BufferTooSmall)),
            CKR_BUFFER_TOO_SMALL
        );
    }

    #[test]
    fn not_supported_functions_touch_nothing() {
        // SAFETY: the pointers are null; the function does not look at them.
        let rv = unsafe { C_Encrypt(1, ptr::null_mut(), 5, ptr::null_mut(), ptr::null_mut()) };
        assert_eq!(rv, CKR_FUNCTION_NOT_SUPPORTED);
    }
}
