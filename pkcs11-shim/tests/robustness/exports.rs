//! Every export with nulls, bad handles and calls out of order, and from 16 threads at once,
//! with signerd down.

use super::*;

/// Every function in the list but the three life-cycle ones, called with nulls, zeros and the
/// session handle `h`; returns each result by name.
///
/// # Safety
/// Only null pointers are passed, and the shim checks them.
pub(crate) unsafe fn call_everything(
    f: &CK_FUNCTION_LIST,
    h: CK_SESSION_HANDLE,
) -> Vec<(&'static str, CK_RV)> {
    let k = 7 as CK_OBJECT_HANDLE;
    // SAFETY: the caller's contract; every pointer is null.
    unsafe {
        vec![
            ("C_GetInfo", f.C_GetInfo.unwrap()(null_mut())),
            (
                "C_GetSlotList",
                f.C_GetSlotList.unwrap()(CK_TRUE, null_mut(), null_mut()),
            ),
            ("C_GetSlotInfo", f.C_GetSlotInfo.unwrap()(0, null_mut())),
            ("C_GetTokenInfo", f.C_GetTokenInfo.unwrap()(0, null_mut())),
            (
                "C_GetMechanismList",
                f.C_GetMechanismList.unwrap()(0, null_mut(), null_mut()),
            ),
            (
                "C_GetMechanismInfo",
                f.C_GetMechanismInfo.unwrap()(0, CKM_ECDSA, null_mut()),
            ),
            (
                "C_InitToken",
                f.C_InitToken.unwrap()(0, null_mut(), 0, null_mut()),
            ),
            ("C_InitPIN", f.C_InitPIN.unwrap()(h, null_mut(), 0)),
            (
                "C_SetPIN",
                f.C_SetPIN.unwrap()(h, null_mut(), 0, null_mut(), 0),
            ),
            (
                "C_OpenSession",
                f.C_OpenSession.unwrap()(0, CKF_SERIAL_SESSION, null_mut(), None, null_mut()),
            ),
            ("C_CloseSession", f.C_CloseSession.unwrap()(h)),
            ("C_CloseAllSessions", f.C_CloseAllSessions.unwrap()(99)),
            (
                "C_GetSessionInfo",
                f.C_GetSessionInfo.unwrap()(h, null_mut()),
            ),
            (
                "C_GetOperationState",
                f.C_GetOperationState.unwrap()(h, null_mut(), null_mut()),
            ),
            (
                "C_SetOperationState",
                f.C_SetOperationState.unwrap()(h, null_mut(), 0, 0, 0),
            ),
            ("C_Login", f.C_Login.unwrap()(h, CKU_USER, null_mut(), 0)),
            (
                "C_Login(len)",
                f.C_Login.unwrap()(h, CKU_USER, null_mut(), 6),
            ),
            ("C_Logout", f.C_Logout.unwrap()(h)),
            (
                "C_CreateObject",
                f.C_CreateObject.unwrap()(h, null_mut(), 3, null_mut()),
            ),
            (
                "C_CopyObject",
                f.C_CopyObject.unwrap()(h, k, null_mut(), 0, null_mut()),
            ),
            ("C_DestroyObject", f.C_DestroyObject.unwrap()(h, k)),
            (
                "C_GetObjectSize",
                f.C_GetObjectSize.unwrap()(h, k, null_mut()),
            ),
            (
                "C_GetAttributeValue",
                f.C_GetAttributeValue.unwrap()(h, k, null_mut(), 2),
            ),
            (
                "C_SetAttributeValue",
                f.C_SetAttributeValue.unwrap()(h, k, null_mut(), 0),
            ),
            (
                "C_FindObjectsInit",
                f.C_FindObjectsInit.unwrap()(h, null_mut(), 4),
            ),
            (
                "C_FindObjects",
                f.C_FindObjects.unwrap()(h, null_mut(), 10, null_mut()),
            ),
            ("C_FindObjectsFinal", f.C_FindObjectsFinal.unwrap()(h)),
            ("C_EncryptInit", f.C_EncryptInit.unwrap()(h, null_mut(), k)),
            (
                "C_Encrypt",
                f.C_Encrypt.unwrap()(h, null_mut(), 0, null_mut(), null_mut()),
            ),
            (
                "C_EncryptUpdate",
                f.C_EncryptUpdate.unwrap()(h, null_mut(), 0, null_mut(), null_mut()),
            ),
            (
                "C_EncryptFinal",
                f.C_EncryptFinal.unwrap()(h, null_mut(), null_mut()),
            ),
            ("C_DecryptInit", f.C_DecryptInit.unwrap()(h, null_mut(), k)),
            (
                "C_Decrypt",
                f.C_Decrypt.unwrap()(h, null_mut(), 0, null_mut(), null_mut()),
            ),
            (
                "C_DecryptUpdate",
                f.C_DecryptUpdate.unwrap()(h, null_mut(), 0, null_mut(), null_mut()),
            ),
            (
                "C_DecryptFinal",
                f.C_DecryptFinal.unwrap()(h, null_mut(), null_mut()),
            ),
            ("C_DigestInit", f.C_DigestInit.unwrap()(h, null_mut())),
            (
                "C_Digest",
                f.C_Digest.unwrap()(h, null_mut(), 0, null_mut(), null_mut()),
            ),
            (
                "C_DigestUpdate",
                f.C_DigestUpdate.unwrap()(h, null_mut(), 0),
            ),
            ("C_DigestKey", f.C_DigestKey.unwrap()(h, k)),
            (
                "C_DigestFinal",
                f.C_DigestFinal.unwrap()(h, null_mut(), null_mut()),
            ),
            ("C_SignInit", f.C_SignInit.unwrap()(h, null_mut(), k)),
            (
                "C_Sign",
                f.C_Sign.unwrap()(h, null_mut(), 32, null_mut(), null_mut()),
            ),
            ("C_SignUpdate", f.C_SignUpdate.unwrap()(h, null_mut(), 16)),
            (
                "C_SignFinal",
                f.C_SignFinal.unwrap()(h, null_mut(), null_mut()),
            ),
            (
                "C_SignRecoverInit",
                f.C_SignRecoverInit.unwrap()(h, null_mut(), k),
            ),
            (
                "C_SignRecover",
                f.C_SignRecover.unwrap()(h, null_mut(), 0, null_mut(), null_mut()),
            ),
            ("C_VerifyInit", f.C_VerifyInit.unwrap()(h, null_mut(), k)),
            (
                "C_Verify",
                f.C_Verify.unwrap()(h, null_mut(), 0, null_mut(), 0),
            ),
            (
                "C_VerifyUpdate",
                f.C_VerifyUpdate.unwrap()(h, null_mut(), 0),
            ),
            ("C_VerifyFinal", f.C_VerifyFinal.unwrap()(h, null_mut(), 0)),
            (
                "C_VerifyRecoverInit",
                f.C_VerifyRecoverInit.unwrap()(h, null_mut(), k),
            ),
            (
                "C_VerifyRecover",
                f.C_VerifyRecover.unwrap()(h, null_mut(), 0, null_mut(), null_mut()),
            ),
            (
                "C_DigestEncryptUpdate",
                f.C_DigestEncryptUpdate.unwrap()(h, null_mut(), 0, null_mut(), null_mut()),
            ),
            (
                "C_DecryptDigestUpdate",
                f.C_DecryptDigestUpdate.unwrap()(h, null_mut(), 0, null_mut(), null_mut()),
            ),
            (
                "C_SignEncryptUpdate",
                f.C_SignEncryptUpdate.unwrap()(h, null_mut(), 0, null_mut(), null_mut()),
            ),
            (
                "C_DecryptVerifyUpdate",
                f.C_DecryptVerifyUpdate.unwrap()(h, null_mut(), 0, null_mut(), null_mut()),
            ),
            (
                "C_GenerateKey",
                f.C_GenerateKey.unwrap()(h, null_mut(), null_mut(), 0, null_mut()),
            ),
            (
                "C_GenerateKeyPair",
                f.C_GenerateKeyPair.unwrap()(
                    h,
                    null_mut(),
                    null_mut(),
                    0,
                    null_mut(),
                    0,
                    null_mut(),
                    null_mut(),
                ),
            ),
            (
                "C_WrapKey",
                f.C_WrapKey.unwrap()(h, null_mut(), k, k, null_mut(), null_mut()),
            ),
            (
                "C_UnwrapKey",
                f.C_UnwrapKey.unwrap()(h, null_mut(), k, null_mut(), 0, null_mut(), 0, null_mut()),
            ),
            (
                "C_DeriveKey",
                f.C_DeriveKey.unwrap()(h, null_mut(), k, null_mut(), 0, null_mut()),
            ),
            ("C_SeedRandom", f.C_SeedRandom.unwrap()(h, null_mut(), 0)),
            (
                "C_GenerateRandom",
                f.C_GenerateRandom.unwrap()(h, null_mut(), 8),
            ),
            ("C_GetFunctionStatus", f.C_GetFunctionStatus.unwrap()(h)),
            ("C_CancelFunction", f.C_CancelFunction.unwrap()(h)),
            (
                "C_WaitForSlotEvent",
                f.C_WaitForSlotEvent.unwrap()(CKF_DONT_BLOCK, null_mut(), null_mut()),
            ),
        ]
    }
}

/// The functions the shim does not offer.
const UNSUPPORTED: &[&str] = &[
    "C_InitToken",
    "C_InitPIN",
    "C_SetPIN",
    "C_GetOperationState",
    "C_SetOperationState",
    "C_CopyObject",
    "C_GetObjectSize",
    "C_SetAttributeValue",
    "C_EncryptInit",
    "C_Encrypt",
    "C_EncryptUpdate",
    "C_EncryptFinal",
    "C_DecryptInit",
    "C_Decrypt",
    "C_DecryptUpdate",
    "C_DecryptFinal",
    "C_DigestInit",
    "C_Digest",
    "C_DigestUpdate",
    "C_DigestKey",
    "C_DigestFinal",
    "C_SignRecoverInit",
    "C_SignRecover",
    "C_VerifyRecoverInit",
    "C_VerifyRecover",
    "C_DigestEncryptUpdate",
    "C_DecryptDigestUpdate",
    "C_SignEncryptUpdate",
    "C_DecryptVerifyUpdate",
    "C_GenerateKey",
    "C_WrapKey",
    "C_UnwrapKey",
    "C_DeriveKey",
    "C_SeedRandom",
    "C_GenerateRandom",
    "C_WaitForSlotEvent",
];

/// Every code a call with garbage may fairly answer.
const FAIR: &[CK_RV] = &[
    CKR_ARGUMENTS_BAD,
    CKR_SESSION_HANDLE_INVALID,
    CKR_SLOT_ID_INVALID,
    CKR_TOKEN_NOT_PRESENT,
    CKR_DEVICE_ERROR,
    CKR_FUNCTION_NOT_SUPPORTED,
    CKR_FUNCTION_NOT_PARALLEL,
    CKR_CRYPTOKI_NOT_INITIALIZED,
    CKR_OPERATION_NOT_INITIALIZED,
    CKR_USER_NOT_LOGGED_IN,
];

#[test]
fn every_export_is_in_the_library_and_refuses_before_initialize() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let module = Module::load();
    // SAFETY: null pointers only.
    let results = unsafe { call_everything(module.list, 1) };
    assert_eq!(results.len(), 66);
    for (name, rv) in results {
        let expected = if UNSUPPORTED.contains(&name) {
            CKR_FUNCTION_NOT_SUPPORTED
        } else {
            CKR_CRYPTOKI_NOT_INITIALIZED
        };
        assert_eq!(rv, expected, "{name} before C_Initialize gave {rv:#x}");
    }
    // And each is exported by name, for consumers that dlsym them one by one.
    for name in [
        "C_Initialize",
        "C_Finalize",
        "C_GetFunctionList",
        "C_Sign",
        "C_WaitForSlotEvent",
    ] {
        let symbol = format!("{name}\0");
        // SAFETY: only the address is looked up, never called.
        let found = unsafe { module._lib.get::<*const ()>(symbol.as_bytes()) };
        assert!(found.is_ok(), "{name} is not exported");
    }
}

#[test]
fn nulls_bad_handles_wrong_order_and_finalize_twice_with_signerd_down() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("shim.log");
    signerd_down(dir.path(), &log);
    let m = Module::load();
    let f = m.list;
    // SAFETY: every pointer passed below is null or points to a live local of the right type.
    unsafe {
        // Bad initialize arguments.
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: CKF_OS_LOCKING_OK,
            pReserved: std::ptr::dangling_mut(),
        };
        let init = f.C_Initialize.unwrap();
        assert_eq!(init(&mut args as *mut _ as *mut _), CKR_ARGUMENTS_BAD);
        args.pReserved = null_mut();
        args.flags = CKF_LIBRARY_CANT_CREATE_OS_THREADS;
        assert_eq!(
            init(&mut args as *mut _ as *mut _),
            CKR_NEED_TO_CREATE_THREADS
        );
        unsafe extern "C" fn create(_: *mut *mut std::ffi::c_void) -> CK_RV {
            CKR_OK
        }
        unsafe extern "C" fn other(_: *mut std::ffi::c_void) -> CK_RV {
            CKR_OK
        }
        args.flags = 0;
        args.CreateMutex = Some(create);
        assert_eq!(
            init(&mut args as *mut _ as *mut _),
            CKR_ARGUMENTS_BAD,
            "some mutex functions"
        );
        args.DestroyMutex = Some(other);
        args.LockMutex = Some(other);
        args.UnlockMutex = Some(other);
        assert_eq!(init(&mut args as *mut _ as *mut _), CKR_CANT_LOCK);
        args.flags = CKF_OS_LOCKING_OK;
        assert_eq!(init(&mut args as *mut _ as *mut _), CKR_OK);
        assert_eq!(init(null_mut()), CKR_CRYPTOKI_ALREADY_INITIALIZED);

        // Every function with nulls and a handle that was never opened.
        for (name, rv) in call_everything(f, 4242) {
            assert!(FAIR.contains(&rv), "{name} gave {rv:#x}");
            if UNSUPPORTED.contains(&name) {
                assert_eq!(rv, CKR_FUNCTION_NOT_SUPPORTED, "{name}");
            }
        }

        // The library answers; the token is missing, and says why in the log.
        let mut info = CK_INFO::default();
        assert_eq!(f.C_GetInfo.unwrap()(&mut info), CKR_OK);
        assert_eq!(&info.manufacturerID[..7], b"signerd");
        let mut count: CK_ULONG = 0;
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_TRUE, null_mut(), &mut count),
            CKR_OK
        );
        assert_eq!(count, 0, "no token present while signerd is down");
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_FALSE, null_mut(), &mut count),
            CKR_OK
        );
        assert_eq!(count, 1, "the slot is still there");
        let mut slots = [0 as CK_SLOT_ID; 1];
        let mut short: CK_ULONG = 0;
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_FALSE, slots.as_mut_ptr(), &mut short),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(
            short, 1,
            "the size needed comes back with CKR_BUFFER_TOO_SMALL"
        );
        let mut slot_info = CK_SLOT_INFO::default();
        assert_eq!(f.C_GetSlotInfo.unwrap()(0, &mut slot_info), CKR_OK);
        assert_eq!(slot_info.flags & CKF_TOKEN_PRESENT, 0);
        assert_eq!(
            f.C_GetSlotInfo.unwrap()(9, &mut slot_info),
            CKR_SLOT_ID_INVALID
        );
        let mut token = CK_TOKEN_INFO::default();
        assert_eq!(
            f.C_GetTokenInfo.unwrap()(0, &mut token),
            CKR_TOKEN_NOT_PRESENT
        );
        let mut session: CK_SESSION_HANDLE = 0;
        assert_eq!(
            f.C_OpenSession.unwrap()(0, CKF_SERIAL_SESSION, null_mut(), None, &mut session),
            CKR_TOKEN_NOT_PRESENT
        );
        assert_eq!(
            f.C_OpenSession.unwrap()(0, 0, null_mut(), None, &mut session),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED
        );
        let mut mechanisms: CK_ULONG = 0;
        assert_eq!(
            f.C_GetMechanismList.unwrap()(0, null_mut(), &mut mechanisms),
            CKR_TOKEN_NOT_PRESENT
        );

        // Wrong order on a handle that does not exist.
        let mut sig = [0u8; 8];
        let mut sig_len: CK_ULONG = sig.len() as CK_ULONG;
        let data = [1u8; 32];
        assert_eq!(
            f.C_Sign.unwrap()(
                9,
                data.as_ptr() as *mut _,
                32,
                sig.as_mut_ptr(),
                &mut sig_len
            ),
            CKR_SESSION_HANDLE_INVALID
        );
        assert_eq!(
            f.C_SignFinal.unwrap()(9, null_mut(), &mut sig_len),
            CKR_SESSION_HANDLE_INVALID
        );
        let mut found = [0 as CK_OBJECT_HANDLE; 4];
        let mut n: CK_ULONG = 0;
        assert_eq!(
            f.C_FindObjects.unwrap()(9, found.as_mut_ptr(), 4, &mut n),
            CKR_SESSION_HANDLE_INVALID
        );
        assert_eq!(f.C_Logout.unwrap()(9), CKR_SESSION_HANDLE_INVALID);

        // Finalize with a reserved pointer, then twice.
        let fin = f.C_Finalize.unwrap();
        assert_eq!(fin(std::ptr::dangling_mut()), CKR_ARGUMENTS_BAD);
        assert_eq!(fin(null_mut()), CKR_OK);
        assert_eq!(fin(null_mut()), CKR_CRYPTOKI_NOT_INITIALIZED);
        assert_eq!(
            f.C_GetInfo.unwrap()(&mut info),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        // And back again: the notary CLI initializes and finalizes for every operation.
        assert_eq!(init(null_mut()), CKR_OK);
        assert_eq!(fin(null_mut()), CKR_OK);
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("cannot reach signerd") && logged.contains("no-signerd.sock"),
        "the log must say why the token is missing:\n{logged}"
    );
}

#[test]
fn sixteen_threads_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    signerd_down(dir.path(), &dir.path().join("shim.log"));
    let m = Module::load();
    let f = m.list;
    // SAFETY: null arguments are allowed for C_Initialize.
    assert_eq!(unsafe { f.C_Initialize.unwrap()(null_mut()) }, CKR_OK);
    let list = f as *const CK_FUNCTION_LIST as usize;
    let threads: Vec<_> = (0..16)
        .map(|t| {
            std::thread::spawn(move || {
                // SAFETY: the function list outlives the threads (joined below, before the
                // library is unloaded).
                let f = unsafe { &*(list as *const CK_FUNCTION_LIST) };
                let mut codes = Vec::new();
                for i in 0..20 {
                    // SAFETY: null pointers only, or pointers to live locals.
                    unsafe {
                        codes.extend(call_everything(f, (t * 100 + i) as CK_SESSION_HANDLE));
                        let mut count: CK_ULONG = 0;
                        codes.push((
                            "C_GetSlotList",
                            f.C_GetSlotList.unwrap()(CK_FALSE, null_mut(), &mut count),
                        ));
                        let mut info = CK_TOKEN_INFO::default();
                        codes.push(("C_GetTokenInfo", f.C_GetTokenInfo.unwrap()(0, &mut info)));
                    }
                }
                codes
            })
        })
        .collect();
    for t in threads {
        let codes = t.join().expect("a caller thread panicked");
        for (name, rv) in codes {
            assert!(FAIR.contains(&rv) || rv == CKR_OK, "{name} gave {rv:#x}");
        }
    }
    // SAFETY: null is the only valid argument.
    unsafe {
        assert_eq!(f.C_Finalize.unwrap()(null_mut()), CKR_OK);
    }
}
