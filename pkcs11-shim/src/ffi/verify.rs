//! Verification: single- and multi-part, in software on a public key.

use cryptoki_sys::*;

use super::args::*;
use crate::backend;

cryptoki_fn! {
    /// Starts a verification with a public key object.
    fn C_VerifyInit(hSession: CK_SESSION_HANDLE, pMechanism: *mut CK_MECHANISM, hKey: CK_OBJECT_HANDLE) {
        let shim = backend::get()?;
        // SAFETY: checked by `mechanism_in`.
        let (mechanism, param) = unsafe { mechanism_in(pMechanism) }?;
        shim.verify_init(hSession, mechanism, &param, hKey)
    }
}

cryptoki_fn! {
    /// Verifies in one call: `CKR_OK` or `CKR_SIGNATURE_INVALID`.
    fn C_Verify(
        hSession: CK_SESSION_HANDLE,
        pData: *mut CK_BYTE,
        ulDataLen: CK_ULONG,
        pSignature: *mut CK_BYTE,
        ulSignatureLen: CK_ULONG,
    ) {
        let shim = backend::get()?;
        // SAFETY: checked by `bytes_in`; the caller gave ulDataLen bytes.
        let data = unsafe { bytes_in(pData, ulDataLen, "pData") }?;
        // SAFETY: checked by `bytes_in`; the caller gave ulSignatureLen bytes.
        let signature = unsafe { bytes_in(pSignature, ulSignatureLen, "pSignature") }?;
        shim.verify(hSession, data, signature)
    }
}

cryptoki_fn! {
    /// Adds data to a multi-part verification.
    fn C_VerifyUpdate(hSession: CK_SESSION_HANDLE, pPart: *mut CK_BYTE, ulPartLen: CK_ULONG) {
        let shim = backend::get()?;
        // SAFETY: checked by `bytes_in`; the caller gave ulPartLen bytes.
        let part = unsafe { bytes_in(pPart, ulPartLen, "pPart") }?;
        shim.verify_update(hSession, part)
    }
}

cryptoki_fn! {
    /// Finishes a multi-part verification.
    fn C_VerifyFinal(hSession: CK_SESSION_HANDLE, pSignature: *mut CK_BYTE, ulSignatureLen: CK_ULONG) {
        let shim = backend::get()?;
        // SAFETY: checked by `bytes_in`; the caller gave ulSignatureLen bytes.
        let signature = unsafe { bytes_in(pSignature, ulSignatureLen, "pSignature") }?;
        shim.verify_final(hSession, signature)
    }
}
