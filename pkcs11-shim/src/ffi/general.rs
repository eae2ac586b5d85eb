//! General-purpose functions: initialize, finalize, library info, and the legacy parallel
//! functions.

use cryptoki_sys::*;

use super::args::*;
use crate::backend;
use crate::error::Error;

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
        backend::initialize()
    }
}

cryptoki_fn! {
    /// Closes every session and stops the I/O thread.
    fn C_Finalize(pReserved: *mut std::os::raw::c_void) {
        if !pReserved.is_null() {
            return Err(Error::ArgumentsBad("pReserved must be null"));
        }
        backend::finalize()
    }
}

cryptoki_fn! {
    /// Describes the library.
    fn C_GetInfo(pInfo: *mut CK_INFO) {
        backend::get()?;
        // SAFETY: checked by `out`.
        *unsafe { out(pInfo, "pInfo") }? = backend::library_info();
        Ok(())
    }
}

cryptoki_fn! {
    /// Legacy: sessions are never parallel.
    fn C_GetFunctionStatus(hSession: CK_SESSION_HANDLE) {
        let _ = hSession;
        backend::get()?;
        Err(Error::FunctionNotParallel)
    }
}

cryptoki_fn! {
    /// Legacy: sessions are never parallel.
    fn C_CancelFunction(hSession: CK_SESSION_HANDLE) {
        let _ = hSession;
        backend::get()?;
        Err(Error::FunctionNotParallel)
    }
}
