//! Verification: single- and multi-part, in software on a public key ([`crate::verify`]).
//! It needs no login and never asks signerd: a public key is all it takes.

use std::sync::Arc;

use cryptoki_sys::*;

use super::Shim;
use crate::error::Error;
use crate::mechanism::{self, SignOperation};
use crate::objects::ObjectView;

/// A verification in progress: the same data handling as a signature's.
pub(super) struct VerifyState {
    key: Arc<ObjectView>,
    operation: SignOperation,
}

impl VerifyState {
    /// Checks `signature` over everything the operation was given.
    fn check(&self, signature: &[u8]) -> Result<(), Error> {
        let (mechanism, data, pss) = self.operation.request()?;
        crate::verify::verify(
            &self.key.object.public_key_spki,
            mechanism,
            &data,
            pss.as_ref(),
            signature,
        )
    }
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
        let mechanism = mechanism::parse(mechanism, param)?;
        let ckm = mechanism.ckm() as CK_MECHANISM_TYPE;
        if !self.mechanisms()?.iter().any(|(m, _)| *m == ckm) {
            return Err(Error::MechanismInvalid(ckm));
        }
        let view = match self.visible_object(s.slot, key) {
            Ok(v) => v,
            Err(Error::ObjectHandleInvalid) => return Err(Error::KeyHandleInvalid),
            Err(e) => return Err(e),
        };
        match view.class() {
            Some(CKO_PUBLIC_KEY) => {}
            Some(CKO_PRIVATE_KEY) => {
                return Err(Error::KeyFunctionNotPermitted(
                    "verify with the key's public key object (CKO_PUBLIC_KEY, same CKA_ID)",
                ))
            }
            _ => return Err(Error::KeyHandleInvalid),
        }
        if view.key_type() != signerd_client::wire::key_type(mechanism.key_type()) {
            return Err(Error::KeyTypeInconsistent);
        }
        s.verify = Some(VerifyState {
            key: view,
            operation: SignOperation::new(mechanism),
        });
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
        if state.operation.multipart {
            return Err(Error::OperationActive);
        }
        let result = state
            .operation
            .update(data)
            .and_then(|()| state.check(signature));
        s.verify = None;
        result
    }

    /// `C_VerifyUpdate`.
    pub fn verify_update(&self, handle: CK_SESSION_HANDLE, data: &[u8]) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        let state = s.verify.as_mut().ok_or(Error::OperationNotInitialized)?;
        state.operation.multipart = true;
        let result = state.operation.update(data);
        if result.is_err() {
            s.verify = None;
        }
        result
    }

    /// `C_VerifyFinal`: ends the operation whatever the outcome.
    pub fn verify_final(&self, handle: CK_SESSION_HANDLE, signature: &[u8]) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        let state = s.verify.take().ok_or(Error::OperationNotInitialized)?;
        state.check(signature)
    }
}
