//! `proto.KeyManagement` and `proto.Signer`: the Notary signer protocol, answered exactly as the
//! Go notary-signer answers it (see NOTARY-INTEROP.md), with keys in the token.
//!
//! The edge in front identified the caller, records the call and checked the operation; the
//! key store checks the key itself against the caller's [`Access`]. Keys made here are marked
//! as the Notary domain's on the token objects.

use signerd_proto::notary::key_management_server::KeyManagement;
use signerd_proto::notary::signer_server::Signer;
use signerd_proto::notary::{
    Algorithm, CreateKeyRequest, GetKeyInfoResponse, KeyId as KeyIdMsg, KeyInfo as KeyInfoMsg,
    PublicKey, Signature as SignatureMsg, SignatureRequest, Void,
};
use signerd_token::{KeyAlgorithm, KeyDomain, KeyId, KeyInfo, KeyUsage, TokenError};
use tonic::{Request, Response, Status};

use crate::audit::Port;
use crate::edge::error::KeyError;
use crate::edge::status::status_of;
use crate::edge::Access;
use crate::keys::KeyStore;

/// The Notary signer services over a [`KeyStore`].
#[derive(Clone, Debug)]
pub struct NotarySigner {
    keys: KeyStore,
}

impl NotarySigner {
    /// Serves the keys of `keys`.
    pub fn new(keys: KeyStore) -> NotarySigner {
        NotarySigner { keys }
    }
}

/// The key ID a request names, noted for the audit record (as 32 bytes; the caller's text only
/// when it is no key ID); unset or empty is a bad request (the Go signer crashes on it).
fn requested_id(access: &Access, msg: Option<&KeyIdMsg>) -> Result<KeyId, TokenError> {
    let parsed = match msg {
        None => Err(TokenError::MissingKeyId),
        Some(m) if m.id.is_empty() => Err(TokenError::MissingKeyId),
        Some(m) => m.id.parse(),
    };
    match (&parsed, msg) {
        (Ok(id), _) => access.facts.id(*id),
        (Err(_), Some(m)) if !m.id.is_empty() => access.facts.key_id(&m.id),
        (Err(_), _) => {}
    }
    parsed
}

/// `keyInfo` as notary-server reads it: always filled, it dereferences without nil checks.
fn key_info_msg(key: &KeyInfo) -> KeyInfoMsg {
    KeyInfoMsg {
        key_id: Some(KeyIdMsg {
            id: key.id.hex(&mut [0; 64]).to_owned(),
        }),
        algorithm: Some(Algorithm {
            algorithm: key.algorithm.as_str().to_owned(),
        }),
    }
}

#[tonic::async_trait]
impl KeyManagement for NotarySigner {
    async fn create_key(
        &self,
        request: Request<CreateKeyRequest>,
    ) -> Result<Response<PublicKey>, Status> {
        let access = Access::of(Port::Notary, &request);
        let req = request.into_inner();
        access.facts.usage(&req.gun, &req.role);
        access.facts.algorithm(&req.algorithm);
        let checked = crate::edge::validate::usage(&req.gun, &req.role)
            .and_then(|()| req.algorithm.parse::<KeyAlgorithm>());
        let key = match checked {
            Ok(algorithm) => {
                let usage = KeyUsage::new(KeyDomain::Notary, req.gun, req.role);
                self.keys.create(&access, algorithm, usage).await
            }
            Err(e) => Err(KeyError::from(e)),
        }
        .map_err(|e| status_of(&e))?;
        Ok(Response::new(PublicKey {
            key_info: Some(key_info_msg(&key)),
            public_key: key.public_key,
        }))
    }

    async fn delete_key(&self, request: Request<KeyIdMsg>) -> Result<Response<Void>, Status> {
        let access = Access::of(Port::Notary, &request);
        // Deleting a key that does not exist succeeds, as with the Go signer; so does deleting
        // one out of reach, which stays.
        match requested_id(&access, Some(request.get_ref())) {
            Ok(id) => self.keys.delete(&access, id).await,
            Err(e) => Err(e.into()),
        }
        .map(|_| Response::new(Void {}))
        .map_err(|e| status_of(&e))
    }

    async fn get_key_info(
        &self,
        request: Request<KeyIdMsg>,
    ) -> Result<Response<GetKeyInfoResponse>, Status> {
        let access = Access::of(Port::Notary, &request);
        let key = match requested_id(&access, Some(request.get_ref())) {
            Ok(id) => self.keys.info(&access, id).await,
            Err(e) => Err(e.into()),
        }
        .map_err(|e| status_of(&e))?;
        Ok(Response::new(GetKeyInfoResponse {
            key_info: Some(key_info_msg(&key)),
            role: key.usage.role.clone(),
            public_key: key.public_key,
        }))
    }
}

#[tonic::async_trait]
impl Signer for NotarySigner {
    async fn sign(
        &self,
        request: Request<SignatureRequest>,
    ) -> Result<Response<SignatureMsg>, Status> {
        let access = Access::of(Port::Notary, &request);
        let req = request.into_inner();
        let sig = match requested_id(&access, req.key_id.as_ref()) {
            Ok(id) => self.keys.sign(&access, id, req.content).await,
            Err(e) => Err(e.into()),
        }
        .map_err(|e| status_of(&e))?;
        Ok(Response::new(SignatureMsg {
            key_info: Some(key_info_msg(&sig.key)),
            algorithm: Some(Algorithm {
                algorithm: sig.key.algorithm.signature_method().to_owned(),
            }),
            content: sig.bytes,
        }))
    }
}
