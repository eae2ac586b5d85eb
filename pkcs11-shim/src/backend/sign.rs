//! Signing operations: single- and multi-part, with the PKCS#11 size conventions.

use std::sync::Arc;

use cryptoki_sys::*;
use signerd_proto::admin::{SignRequest, SignResponse};

use super::login::Login;
use super::Shim;
use crate::error::Error;
use crate::mechanism::{self, SignOperation};
use crate::objects::ObjectView;

/// What a `C_Sign`/`C_SignFinal` call gives back.
#[derive(Debug, PartialEq, Eq)]
pub enum SignOutput {
    /// Only the length was asked for (null buffer); the operation goes on.
    Length(usize),
    /// The buffer is too small for a signature of this length; the operation goes on.
    TooSmall(usize),
    /// The signature; the operation is over.
    Signature(Vec<u8>),
}

/// A signature or a verification in progress: the key and the data as signerd would sign
/// it (the same preparation, hashing and DigestInfo, for both).
pub(super) struct SignState {
    pub(super) key: Arc<ObjectView>,
    pub(super) operation: SignOperation,
}

impl SignState {
    /// Feeds one part of a multi-part operation; a failure ends it.
    pub(super) fn update(slot: &mut Option<SignState>, data: &[u8]) -> Result<(), Error> {
        let state = slot.as_mut().ok_or(Error::OperationNotInitialized)?;
        state.operation.multipart = true;
        let result = state.operation.update(data);
        if result.is_err() {
            *slot = None;
        }
        result
    }

    /// Takes the whole data of a single-part operation (`C_Sign`, `C_Verify`): refused while
    /// a multi-part one is under way, which stays as it was.
    pub(super) fn single(&mut self, data: &[u8]) -> Result<Result<(), Error>, Error> {
        if self.operation.multipart {
            return Err(Error::OperationActive);
        }
        Ok(self.operation.update(data))
    }
}

impl Shim {
    /// `C_SignInit`.
    pub fn sign_init(
        &self,
        handle: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        param: &[u8],
        key: CK_OBJECT_HANDLE,
    ) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        if s.sign.is_some() {
            return Err(Error::OperationActive);
        }
        if self.login_of(s.slot)? != Some(Login::User) {
            return Err(Error::UserNotLoggedIn);
        }
        s.sign =
            Some(self.operation_init(
                s.slot,
                mechanism,
                param,
                key,
                |view| match view.is_private() {
                    true => Ok(()),
                    false => Err(Error::KeyHandleInvalid),
                },
            )?);
        Ok(())
    }

    /// Starts a signature or a verification with `key`, once `usable` accepts its object:
    /// the mechanism must be one the shim offers and fit the key's type.
    pub(super) fn operation_init(
        &self,
        slot: CK_SLOT_ID,
        mechanism: CK_MECHANISM_TYPE,
        param: &[u8],
        key: CK_OBJECT_HANDLE,
        usable: impl FnOnce(&ObjectView) -> Result<(), Error>,
    ) -> Result<SignState, Error> {
        let mechanism = mechanism::parse(mechanism, param)?;
        let ckm = mechanism.ckm() as CK_MECHANISM_TYPE;
        if !self.mechanisms()?.iter().any(|(m, _)| *m == ckm) {
            return Err(Error::MechanismInvalid(ckm));
        }
        let view = match self.visible_object(slot, key) {
            Ok(v) => v,
            Err(Error::ObjectHandleInvalid) => return Err(Error::KeyHandleInvalid),
            Err(e) => return Err(e),
        };
        usable(&view)?;
        if view.key_type() != signerd_client::wire::key_type(mechanism.key_type()) {
            return Err(Error::KeyTypeInconsistent);
        }
        Ok(SignState {
            key: view,
            operation: SignOperation::new(mechanism),
        })
    }

    /// `C_Sign`: `capacity` is the caller's buffer size, `None` for a size query.
    pub fn sign(
        &self,
        handle: CK_SESSION_HANDLE,
        data: &[u8],
        capacity: Option<usize>,
    ) -> Result<SignOutput, Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        let state = s.sign.as_mut().ok_or(Error::OperationNotInitialized)?;
        if state.operation.multipart {
            // C_Sign cannot finish a multi-part operation; the operation stays as it was.
            return Err(Error::OperationActive);
        }
        if let Some(answer) = size_answer(state, capacity) {
            return Ok(answer);
        }
        let result = state.single(data)?.and_then(|()| self.sign_now(state));
        // Anything but a size answer ends the operation.
        s.sign = None;
        finish(result?, capacity)
    }

    /// `C_SignUpdate`.
    pub fn sign_update(&self, handle: CK_SESSION_HANDLE, data: &[u8]) -> Result<(), Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        SignState::update(&mut s.sign, data)
    }

    /// `C_SignFinal`.
    pub fn sign_final(
        &self,
        handle: CK_SESSION_HANDLE,
        capacity: Option<usize>,
    ) -> Result<SignOutput, Error> {
        let session = self.session(handle)?;
        let mut s = session.lock()?;
        let state = s.sign.as_mut().ok_or(Error::OperationNotInitialized)?;
        if let Some(answer) = size_answer(state, capacity) {
            return Ok(answer);
        }
        let result = self.sign_now(state);
        s.sign = None;
        finish(result?, capacity)
    }

    /// Sends the operation to signerd.
    fn sign_now(&self, state: &SignState) -> Result<Vec<u8>, Error> {
        let (mechanism, data, pss) = state.operation.request()?;
        let response: SignResponse = self.bridge.call(SignRequest {
            key: Some(state.key.signerd_reference()),
            mechanism: mechanism as u64,
            data,
            pss,
        })?;
        Ok(response.signature)
    }
}

/// The answer to a size query, or to a buffer too small for this key's signatures; `None`
/// when the signature is to be made.
fn size_answer(state: &SignState, capacity: Option<usize>) -> Option<SignOutput> {
    let len = state.key.signature_len()?;
    match capacity {
        None => Some(SignOutput::Length(len)),
        Some(c) if c < len => Some(SignOutput::TooSmall(len)),
        Some(_) => None,
    }
}

/// The answer for a signature signerd made, given the caller's buffer.
fn finish(signature: Vec<u8>, capacity: Option<usize>) -> Result<SignOutput, Error> {
    match capacity {
        Some(c) if c >= signature.len() => Ok(SignOutput::Signature(signature)),
        // The length was not known beforehand and the buffer is short: the signature is
        // lost, but the caller learns the size for its next attempt.
        _ => Ok(SignOutput::TooSmall(signature.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_signature_lengths_still_report_a_short_buffer() {
        assert_eq!(
            finish(vec![1; 64], Some(10)).unwrap(),
            SignOutput::TooSmall(64)
        );
        assert_eq!(
            finish(vec![1; 64], Some(64)).unwrap(),
            SignOutput::Signature(vec![1; 64])
        );
    }
}
