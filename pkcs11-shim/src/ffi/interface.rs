//! PKCS#11 3.0 interfaces: `C_GetInterfaceList` and `C_GetInterface` hand out the same
//! functions as a 3.0 list ("PKCS 11" 3.0, the default) and as the 2.40 list `C_GetFunctionList`
//! gives, so 3.0 consumers (rust-cryptoki, OpenSSL's pkcs11-provider) and 2.40 ones both load
//! the shim. Of the functions 3.0 adds, `C_SessionCancel` is offered; `C_LoginUser` and the
//! message-based functions are not.

use std::ptr;

use cryptoki_sys::*;

use super::args::*;
use super::*;
use crate::backend;
use crate::error::Error;

/// The interface name PKCS#11 3.0 defines for its function lists.
const INTERFACE_NAME: &[u8; 8] = b"PKCS 11\0";

/// The PKCS#11 3.0 function list: the 2.40 list's functions, then those 3.0 adds.
static FUNCTION_LIST_3_0: CK_FUNCTION_LIST_3_0 = function_list!(
    CK_FUNCTION_LIST_3_0,
    CK_VERSION { major: 3, minor: 0 },
    C_GetInterfaceList,
    C_GetInterface,
    C_LoginUser,
    C_SessionCancel,
    C_MessageEncryptInit,
    C_EncryptMessage,
    C_EncryptMessageBegin,
    C_EncryptMessageNext,
    C_MessageEncryptFinal,
    C_MessageDecryptInit,
    C_DecryptMessage,
    C_DecryptMessageBegin,
    C_DecryptMessageNext,
    C_MessageDecryptFinal,
    C_MessageSignInit,
    C_SignMessage,
    C_SignMessageBegin,
    C_SignMessageNext,
    C_MessageSignFinal,
    C_MessageVerifyInit,
    C_VerifyMessage,
    C_VerifyMessageBegin,
    C_VerifyMessageNext,
    C_MessageVerifyFinal,
);

/// The interfaces, the default (3.0) first.
struct Interfaces([CK_INTERFACE; 2]);

// SAFETY: the raw pointers inside point to immutable statics (the name and the two function
// lists) that live as long as the library; nothing ever writes through them, so sharing them
// between threads is sound.
unsafe impl Sync for Interfaces {}

static INTERFACES: Interfaces = Interfaces([
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr().cast_mut(),
        pFunctionList: ptr::addr_of!(FUNCTION_LIST_3_0).cast_mut().cast(),
        flags: 0,
    },
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr().cast_mut(),
        pFunctionList: ptr::addr_of!(FUNCTION_LIST).cast_mut().cast(),
        flags: 0,
    },
]);

/// The version of an interface's function list (the first field of every list).
fn version_of(interface: &CK_INTERFACE) -> CK_VERSION {
    if interface.pFunctionList == ptr::addr_of!(FUNCTION_LIST_3_0).cast_mut().cast() {
        FUNCTION_LIST_3_0.version
    } else {
        FUNCTION_LIST.version
    }
}

cryptoki_fn! {
    /// Lists the interfaces ("PKCS 11" 3.0 and 2.40); works before `C_Initialize`.
    fn C_GetInterfaceList(pInterfacesList: *mut CK_INTERFACE, pulCount: *mut CK_ULONG) {
        // SAFETY: `list_out` checks both pointers; the caller sized the list by *pulCount.
        unsafe { list_out(&INTERFACES.0, pInterfacesList, pulCount) }
    }
}

cryptoki_fn! {
    /// The interface of that name, version and flags (any, when null or 0); works before
    /// `C_Initialize`.
    fn C_GetInterface(
        pInterfaceName: *mut CK_UTF8CHAR,
        pVersion: *mut CK_VERSION,
        ppInterface: *mut *mut CK_INTERFACE,
        flags: CK_FLAGS,
    ) {
        // SAFETY: checked by `out`.
        let slot = unsafe { out(ppInterface, "ppInterface") }?;
        if !pInterfaceName.is_null() {
            // SAFETY: a non-null pInterfaceName is a NUL-terminated string by the PKCS#11
            // contract; only bytes up to the NUL are read.
            let name = unsafe { std::ffi::CStr::from_ptr(pInterfaceName.cast_const().cast()) };
            if name.to_bytes_with_nul() != INTERFACE_NAME {
                return Err(Error::ArgumentsBad("no interface of that name (the shim has \"PKCS 11\")"));
            }
        }
        if !pVersion.is_aligned() {
            return Err(Error::ArgumentsBad("pVersion"));
        }
        // SAFETY: `as_ref` checks for null, alignment is checked above; a non-null pVersion
        // points to a CK_VERSION by the PKCS#11 contract.
        let wanted = unsafe { pVersion.as_ref() };
        let found = INTERFACES.0.iter().find(|i| {
            let v = version_of(i);
            wanted.is_none_or(|w| (w.major, w.minor) == (v.major, v.minor)) && i.flags & flags == flags
        });
        match found {
            Some(i) => {
                *slot = ptr::from_ref(i).cast_mut();
                Ok(())
            }
            None => Err(Error::ArgumentsBad("no interface of that version and flags (the shim has 3.0 and 2.40)")),
        }
    }
}

cryptoki_fn! {
    /// Ends the session's active operations the flags name (`CKF_SIGN`, `CKF_VERIFY`,
    /// `CKF_FIND_OBJECTS`).
    fn C_SessionCancel(hSession: CK_SESSION_HANDLE, flags: CK_FLAGS) {
        backend::get()?.session_cancel(hSession, flags)
    }
}

not_supported! {
    C_LoginUser(a: CK_SESSION_HANDLE, b: CK_USER_TYPE, c: *mut CK_UTF8CHAR, d: CK_ULONG, e: *mut CK_UTF8CHAR, f: CK_ULONG);
    C_MessageEncryptInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_EncryptMessage(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG, h: *mut CK_BYTE, i: *mut CK_ULONG);
    C_EncryptMessageBegin(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG);
    C_EncryptMessageNext(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG, h: CK_FLAGS);
    C_MessageEncryptFinal(a: CK_SESSION_HANDLE);
    C_MessageDecryptInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_DecryptMessage(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG, h: *mut CK_BYTE, i: *mut CK_ULONG);
    C_DecryptMessageBegin(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG);
    C_DecryptMessageNext(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG, h: CK_FLAGS);
    C_MessageDecryptFinal(a: CK_SESSION_HANDLE);
    C_MessageSignInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_SignMessage(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG);
    C_SignMessageBegin(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG);
    C_SignMessageNext(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG);
    C_MessageSignFinal(a: CK_SESSION_HANDLE);
    C_MessageVerifyInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_VerifyMessage(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG);
    C_VerifyMessageBegin(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG);
    C_VerifyMessageNext(a: CK_SESSION_HANDLE, b: *mut std::os::raw::c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG);
    C_MessageVerifyFinal(a: CK_SESSION_HANDLE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_interface_is_3_0_and_2_40_is_there_too() {
        let mut found: *mut CK_INTERFACE = ptr::null_mut();
        // SAFETY: null name and version ask for the default; `found` is a live local.
        let rv = unsafe { C_GetInterface(ptr::null_mut(), ptr::null_mut(), &mut found, 0) };
        assert_eq!(rv, CKR_OK);
        // SAFETY: the shim returned a pointer to its static interface table.
        let list = unsafe { &*(*found).pFunctionList.cast::<CK_FUNCTION_LIST_3_0>() };
        assert_eq!((list.version.major, list.version.minor), (3, 0));

        let mut v240 = CK_VERSION {
            major: 2,
            minor: 40,
        };
        let mut name = *INTERFACE_NAME;
        // SAFETY: live locals of the right types.
        let rv = unsafe { C_GetInterface(name.as_mut_ptr(), &mut v240, &mut found, 0) };
        assert_eq!(rv, CKR_OK);
        // SAFETY: as above.
        let list = unsafe { &*(*found).pFunctionList.cast::<CK_FUNCTION_LIST>() };
        assert_eq!((list.version.major, list.version.minor), (2, 40));

        let mut count: CK_ULONG = 0;
        // SAFETY: a null list asks for the count.
        let rv = unsafe { C_GetInterfaceList(ptr::null_mut(), &mut count) };
        assert_eq!((rv, count), (CKR_OK, 2));

        let mut v1 = CK_VERSION { major: 1, minor: 0 };
        // SAFETY: live locals of the right types.
        let rv = unsafe { C_GetInterface(ptr::null_mut(), &mut v1, &mut found, 0) };
        assert_eq!(rv, CKR_ARGUMENTS_BAD);
        // SAFETY: as above.
        let rv = unsafe {
            C_GetInterface(
                ptr::null_mut(),
                ptr::null_mut(),
                &mut found,
                CKF_INTERFACE_FORK_SAFE,
            )
        };
        assert_eq!(
            rv, CKR_ARGUMENTS_BAD,
            "the shim is not fork-safe in 3.0's sense"
        );
    }
}
