//! Signing: single- and multi-part.

use cryptoki_sys::*;

use super::args::*;
use crate::backend;

cryptoki_fn! {
    /// Starts a signature with a private key of signerd's token (needs a logged-in user).
    fn C_SignInit(hSession: CK_SESSION_HANDLE, pMechanism: *mut CK_MECHANISM, hKey: CK_OBJECT_HANDLE) {
        let shim = backend::get()?;
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
        let shim = backend::get()?;
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
        let shim = backend::get()?;
        // SAFETY: checked by `bytes_in`; the caller gave ulPartLen bytes.
        let part = unsafe { bytes_in(pPart, ulPartLen, "pPart") }?;
        shim.sign_update(hSession, part)
    }
}

cryptoki_fn! {
    /// Finishes a multi-part signature; a null `pSignature` asks for the length.
    fn C_SignFinal(hSession: CK_SESSION_HANDLE, pSignature: *mut CK_BYTE, pulSignatureLen: *mut CK_ULONG) {
        let shim = backend::get()?;
        // SAFETY: checked by `out`.
        let len = unsafe { out(pulSignatureLen, "pulSignatureLen") }?;
        let answer = shim.sign_final(hSession, capacity(pSignature, *len))?;
        // SAFETY: pSignature has *len bytes of room by the caller's contract (or is null).
        unsafe { signature_out(answer, pSignature, len) }
    }
}
