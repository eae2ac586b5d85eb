//! The shim under abuse, loaded as a real consumer loads it (`dlopen` of the built `.so`, the
//! function list from `C_GetFunctionList`): every export with null pointers, short buffers,
//! bad handles and calls out of order, `C_Finalize` twice, 16 threads at once, and a short run
//! under `valgrind --leak-check=full`. signerd is down for all of it: only `CKR_*` codes may come
//! back, and the log must say why the token is missing.
//!
//! Calling C functions through raw pointers is what this test is about, so it uses `unsafe`;
//! the shim's own `unsafe` stays in its `ffi` module.

use std::path::{Path, PathBuf};
use std::ptr::null_mut;
use std::sync::Mutex;

use cryptoki_sys::*;

/// Tests in one process share the loaded library (and its state): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The built shim (rebuilt first when stale: test builds make only the `rlib`).
fn shim_path() -> PathBuf {
    signerd_tests::shim::shim_module()
}

/// The loaded shim and its function list.
struct Module {
    list: &'static CK_FUNCTION_LIST,
    _lib: libloading::Library,
}

impl Module {
    fn load() -> Module {
        // SAFETY: loading the shim runs no initializers beyond Rust's (none with side effects).
        let lib = unsafe { libloading::Library::new(shim_path()) }.expect("dlopen the shim");
        let mut list: *mut CK_FUNCTION_LIST = null_mut();
        // SAFETY: C_GetFunctionList has exactly this signature in PKCS#11 2.40.
        let rv = unsafe {
            let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
                lib.get(b"C_GetFunctionList\0")
                    .expect("C_GetFunctionList exported");
            get(&mut list)
        };
        assert_eq!(rv, CKR_OK);
        assert!(!list.is_null());
        // SAFETY: the list is a static inside the library, which lives as long as `_lib`; the
        // reference never outlives the Module.
        let list: &'static CK_FUNCTION_LIST = unsafe { &*list };
        assert_eq!((list.version.major, list.version.minor), (2, 40));
        Module { list, _lib: lib }
    }
}

/// Points the shim at a socket nobody listens on and its log at `log`.
fn signerd_down(dir: &Path, log: &Path) {
    std::env::set_var("SIGNERD_SOCKET", dir.join("no-signerd.sock"));
    std::env::set_var("SIGNERD_SHIM_LOG", log);
    std::env::set_var("SIGNERD_SHIM_LOG_LEVEL", "debug");
    std::env::set_var("SIGNERD_SHIM_TIMEOUT_SECS", "2");
    std::env::remove_var("SIGNERD_ADDR");
    std::env::remove_var("SIGNERD_SHIM_CONFIG");
}

/// Every function in the list but the three life-cycle ones, called with nulls, zeros and the
/// session handle `h`; returns each result by name.
///
/// # Safety
/// Only null pointers are passed, and the shim checks them.
unsafe fn call_everything(
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
    "C_VerifyInit",
    "C_Verify",
    "C_VerifyUpdate",
    "C_VerifyFinal",
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

/// A short life cycle, run alone under valgrind by the next test.
#[test]
fn short_run_for_valgrind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    signerd_down(dir.path(), &dir.path().join("shim.log"));
    for _ in 0..2 {
        let m = Module::load();
        let f = m.list;
        // SAFETY: null pointers, or pointers to live locals.
        unsafe {
            assert_eq!(f.C_Initialize.unwrap()(null_mut()), CKR_OK);
            let mut count: CK_ULONG = 0;
            assert_eq!(
                f.C_GetSlotList.unwrap()(CK_FALSE, null_mut(), &mut count),
                CKR_OK
            );
            let mut token = CK_TOKEN_INFO::default();
            assert_eq!(
                f.C_GetTokenInfo.unwrap()(0, &mut token),
                CKR_TOKEN_NOT_PRESENT
            );
            let _ = call_everything(f, 3);
            assert_eq!(f.C_Finalize.unwrap()(null_mut()), CKR_OK);
        }
    }
}

#[test]
fn no_leaks_or_memory_errors_under_valgrind() {
    if std::env::var_os("SHIM_UNDER_VALGRIND").is_some() {
        return;
    }
    let valgrind = Path::new("/usr/bin/valgrind");
    assert!(
        valgrind.exists(),
        "valgrind is needed for this test: apt-get install -y valgrind"
    );
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("valgrind.log");
    let out = std::process::Command::new(valgrind)
        .arg("--leak-check=full")
        .arg("--errors-for-leak-kinds=definite,indirect")
        .arg("--error-exitcode=99")
        .arg(format!("--log-file={}", report.display()))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "short_run_for_valgrind", "--test-threads=1"])
        .env("SHIM_UNDER_VALGRIND", "1")
        .env("PKCS11_SHIM_SO", shim_path())
        .output()
        .expect("run valgrind");
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("definitely lost")
                || l.contains("indirectly lost")
                || l.contains("possibly lost")
                || l.contains("ERROR SUMMARY")
        })
        .collect();
    eprintln!("valgrind summary:\n{}", summary.join("\n"));
    assert!(
        out.status.success(),
        "valgrind found errors ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        text.contains("ERROR SUMMARY: 0 errors"),
        "valgrind report:\n{text}"
    );
}

/// A template attribute pointing at `value` (which must outlive its use).
fn attr<T>(ty: CK_ATTRIBUTE_TYPE, value: &T) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: value as *const T as *mut std::ffi::c_void,
        ulValueLen: std::mem::size_of::<T>() as CK_ULONG,
    }
}

/// An output attribute the shim writes into `value`.
fn attr_out<T>(ty: CK_ATTRIBUTE_TYPE, value: &mut T) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: value as *mut T as *mut std::ffi::c_void,
        ulValueLen: std::mem::size_of::<T>() as CK_ULONG,
    }
}

/// A template attribute pointing at bytes.
fn attr_bytes(ty: CK_ATTRIBUTE_TYPE, value: &[u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: value.as_ptr() as *mut std::ffi::c_void,
        ulValueLen: value.len() as CK_ULONG,
    }
}

/// The PKCS#11 state machine against a real signerd: operations out of order, the size
/// conventions of `C_Sign` and `C_GetAttributeValue`, sensitive and unknown attributes, paging,
/// read-only sessions, logins, and a destroyed key.
#[test]
fn state_machine_and_size_conventions_with_signerd_up() {
    use signerd_tests::shim::{AdminSignerd, NOTARY_USER_PIN};
    use signerd_tests::signerd::TestToken;
    use signerd_tests::{TestDir, TestPki};

    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("shim-state-machine").unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let admin = AdminSignerd::start(&dir.subdir("signerd").unwrap(), &token, &pki).unwrap();
    for (k, v) in admin.shim_env(&dir.path().join("shim.log")) {
        std::env::set_var(k, v);
    }
    std::env::remove_var("SIGNERD_SHIM_TIMEOUT_SECS");
    let m = Module::load();
    let f = m.list;
    let pin = NOTARY_USER_PIN.as_bytes();
    let rw = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    // SAFETY: every pointer passed below is null or points to a live local of the right size.
    unsafe {
        assert_eq!(f.C_Initialize.unwrap()(null_mut()), CKR_OK);
        let mut slots = [0 as CK_SLOT_ID; 4];
        let mut n: CK_ULONG = 4;
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_TRUE, slots.as_mut_ptr(), &mut n),
            CKR_OK
        );
        assert_eq!(n, 1);
        let slot = slots[0];
        let mut rw_session: CK_SESSION_HANDLE = 0;
        let mut ro_session: CK_SESSION_HANDLE = 0;
        assert_eq!(
            f.C_OpenSession.unwrap()(slot, rw, null_mut(), None, &mut rw_session),
            CKR_OK
        );
        assert_eq!(
            f.C_OpenSession.unwrap()(slot, CKF_SERIAL_SESSION, null_mut(), None, &mut ro_session),
            CKR_OK
        );

        // Out of order and without login.
        let data = [5u8; 32];
        let mut sig = [0u8; 128];
        let mut sig_len: CK_ULONG = sig.len() as CK_ULONG;
        let sign = f.C_Sign.unwrap();
        assert_eq!(
            sign(
                rw_session,
                data.as_ptr() as *mut _,
                32,
                sig.as_mut_ptr(),
                &mut sig_len
            ),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(
            f.C_FindObjects.unwrap()(rw_session, null_mut(), 0, &mut n),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(
            f.C_FindObjectsFinal.unwrap()(rw_session),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(f.C_Logout.unwrap()(rw_session), CKR_USER_NOT_LOGGED_IN);
        let mut mech = CK_MECHANISM {
            mechanism: CKM_EC_KEY_PAIR_GEN,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let p256 = [0x06u8, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let id = [0x5au8];
        let yes: CK_BBOOL = CK_TRUE;
        let mut public_t = [
            attr_bytes(CKA_EC_PARAMS, &p256),
            attr_bytes(CKA_ID, &id),
            attr(CKA_TOKEN, &yes),
        ];
        let mut private_t = [
            attr_bytes(CKA_ID, &id),
            attr_bytes(CKA_LABEL, b"state"),
            attr(CKA_SIGN, &yes),
        ];
        let (mut public, mut private): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) = (0, 0);
        let generate = f.C_GenerateKeyPair.unwrap();
        assert_eq!(
            generate(
                rw_session,
                &mut mech,
                public_t.as_mut_ptr(),
                3,
                private_t.as_mut_ptr(),
                3,
                &mut public,
                &mut private
            ),
            CKR_USER_NOT_LOGGED_IN
        );

        // Logins: a wrong PIN, the SO while a read-only session is open, then the user.
        let login = f.C_Login.unwrap();
        assert_eq!(
            login(rw_session, CKU_USER, b"000000".as_ptr() as *mut _, 6),
            CKR_PIN_INCORRECT
        );
        assert_eq!(
            login(rw_session, CKU_SO, b"x".as_ptr() as *mut _, 1),
            CKR_SESSION_READ_ONLY_EXISTS
        );
        assert_eq!(
            login(rw_session, 7, pin.as_ptr() as *mut _, 6),
            CKR_USER_TYPE_INVALID
        );
        assert_eq!(
            login(rw_session, CKU_USER, pin.as_ptr() as *mut _, 6),
            CKR_OK
        );
        assert_eq!(
            login(ro_session, CKU_USER, pin.as_ptr() as *mut _, 6),
            CKR_USER_ALREADY_LOGGED_IN
        );
        let mut info = CK_SESSION_INFO::default();
        assert_eq!(f.C_GetSessionInfo.unwrap()(ro_session, &mut info), CKR_OK);
        assert_eq!(
            info.state, CKS_RO_USER_FUNCTIONS,
            "login is per token, shared by sessions"
        );

        // Keys are made in read-write sessions only.
        assert_eq!(
            generate(
                ro_session,
                &mut mech,
                public_t.as_mut_ptr(),
                3,
                private_t.as_mut_ptr(),
                3,
                &mut public,
                &mut private
            ),
            CKR_SESSION_READ_ONLY
        );
        assert_eq!(
            generate(
                rw_session,
                &mut mech,
                public_t.as_mut_ptr(),
                3,
                private_t.as_mut_ptr(),
                3,
                &mut public,
                &mut private
            ),
            CKR_OK
        );

        // C_GetAttributeValue: lengths, short buffers, sensitive and unknown attributes.
        let mut point = [0u8; 8];
        let mut class: CK_OBJECT_CLASS = 0;
        let mut template = [
            CK_ATTRIBUTE {
                type_: CKA_EC_POINT,
                pValue: null_mut(),
                ulValueLen: 0,
            },
            attr_out(CKA_CLASS, &mut class),
        ];
        let get = f.C_GetAttributeValue.unwrap();
        assert_eq!(get(rw_session, public, template.as_mut_ptr(), 2), CKR_OK);
        assert_eq!(
            template[0].ulValueLen, 67,
            "DER OCTET STRING of a P-256 point"
        );
        assert_eq!(class, CKO_PUBLIC_KEY);
        template[0].pValue = point.as_mut_ptr() as *mut _;
        template[0].ulValueLen = point.len() as CK_ULONG;
        assert_eq!(
            get(rw_session, public, template.as_mut_ptr(), 2),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(template[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        let mut secret = [0u8; 64];
        let mut template = [
            attr_out(CKA_VALUE, &mut secret),
            CK_ATTRIBUTE {
                type_: 0x7fff_0001,
                pValue: null_mut(),
                ulValueLen: 0,
            },
            attr_out(CKA_CLASS, &mut class),
        ];
        assert_eq!(
            get(rw_session, private, template.as_mut_ptr(), 3),
            CKR_ATTRIBUTE_SENSITIVE
        );
        assert_eq!(template[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(template[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(
            class, CKO_PRIVATE_KEY,
            "the readable attribute is still answered"
        );

        // Searches page through a snapshot; a second init is refused until Final.
        let class_private: CK_OBJECT_CLASS = CKO_PRIVATE_KEY;
        let mut find_t = [attr_bytes(CKA_ID, &id)];
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(ro_session, find_t.as_mut_ptr(), 1),
            CKR_OK
        );
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(ro_session, find_t.as_mut_ptr(), 1),
            CKR_OPERATION_ACTIVE
        );
        let mut page = [0 as CK_OBJECT_HANDLE; 1];
        let mut seen = Vec::new();
        loop {
            assert_eq!(
                f.C_FindObjects.unwrap()(ro_session, page.as_mut_ptr(), 1, &mut n),
                CKR_OK
            );
            if n == 0 {
                break;
            }
            seen.push(page[0]);
        }
        seen.sort();
        let mut expected = vec![public, private];
        expected.sort();
        assert_eq!(seen, expected, "both halves, one per call");
        assert_eq!(f.C_FindObjectsFinal.unwrap()(ro_session), CKR_OK);
        let mut find_t = [attr(CKA_CLASS, &class_private), attr_bytes(CKA_ID, &id)];
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(rw_session, find_t.as_mut_ptr(), 2),
            CKR_OK
        );
        let mut found = [0 as CK_OBJECT_HANDLE; 4];
        assert_eq!(
            f.C_FindObjects.unwrap()(rw_session, found.as_mut_ptr(), 4, &mut n),
            CKR_OK
        );
        assert_eq!(
            (n, found[0]),
            (1, private),
            "the handle is stable per object"
        );
        assert_eq!(f.C_FindObjectsFinal.unwrap()(rw_session), CKR_OK);

        // C_Sign: wrong key and mechanism, length query, short buffer, then the signature.
        let mut ecdsa = CK_MECHANISM {
            mechanism: CKM_ECDSA,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let mut eddsa = CK_MECHANISM {
            mechanism: CKM_EDDSA,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let sign_init = f.C_SignInit.unwrap();
        assert_eq!(
            sign_init(rw_session, &mut ecdsa, public),
            CKR_KEY_HANDLE_INVALID
        );
        assert_eq!(
            sign_init(rw_session, &mut eddsa, private),
            CKR_KEY_TYPE_INCONSISTENT
        );
        assert_eq!(
            sign_init(rw_session, &mut ecdsa, 999_999),
            CKR_KEY_HANDLE_INVALID
        );
        assert_eq!(sign_init(rw_session, &mut ecdsa, private), CKR_OK);
        assert_eq!(
            sign_init(rw_session, &mut ecdsa, private),
            CKR_OPERATION_ACTIVE
        );
        let mut len: CK_ULONG = 0;
        assert_eq!(
            sign(
                rw_session,
                data.as_ptr() as *mut _,
                32,
                null_mut(),
                &mut len
            ),
            CKR_OK
        );
        assert_eq!(len, 64);
        let mut short = [0u8; 10];
        let mut short_len: CK_ULONG = 10;
        assert_eq!(
            sign(
                rw_session,
                data.as_ptr() as *mut _,
                32,
                short.as_mut_ptr(),
                &mut short_len
            ),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(short_len, 64);
        sig_len = sig.len() as CK_ULONG;
        assert_eq!(
            sign(
                rw_session,
                data.as_ptr() as *mut _,
                32,
                sig.as_mut_ptr(),
                &mut sig_len
            ),
            CKR_OK
        );
        assert_eq!(sig_len, 64);
        assert_eq!(
            sign(
                rw_session,
                data.as_ptr() as *mut _,
                32,
                sig.as_mut_ptr(),
                &mut sig_len
            ),
            CKR_OPERATION_NOT_INITIALIZED,
            "the operation ended with the signature"
        );

        // Multi-part ECDSA-SHA256 (hashed in the shim), finished by C_SignFinal only.
        let mut ecdsa_sha256 = CK_MECHANISM {
            mechanism: CKM_ECDSA_SHA256,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(sign_init(ro_session, &mut ecdsa_sha256, private), CKR_OK);
        assert_eq!(
            f.C_SignUpdate.unwrap()(ro_session, b"hello ".as_ptr() as *mut _, 6),
            CKR_OK
        );
        assert_eq!(
            f.C_SignUpdate.unwrap()(ro_session, b"world".as_ptr() as *mut _, 5),
            CKR_OK
        );
        assert_eq!(
            sign(
                ro_session,
                data.as_ptr() as *mut _,
                32,
                sig.as_mut_ptr(),
                &mut sig_len
            ),
            CKR_OPERATION_ACTIVE
        );
        assert_eq!(
            f.C_SignFinal.unwrap()(ro_session, null_mut(), &mut len),
            CKR_OK
        );
        assert_eq!(len, 64);
        sig_len = sig.len() as CK_ULONG;
        assert_eq!(
            f.C_SignFinal.unwrap()(ro_session, sig.as_mut_ptr(), &mut sig_len),
            CKR_OK
        );
        assert_eq!(sig_len, 64);

        // After logout, private keys are out of reach.
        assert_eq!(f.C_Logout.unwrap()(ro_session), CKR_OK);
        assert_eq!(
            sign_init(rw_session, &mut ecdsa, private),
            CKR_USER_NOT_LOGGED_IN
        );
        assert_eq!(
            get(rw_session, private, template.as_mut_ptr(), 1),
            CKR_USER_NOT_LOGGED_IN
        );

        // Destroyed objects are gone for good.
        assert_eq!(
            login(rw_session, CKU_USER, pin.as_ptr() as *mut _, 6),
            CKR_OK
        );
        assert_eq!(
            f.C_DestroyObject.unwrap()(ro_session, private),
            CKR_SESSION_READ_ONLY
        );
        assert_eq!(f.C_DestroyObject.unwrap()(rw_session, private), CKR_OK);
        assert_eq!(
            get(rw_session, private, template.as_mut_ptr(), 1),
            CKR_OBJECT_HANDLE_INVALID
        );
        assert_eq!(
            f.C_DestroyObject.unwrap()(rw_session, private),
            CKR_OBJECT_HANDLE_INVALID
        );

        // Closing the last session logs out.
        assert_eq!(f.C_CloseSession.unwrap()(rw_session), CKR_OK);
        assert_eq!(
            f.C_CloseSession.unwrap()(rw_session),
            CKR_SESSION_HANDLE_INVALID
        );
        assert_eq!(f.C_CloseSession.unwrap()(ro_session), CKR_OK);
        assert_eq!(
            f.C_OpenSession.unwrap()(slot, rw, null_mut(), None, &mut rw_session),
            CKR_OK
        );
        assert_eq!(f.C_GetSessionInfo.unwrap()(rw_session, &mut info), CKR_OK);
        assert_eq!(info.state, CKS_RW_PUBLIC_SESSION);
        assert_eq!(f.C_Finalize.unwrap()(null_mut()), CKR_OK);
    }
    drop(admin);
}

/// A forked child inherits an initialized shim without its I/O thread: it gets
/// `CKR_CRYPTOKI_NOT_INITIALIZED` until it calls `C_Initialize` itself, which then works.
#[test]
fn a_forked_child_initializes_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    signerd_down(dir.path(), &dir.path().join("shim.log"));
    let m = Module::load();
    let f = m.list;
    // SAFETY: null arguments, pointers to live locals; the child only calls the shim and
    // `_exit`s (nothing else runs in this process meanwhile: SERIAL is held).
    unsafe {
        assert_eq!(f.C_Initialize.unwrap()(null_mut()), CKR_OK);
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut info = CK_INFO::default();
            let ok = f.C_GetInfo.unwrap()(&mut info) == CKR_CRYPTOKI_NOT_INITIALIZED
                && f.C_Initialize.unwrap()(null_mut()) == CKR_OK
                && f.C_GetInfo.unwrap()(&mut info) == CKR_OK
                && f.C_Finalize.unwrap()(null_mut()) == CKR_OK;
            libc::_exit(if ok { 0 } else { 1 });
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child's PKCS#11 calls went wrong (status {status})"
        );
        let mut info = CK_INFO::default();
        assert_eq!(
            f.C_GetInfo.unwrap()(&mut info),
            CKR_OK,
            "the parent is untouched"
        );
        assert_eq!(f.C_Finalize.unwrap()(null_mut()), CKR_OK);
    }
}
