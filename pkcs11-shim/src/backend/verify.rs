//! Verification: single- and multi-part, in software on a public key ([`crate::verify`]).
//! It needs no login and never asks signerd: a public key is all it takes. The data is
//! prepared as for a signature ([`SignState`]), so what the shim signs verifies here.

use cryptoki_sys::*;

use super::sign::SignState;
use super::Shim;
use crate::error::Error;

/// A verification in progress: the same state as a signature's.
pub(super) type VerifyState = SignState;

/// Checks `signature` over everything `state` was given.
fn check(state: &VerifyState, signature: &[u8]) -> Result<(), Error> {
    let (mechanism, data, pss) = state.operation.request()?;
    crate::verify::verify(
        &state.key.object.public_key_spki,
        mechanism,
        &data,
        pss.as_ref(),
        signature,
    )
}

impl Shim {
    /// `C_VerifyInit`: with a public key object (in the token or a session object).
    pub fn verify_init(
        &self,
        handle: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        param: &[u8],
        key: CK_OBJECT_HANDLE,
    ) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        if s.verify.is_some() {
            return Err(Error::OperationActive);
        }
        s.verify =
            Some(self.operation_init(
                s.slot,
                mechanism,
                param,
                key,
                |view| match view.class() {
                    Some(CKO_PUBLIC_KEY) => Ok(()),
                    Some(CKO_PRIVATE_KEY) => Err(Error::KeyFunctionNotPermitted(
                        "verify with the key's public key object (CKO_PUBLIC_KEY, same CKA_ID)",
                    )),
                    _ => Err(Error::KeyHandleInvalid),
                },
            )?);
        Ok(())
    }

    /// `C_Verify`: ends the operation whatever the outcome.
    pub fn verify(
        &self,
        handle: CK_SESSION_HANDLE,
        data: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        let state = s.verify.as_mut().ok_or(Error::OperationNotInitialized)?;
        let result = state.single(data)?.and_then(|()| check(state, signature));
        s.verify = None;
        result
    }

    /// `C_VerifyUpdate`.
    pub fn verify_update(&self, handle: CK_SESSION_HANDLE, data: &[u8]) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        SignState::update(&mut s.verify, data)
    }

    /// `C_VerifyFinal`: ends the operation whatever the outcome.
    pub fn verify_final(&self, handle: CK_SESSION_HANDLE, signature: &[u8]) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        let state = s.verify.take().ok_or(Error::OperationNotInitialized)?;
        check(&state, signature)
    }
}
