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

/// The built shim (`cargo build --workspace` makes it; test builds make only the `rlib`).
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

mod exports;
mod fork;
mod state_machine;
mod valgrind;
