//! `proto.KeyManagement` and `proto.Signer`: the Notary signer protocol, answered exactly as the
//! Go notary-signer answers it (see NOTARY-INTEROP.md), with keys in the token.

use signerd_proto::notary::key_management_server::KeyManagement;
use signerd_proto::notary::signer_server::Signer;
use signerd_proto::notary::{
    Algorithm, CreateKeyRequest, GetKeyInfoResponse, KeyId as KeyIdMsg, KeyInfo as KeyInfoMsg,
    PublicKey, Signature as SignatureMsg, SignatureRequest, Void,
};
use signerd_token::{KeyAlgorithm, KeyId, KeyInfo, KeyUsage, TokenError};
use tonic::{Request, Response, Status};

use super::identity::client_subject;
use super::inflight::InFlight;
use super::oplog::OpLog;
use super::status::to_status;
use crate::keys::KeyStore;

/// The Notary signer services over a [`KeyStore`].
#[derive(Clone, Debug)]
pub struct NotarySigner {
    keys: KeyStore,
    in_flight: InFlight,
}

impl NotarySigner {
    /// Serves the keys of `keys`, counting operations in `in_flight`.
    pub fn new(keys: KeyStore, in_flight: InFlight) -> NotarySigner {
        NotarySigner { keys, in_flight }
    }
}

/// The key ID a request names; unset or empty is a bad request (the Go signer crashes on it).
fn requested_id(msg: Option<&KeyIdMsg>) -> Result<KeyId, TokenError> {
    match msg {
        None => Err(TokenError::MissingKeyId),
        Some(m) if m.id.is_empty() => Err(TokenError::MissingKeyId),
        Some(m) => m.id.parse(),
    }
}

/// `keyInfo` as notary-server reads it: always filled, it dereferences without nil checks.
fn key_info_msg(key: &KeyInfo) -> KeyInfoMsg {
    KeyInfoMsg {
        key_id: Some(KeyIdMsg {
            id: key.id.to_string(),
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
        let mut op = OpLog::start("CreateKey", client_subject(&request), &self.in_flight);
        let req = request.into_inner();
        op.usage(&req.gun, &req.role);
        let result = match req.algorithm.parse::<KeyAlgorithm>() {
            Ok(algorithm) => {
                self.keys
                    .create(
                        algorithm,
                        KeyUsage {
                            gun: req.gun,
                            role: req.role,
                        },
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        if let Ok(key) = &result {
            op.key(key);
        }
        op.finish(&result);
        let key = result.map_err(|e| to_status(&e))?;
        Ok(Response::new(PublicKey {
            key_info: Some(key_info_msg(&key)),
            public_key: key.public_key,
        }))
    }

    async fn delete_key(&self, request: Request<KeyIdMsg>) -> Result<Response<Void>, Status> {
        let mut op = OpLog::start("DeleteKey", client_subject(&request), &self.in_flight);
        op.key_id(&request.get_ref().id);
        let result = match requested_id(Some(request.get_ref())) {
            Ok(id) => self.keys.delete(id).await,
            Err(e) => Err(e),
        };
        op.finish(&result);
        // Deleting a key that does not exist succeeds, as with the Go signer.
        result
            .map(|_| Response::new(Void {}))
            .map_err(|e| to_status(&e))
    }

    async fn get_key_info(
        &self,
        request: Request<KeyIdMsg>,
    ) -> Result<Response<GetKeyInfoResponse>, Status> {
        let mut op = OpLog::start("GetKeyInfo", client_subject(&request), &self.in_flight);
        op.key_id(&request.get_ref().id);
        let result = match requested_id(Some(request.get_ref())) {
            Ok(id) => self.keys.info(id).await,
            Err(e) => Err(e),
        };
        if let Ok(key) = &result {
            op.key(key);
        }
        op.finish(&result);
        let key = result.map_err(|e| to_status(&e))?;
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
        let mut op = OpLog::start("Sign", client_subject(&request), &self.in_flight);
        let req = request.into_inner();
        if let Some(id) = &req.key_id {
            op.key_id(&id.id);
        }
        let result = match requested_id(req.key_id.as_ref()) {
            Ok(id) => self.keys.sign(id, req.content).await,
            Err(e) => Err(e),
        };
        if let Ok(sig) = &result {
            op.key(&sig.key);
        }
        op.finish(&result);
        let sig = result.map_err(|e| to_status(&e))?;
        Ok(Response::new(SignatureMsg {
            key_info: Some(key_info_msg(&sig.key)),
            algorithm: Some(Algorithm {
                algorithm: sig.key.algorithm.signature_method().to_owned(),
            }),
            content: sig.bytes,
        }))
    }
}
