//! The C ABI: every `C_*` export, and the only module of the shim with `unsafe`.
//!
//! Each export is made by [`cryptoki_fn!`]: it runs its body as `Result<(), Error>` inside
//! [`boundary`], which catches panics, logs, and turns the result into a `CK_RV` through the one
//! `From<Error> for CK_RV`. Bodies check every pointer and length before use (helpers below),
//! copy what they read into owned Rust values, and hand those to the safe [`crate::shim`].
#![allow(unsafe_code)]
#![allow(non_snake_case)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use cryptoki_sys::*;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::log::shim_log;
use crate::objects::AttrValue;
use crate::shim::{self, SignOutput};
use crate::template::Attr;

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
            boundary(stringify!($name), move || -> Result<(), Error> { $body })
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
                    Err(Error::FunctionNotSupported)
                }
            }
        )*
    };
}

// === pointer checks ===

/// The `len` elements at `ptr` (an empty slice when `len` is 0, whatever `ptr` is).
///
/// # Safety
/// When `len > 0` and `ptr` is not null, `ptr` must point to `len` readable, initialized `T`s
/// that stay unchanged for the returned lifetime.
unsafe fn slice_in<'a, T>(
    ptr: *const T,
    len: CK_ULONG,
    what: &'static str,
) -> Result<&'a [T], Error> {
    let len = usize::try_from(len).map_err(|_| Error::ArgumentsBad(what))?;
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() || !ptr.is_aligned() {
        return Err(Error::ArgumentsBad(what));
    }
    if len
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|n| n > isize::MAX as usize)
    {
        return Err(Error::ArgumentsBad(what));
    }
    // SAFETY: `ptr` is non-null and aligned (checked above), the byte length fits `isize`
    // (checked above), and the caller guarantees `len` readable elements behind it.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The byte buffer `(ptr, len)` a caller passed in.
///
/// # Safety
/// As [`slice_in`].
unsafe fn bytes_in<'a>(
    ptr: *const CK_BYTE,
    len: CK_ULONG,
    what: &'static str,
) -> Result<&'a [u8], Error> {
    // SAFETY: the same contract, passed on.
    unsafe { slice_in(ptr, len, what) }
}

/// The `T` an out-pointer names, or `CKR_ARGUMENTS_BAD` for null or misaligned.
///
/// # Safety
/// A non-null, aligned `ptr` must point to a writable `T` for the returned lifetime.
unsafe fn out<'a, T>(ptr: *mut T, what: &'static str) -> Result<&'a mut T, Error> {
    if !ptr.is_aligned() {
        return Err(Error::ArgumentsBad(what));
    }
    // SAFETY: `as_mut` checks for null; alignment is checked above; the caller guarantees a
    // writable `T` behind a non-null pointer.
    unsafe { ptr.as_mut() }.ok_or(Error::ArgumentsBad(what))
}

/// Copies a template out of the caller's memory (values wiped when dropped).
///
/// # Safety
/// `(ptr, count)` as [`slice_in`]; each attribute's `(pValue, ulValueLen)` as [`bytes_in`].
unsafe fn template_in(ptr: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<Vec<Attr>, Error> {
    // SAFETY: the caller's contract for the template array, passed on.
    let attrs = unsafe { slice_in(ptr, count, "template") }?;
    attrs
        .iter()
        .map(|a| {
            // SAFETY: the caller's contract for each attribute value, passed on.
            let value =
                unsafe { bytes_in(a.pValue as *const CK_BYTE, a.ulValueLen, "attribute value") }?;
            Ok(Attr::new(a.type_, value.to_vec()))
        })
        .collect()
}

/// Copies a mechanism (type and parameter bytes) out of the caller's memory.
///
/// # Safety
/// A non-null `ptr` must point to a readable `CK_MECHANISM` whose parameter is as
/// [`bytes_in`] says.
unsafe fn mechanism_in(ptr: *const CK_MECHANISM) -> Result<(CK_MECHANISM_TYPE, Vec<u8>), Error> {
    if !ptr.is_aligned() {
        return Err(Error::ArgumentsBad("mechanism"));
    }
    // SAFETY: `as_ref` checks for null, alignment is checked above, and the caller guarantees
    // a readable CK_MECHANISM.
    let m = unsafe { ptr.as_ref() }.ok_or(Error::ArgumentsBad("mechanism"))?;
    // SAFETY: the caller's contract for the parameter buffer, passed on.
    let param = unsafe {
        bytes_in(
            m.pParameter as *const CK_BYTE,
            m.ulParameterLen,
            "mechanism parameter",
        )
    }?;
    Ok((m.mechanism, param.to_vec()))
}

/// Writes `items` with the PKCS#11 size convention: a null `list` asks for the count only; a
/// short one gets `CKR_BUFFER_TOO_SMALL` with the count needed.
///
/// # Safety
/// `count` as [`out`]; a non-null `list` must have room for `*count` elements.
unsafe fn list_out<T: Copy>(items: &[T], list: *mut T, count: *mut CK_ULONG) -> Result<(), Error> {
    // SAFETY: the caller's contract for `count`, passed on.
    let count = unsafe { out(count, "count pointer") }?;
    let needed = items.len() as CK_ULONG;
    if list.is_null() {
        *count = needed;
        return Ok(());
    }
    if !list.is_aligned() {
        return Err(Error::ArgumentsBad("list pointer"));
    }
    let room = *count;
    *count = needed;
    if room < needed {
        return Err(Error::BufferTooSmall);
    }
    // SAFETY: `list` is non-null and aligned (checked), the caller says it has room for
    // `room >= items.len()` elements (checked), and it cannot overlap our own `items`.
    unsafe { ptr::copy_nonoverlapping(items.as_ptr(), list, items.len()) };
    Ok(())
}

/// Writes a `C_Sign`/`C_SignFinal` answer.
///
/// # Safety
/// `signature` must be null or have room for `*len` bytes as the caller said when it asked.
unsafe fn signature_out(
    answer: SignOutput,
    signature: *mut CK_BYTE,
    len: &mut CK_ULONG,
) -> Result<(), Error> {
    match answer {
        SignOutput::Length(n) => {
            *len = n as CK_ULONG;
            Ok(())
        }
        SignOutput::TooSmall(n) => {
            *len = n as CK_ULONG;
            Err(Error::BufferTooSmall)
        }
        SignOutput::Signature(bytes) => {
            if signature.is_null() || (*len as usize) < bytes.len() {
                return Err(Error::General(
                    "signature buffer changed under the call".into(),
                ));
            }
            // SAFETY: `signature` is non-null (checked), the caller gave it `*len` bytes of
            // room, and `bytes.len() <= *len` (checked).
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), signature, bytes.len()) };
            *len = bytes.len() as CK_ULONG;
            Ok(())
        }
    }
}

/// The capacity a caller announced for an output buffer: `None` for a size query.
fn capacity(buffer: *const CK_BYTE, len: CK_ULONG) -> Option<usize> {
    (!buffer.is_null()).then(|| usize::try_from(len).unwrap_or(usize::MAX))
}

// === the function list ===

/// The PKCS#11 2.40 function list the shim hands out.
static FUNCTION_LIST: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: shim::CRYPTOKI_VERSION,
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
};

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

// === general ===

cryptoki_fn! {
    /// Reads the configuration and starts the I/O thread. The shim always uses OS locking.
    fn C_Initialize(pInitArgs: *mut std::os::raw::c_void) {
        let args = pInitArgs as *const CK_C_INITIALIZE_ARGS;
        if !args.is_aligned() {
            return Err(Error::ArgumentsBad("pInitArgs"));
        }
        // SAFETY: `as_ref` checks for null, alignment is checked above; a non-null pInitArgs
        // points to a CK_C_INITIALIZE_ARGS by the PKCS#11 contract.
        if let Some(a) = unsafe { args.as_ref() } {
            if !a.pReserved.is_null() {
                return Err(Error::ArgumentsBad("pInitArgs->pReserved must be null"));
            }
            let given = [
                a.CreateMutex.is_some(),
                a.DestroyMutex.is_some(),
                a.LockMutex.is_some(),
                a.UnlockMutex.is_some(),
            ];
            if given.iter().any(|g| *g) && !given.iter().all(|g| *g) {
                return Err(Error::ArgumentsBad("give all four mutex functions or none"));
            }
            if given[0] && a.flags & CKF_OS_LOCKING_OK == 0 {
                return Err(Error::CantLock);
            }
            if a.flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS != 0 {
                return Err(Error::NeedToCreateThreads);
            }
        }
        shim::initialize()
    }
}

cryptoki_fn! {
    /// Closes every session and stops the I/O thread.
    fn C_Finalize(pReserved: *mut std::os::raw::c_void) {
        if !pReserved.is_null() {
            return Err(Error::ArgumentsBad("pReserved must be null"));
        }
        shim::finalize()
    }
}

cryptoki_fn! {
    /// Describes the library.
    fn C_GetInfo(pInfo: *mut CK_INFO) {
        shim::get()?;
        // SAFETY: checked by `out`.
        *unsafe { out(pInfo, "pInfo") }? = shim::library_info();
        Ok(())
    }
}

// === slots and tokens ===

cryptoki_fn! {
    /// One slot per token signerd exposes.
    fn C_GetSlotList(tokenPresent: CK_BBOOL, pSlotList: *mut CK_SLOT_ID, pulCount: *mut CK_ULONG) {
        let shim = shim::get()?;
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
        let shim = shim::get()?;
        // SAFETY: checked by `out`.
        let info = unsafe { out(pInfo, "pInfo") }?;
        *info = shim.slot_info(slotID)?;
        Ok(())
    }
}

cryptoki_fn! {
    /// signerd's token, or `CKR_TOKEN_NOT_PRESENT` with the reason in the log.
    fn C_GetTokenInfo(slotID: CK_SLOT_ID, pInfo: *mut CK_TOKEN_INFO) {
        let shim = shim::get()?;
        // SAFETY: checked by `out`.
        let info = unsafe { out(pInfo, "pInfo") }?;
        *info = shim.token_info(slotID)?;
        Ok(())
    }
}

cryptoki_fn! {
    /// The mechanisms the token supports (and those the shim adds by hashing first).
    fn C_GetMechanismList(slotID: CK_SLOT_ID, pMechanismList: *mut CK_MECHANISM_TYPE, pulCount: *mut CK_ULONG) {
        let shim = shim::get()?;
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
        let shim = shim::get()?;
        // SAFETY: checked by `out`.
        let info = unsafe { out(pInfo, "pInfo") }?;
        *info = shim.mechanism_info(slotID, type_)?;
        Ok(())
    }
}

// === sessions ===

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
        let shim = shim::get()?;
        // SAFETY: checked by `out`.
        let handle = unsafe { out(phSession, "phSession") }?;
        *handle = shim.open_session(slotID, flags)?;
        Ok(())
    }
}

cryptoki_fn! {
    /// Closes a session; the last one on a slot logs the user out.
    fn C_CloseSession(hSession: CK_SESSION_HANDLE) {
        shim::get()?.close_session(hSession)
    }
}

cryptoki_fn! {
    /// Closes every session on a slot.
    fn C_CloseAllSessions(slotID: CK_SLOT_ID) {
        shim::get()?.close_all_sessions(slotID)
    }
}

cryptoki_fn! {
    /// The session's slot, state and flags.
    fn C_GetSessionInfo(hSession: CK_SESSION_HANDLE, pInfo: *mut CK_SESSION_INFO) {
        let shim = shim::get()?;
        // SAFETY: checked by `out`.
        let info = unsafe { out(pInfo, "pInfo") }?;
        *info = shim.session_info(hSession)?;
        Ok(())
    }
}

cryptoki_fn! {
    /// Logs in as CKU_USER or CKU_SO: signerd checks the PIN; the copy is wiped on return.
    fn C_Login(hSession: CK_SESSION_HANDLE, userType: CK_USER_TYPE, pPin: *mut CK_UTF8CHAR, ulPinLen: CK_ULONG) {
        let shim = shim::get()?;
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
        shim::get()?.logout(hSession)
    }
}

// === objects ===

cryptoki_fn! {
    /// Stores a certificate or imports a private key into signerd's token.
    fn C_CreateObject(
        hSession: CK_SESSION_HANDLE,
        pTemplate: *mut CK_ATTRIBUTE,
        ulCount: CK_ULONG,
        phObject: *mut CK_OBJECT_HANDLE,
    ) {
        let shim = shim::get()?;
        // SAFETY: checked by `out`.
        let object = unsafe { out(phObject, "phObject") }?;
        // SAFETY: checked by `template_in`; the caller gave ulCount attributes.
        let template = unsafe { template_in(pTemplate, ulCount) }?;
        *object = shim.create_object(hSession, &template)?;
        Ok(())
    }
}

cryptoki_fn! {
    /// Destroys an object in signerd's token.
    fn C_DestroyObject(hSession: CK_SESSION_HANDLE, hObject: CK_OBJECT_HANDLE) {
        shim::get()?.destroy_object(hSession, hObject)
    }
}

cryptoki_fn! {
    /// Reads attributes with the size convention: a null `pValue` asks for the length.
    fn C_GetAttributeValue(
        hSession: CK_SESSION_HANDLE,
        hObject: CK_OBJECT_HANDLE,
        pTemplate: *mut CK_ATTRIBUTE,
        ulCount: CK_ULONG,
    ) {
        let shim = shim::get()?;
        if pTemplate.is_null() || !pTemplate.is_aligned() {
            return Err(Error::ArgumentsBad("pTemplate"));
        }
        // SAFETY: checked by `slice_in`; the caller gave ulCount attributes. Only the types
        // are read here; the array is written below through the same pointer.
        let types: Vec<CK_ATTRIBUTE_TYPE> = unsafe { slice_in(pTemplate.cast_const(), ulCount, "pTemplate") }?
            .iter()
            .map(|a| a.type_)
            .collect();
        let values = shim.attributes(hSession, hObject, &types)?;
        let mut result = Ok(());
        let mut worse = |e: Error| {
            let rank = |e: &Result<(), Error>| match e {
                Err(Error::AttributeSensitive) => 3,
                Err(Error::AttributeTypeInvalid) => 2,
                Err(Error::BufferTooSmall) => 1,
                _ => 0,
            };
            let candidate = Err(e);
            if rank(&candidate) > rank(&result) {
                result = candidate;
            }
        };
        for (i, value) in values.into_iter().enumerate() {
            // SAFETY: `i < ulCount` (one value per type read above) and pTemplate is a valid,
            // aligned array of ulCount attributes (checked by `slice_in`).
            let attr = unsafe { &mut *pTemplate.add(i) };
            match value {
                AttrValue::Sensitive => {
                    attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    worse(Error::AttributeSensitive);
                }
                AttrValue::Invalid => {
                    attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    worse(Error::AttributeTypeInvalid);
                }
                AttrValue::Value(bytes) => {
                    if attr.pValue.is_null() {
                        attr.ulValueLen = bytes.len() as CK_ULONG;
                    } else if (attr.ulValueLen as usize) < bytes.len() {
                        attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        worse(Error::BufferTooSmall);
                    } else {
                        // SAFETY: pValue is non-null (checked) with ulValueLen bytes of room
                        // by the caller's contract, and bytes.len() <= ulValueLen (checked).
                        unsafe {
                            ptr::copy_nonoverlapping(bytes.as_ptr(), attr.pValue.cast::<u8>(), bytes.len())
                        };
                        attr.ulValueLen = bytes.len() as CK_ULONG;
                    }
                }
            }
        }
        result
    }
}

cryptoki_fn! {
    /// Starts a search; signerd is asked now.
    fn C_FindObjectsInit(hSession: CK_SESSION_HANDLE, pTemplate: *mut CK_ATTRIBUTE, ulCount: CK_ULONG) {
        let shim = shim::get()?;
        // SAFETY: checked by `template_in`; the caller gave ulCount attributes.
        let template = unsafe { template_in(pTemplate, ulCount) }?;
        shim.find_init(hSession, &template)
    }
}

cryptoki_fn! {
    /// The next handles of the search.
    fn C_FindObjects(
        hSession: CK_SESSION_HANDLE,
        phObject: *mut CK_OBJECT_HANDLE,
        ulMaxObjectCount: CK_ULONG,
        pulObjectCount: *mut CK_ULONG,
    ) {
        let shim = shim::get()?;
        // SAFETY: checked by `out`.
        let count = unsafe { out(pulObjectCount, "pulObjectCount") }?;
        if (phObject.is_null() && ulMaxObjectCount > 0) || !phObject.is_aligned() {
            return Err(Error::ArgumentsBad("phObject"));
        }
        let max = usize::try_from(ulMaxObjectCount).unwrap_or(usize::MAX);
        let found = shim.find(hSession, max)?;
        if !found.is_empty() {
            // SAFETY: phObject is non-null and aligned (checked) with room for
            // ulMaxObjectCount handles, and found.len() <= ulMaxObjectCount.
            unsafe { ptr::copy_nonoverlapping(found.as_ptr(), phObject, found.len()) };
        }
        *count = found.len() as CK_ULONG;
        Ok(())
    }
}

cryptoki_fn! {
    /// Ends the search.
    fn C_FindObjectsFinal(hSession: CK_SESSION_HANDLE) {
        shim::get()?.find_final(hSession)
    }
}

// === signing ===

cryptoki_fn! {
    /// Starts a signature with a private key of signerd's token (needs a logged-in user).
    fn C_SignInit(hSession: CK_SESSION_HANDLE, pMechanism: *mut CK_MECHANISM, hKey: CK_OBJECT_HANDLE) {
        let shim = shim::get()?;
        // SAFETY: checked by `mechanism_in`.
        let (mechanism, param) = unsafe { mechanism_in(pMechanism) }?;
        shim.sign_init(hSession, mechanism, &param, hKey)
    }
}

cryptoki_fn! {
    /// Signs in one call; a null `pSignature` asks for the length.
    fn C_Sign(
        hSession: CK_SESSION_HANDLE,
        pData: *mut CK_BYTE,
        ulDataLen: CK_ULONG,
        pSignature: *mut CK_BYTE,
        pulSignatureLen: *mut CK_ULONG,
    ) {
        let shim = shim::get()?;
        // SAFETY: checked by `out`.
        let len = unsafe { out(pulSignatureLen, "pulSignatureLen") }?;
        // SAFETY: checked by `bytes_in`; the caller gave ulDataLen bytes.
        let data = unsafe { bytes_in(pData, ulDataLen, "pData") }?;
        let answer = shim.sign(hSession, data, capacity(pSignature, *len))?;
        // SAFETY: pSignature has *len bytes of room by the caller's contract (or is null).
        unsafe { signature_out(answer, pSignature, len) }
    }
}

cryptoki_fn! {
    /// Adds data to a multi-part signature.
    fn C_SignUpdate(hSession: CK_SESSION_HANDLE, pPart: *mut CK_BYTE, ulPartLen: CK_ULONG) {
        let shim = shim::get()?;
        // SAFETY: checked by `bytes_in`; the caller gave ulPartLen bytes.
        let part = unsafe { bytes_in(pPart, ulPartLen, "pPart") }?;
        shim.sign_update(hSession, part)
    }
}

cryptoki_fn! {
    /// Finishes a multi-part signature; a null `pSignature` asks for the length.
    fn C_SignFinal(hSession: CK_SESSION_HANDLE, pSignature: *mut CK_BYTE, pulSignatureLen: *mut CK_ULONG) {
        let shim = shim::get()?;
        // SAFETY: checked by `out`.
        let len = unsafe { out(pulSignatureLen, "pulSignatureLen") }?;
        let answer = shim.sign_final(hSession, capacity(pSignature, *len))?;
        // SAFETY: pSignature has *len bytes of room by the caller's contract (or is null).
        unsafe { signature_out(answer, pSignature, len) }
    }
}

// === keys ===

cryptoki_fn! {
    /// Makes a key pair in signerd's token.
    fn C_GenerateKeyPair(
        hSession: CK_SESSION_HANDLE,
        pMechanism: *mut CK_MECHANISM,
        pPublicKeyTemplate: *mut CK_ATTRIBUTE,
        ulPublicKeyAttributeCount: CK_ULONG,
        pPrivateKeyTemplate: *mut CK_ATTRIBUTE,
        ulPrivateKeyAttributeCount: CK_ULONG,
        phPublicKey: *mut CK_OBJECT_HANDLE,
        phPrivateKey: *mut CK_OBJECT_HANDLE,
    ) {
        let shim = shim::get()?;
        // SAFETY: checked by `out`.
        let public_handle = unsafe { out(phPublicKey, "phPublicKey") }?;
        // SAFETY: checked by `out`.
        let private_handle = unsafe { out(phPrivateKey, "phPrivateKey") }?;
        // SAFETY: checked by `mechanism_in`.
        let (mechanism, _param) = unsafe { mechanism_in(pMechanism) }?;
        // SAFETY: checked by `template_in`; the caller gave the counts.
        let public = unsafe { template_in(pPublicKeyTemplate, ulPublicKeyAttributeCount) }?;
        // SAFETY: as above.
        let private = unsafe { template_in(pPrivateKeyTemplate, ulPrivateKeyAttributeCount) }?;
        let (p, q) = shim.generate_key_pair(hSession, mechanism, &public, &private)?;
        *public_handle = p;
        *private_handle = q;
        Ok(())
    }
}

cryptoki_fn! {
    /// Legacy: sessions are never parallel.
    fn C_GetFunctionStatus(hSession: CK_SESSION_HANDLE) {
        let _ = hSession;
        shim::get()?;
        Err(Error::FunctionNotParallel)
    }
}

cryptoki_fn! {
    /// Legacy: sessions are never parallel.
    fn C_CancelFunction(hSession: CK_SESSION_HANDLE) {
        let _ = hSession;
        shim::get()?;
        Err(Error::FunctionNotParallel)
    }
}

not_supported! {
    C_InitToken(a: CK_SLOT_ID, b: *mut CK_UTF8CHAR, c: CK_ULONG, d: *mut CK_UTF8CHAR);
    C_InitPIN(a: CK_SESSION_HANDLE, b: *mut CK_UTF8CHAR, c: CK_ULONG);
    C_SetPIN(a: CK_SESSION_HANDLE, b: *mut CK_UTF8CHAR, c: CK_ULONG, d: *mut CK_UTF8CHAR, e: CK_ULONG);
    C_GetOperationState(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: *mut CK_ULONG);
    C_SetOperationState(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: CK_OBJECT_HANDLE, e: CK_OBJECT_HANDLE);
    C_CopyObject(a: CK_SESSION_HANDLE, b: CK_OBJECT_HANDLE, c: *mut CK_ATTRIBUTE, d: CK_ULONG, e: *mut CK_OBJECT_HANDLE);
    C_GetObjectSize(a: CK_SESSION_HANDLE, b: CK_OBJECT_HANDLE, c: *mut CK_ULONG);
    C_SetAttributeValue(a: CK_SESSION_HANDLE, b: CK_OBJECT_HANDLE, c: *mut CK_ATTRIBUTE, d: CK_ULONG);
    C_EncryptInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_Encrypt(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_EncryptUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_EncryptFinal(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: *mut CK_ULONG);
    C_DecryptInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_Decrypt(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DecryptUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DecryptFinal(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: *mut CK_ULONG);
    C_DigestInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM);
    C_Digest(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DigestUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG);
    C_DigestKey(a: CK_SESSION_HANDLE, b: CK_OBJECT_HANDLE);
    C_DigestFinal(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: *mut CK_ULONG);
    C_SignRecoverInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_SignRecover(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_VerifyInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_Verify(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG);
    C_VerifyUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG);
    C_VerifyFinal(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG);
    C_VerifyRecoverInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_VerifyRecover(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DigestEncryptUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DecryptDigestUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_SignEncryptUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DecryptVerifyUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_GenerateKey(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: *mut CK_ATTRIBUTE, d: CK_ULONG, e: *mut CK_OBJECT_HANDLE);
    C_WrapKey(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE, d: CK_OBJECT_HANDLE, e: *mut CK_BYTE, f: *mut CK_ULONG);
    C_UnwrapKey(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_ATTRIBUTE, g: CK_ULONG, h: *mut CK_OBJECT_HANDLE);
    C_DeriveKey(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE, d: *mut CK_ATTRIBUTE, e: CK_ULONG, f: *mut CK_OBJECT_HANDLE);
    C_SeedRandom(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG);
    C_GenerateRandom(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG);
    C_WaitForSlotEvent(a: CK_FLAGS, b: *mut CK_SLOT_ID, c: *mut std::os::raw::c_void);
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
