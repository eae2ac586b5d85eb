//! Key management: key pairs made in signerd's token.

use cryptoki_sys::*;

use super::args::*;
use crate::backend;

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
        let shim = backend::get()?;
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
