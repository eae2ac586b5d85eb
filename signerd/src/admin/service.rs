//! `signerd.admin.v1.TokenAdmin` over the token layer. Each RPC writes one audit line through
//! [`OpLog`] and runs its token work on the blocking pool ([`KeyStore`]). The caller was
//! identified and allowed by the layers in front ([`super::identity`], [`super::policy`]).

use std::sync::Arc;

use signerd_proto::admin as pb;
use signerd_proto::admin::token_admin_server::TokenAdmin;
use signerd_token::{
    KeyNaming, KeySpec, KeyUsage, ObjectFilter, PrivateKeyImport, PssParams, SignMechanism,
};
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use super::convert::{
    audit_id, key_type_from_wire, kind_from_wire, object_to_wire, reference_from_wire,
    tuf_key_id_from_wire,
};
use super::error::AdminError;
use super::identity::Caller;
use super::login::{LoginPins, LoginUser};
use crate::grpc::inflight::InFlight;
use crate::grpc::oplog::OpLog;
use crate::grpc::status::admin_status;
use crate::keys::KeyStore;

/// The admin service over one token.
#[derive(Clone, Debug)]
pub struct TokenAdminService {
    keys: KeyStore,
    pins: Arc<LoginPins>,
    in_flight: InFlight,
}

impl TokenAdminService {
    /// Serves the token behind `keys`, checking logins against `pins`.
    pub fn new(keys: KeyStore, pins: LoginPins, in_flight: InFlight) -> TokenAdminService {
        TokenAdminService {
            keys,
            pins: Arc::new(pins),
            in_flight,
        }
    }

    fn start<T>(&self, method: &'static str, request: &Request<T>) -> OpLog {
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Unknown);
        OpLog::start(method, caller.to_string(), &self.in_flight)
    }
}

/// Finishes the audit line and turns the result into the answer.
fn answer<T>(op: OpLog, result: Result<T, AdminError>) -> Result<Response<T>, Status> {
    op.finish(&result);
    result.map(Response::new).map_err(|e| admin_status(&e))
}

#[tonic::async_trait]
impl TokenAdmin for TokenAdminService {
    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let op = self.start("ListTokens", &request);
        let result = self
            .keys
            .blocking(|t| t.description())
            .await
            .map(|d| pb::ListTokensResponse {
                tokens: vec![pb::TokenInfo {
                    label: d.label,
                    manufacturer: d.manufacturer,
                    model: d.model,
                    serial: d.serial,
                    slot: d.slot,
                }],
            })
            .map_err(AdminError::from);
        answer(op, result)
    }

    async fn list_mechanisms(
        &self,
        request: Request<pb::ListMechanismsRequest>,
    ) -> Result<Response<pb::ListMechanismsResponse>, Status> {
        let op = self.start("ListMechanisms", &request);
        let result = self
            .keys
            .blocking(|t| t.list_mechanisms())
            .await
            .map(|list| pb::ListMechanismsResponse {
                mechanisms: list
                    .into_iter()
                    .map(|m| pb::MechanismInfo {
                        mechanism: m.mechanism,
                        min_key_bits: m.min_key_bits,
                        max_key_bits: m.max_key_bits,
                        flags: m.flags,
                    })
                    .collect(),
            })
            .map_err(AdminError::from);
        answer(op, result)
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let mut op = self.start("Login", &request);
        let mut req = request.into_inner();
        // Held only in a zeroizing buffer from here on.
        let pin = Zeroizing::new(std::mem::take(&mut req.pin));
        let who = match pb::UserType::try_from(req.user_type) {
            Ok(pb::UserType::User) => Ok(LoginUser::User),
            Ok(pb::UserType::So) => Ok(LoginUser::SecurityOfficer),
            _ => Err(AdminError::InvalidArgument(
                "user_type must be USER or SO".into(),
            )),
        };
        if let Ok(w) = &who {
            op.detail(format!("{w:?}"));
        }
        let result = who
            .and_then(|w| self.pins.check(w, &pin))
            .map(|()| pb::LoginResponse {});
        answer(op, result)
    }

    async fn find_objects(
        &self,
        request: Request<pb::FindObjectsRequest>,
    ) -> Result<Response<pb::FindObjectsResponse>, Status> {
        let mut op = self.start("FindObjects", &request);
        let req = request.into_inner();
        op.usage(&req.gun, &req.role);
        op.key_id(&req.tuf_key_id);
        let filter = (|| -> Result<ObjectFilter, AdminError> {
            Ok(ObjectFilter {
                kind: kind_from_wire(req.class)?,
                id: (!req.id.is_empty()).then(|| req.id.clone()),
                label: (!req.label.is_empty()).then(|| req.label.clone()),
                gun: (!req.gun.is_empty()).then(|| req.gun.clone()),
                role: (!req.role.is_empty()).then(|| req.role.clone()),
                tuf_key_id: tuf_key_id_from_wire(&req.tuf_key_id)?,
                key_type: key_type_from_wire(req.key_type)?,
            })
        })();
        let result = match filter {
            Ok(filter) => self
                .keys
                .blocking(move |t| t.find_objects(&filter))
                .await
                .map_err(AdminError::from),
            Err(e) => Err(e),
        }
        .map(|objects| pb::FindObjectsResponse {
            objects: objects.into_iter().map(object_to_wire).collect(),
        });
        answer(op, result)
    }

    async fn generate_key_pair(
        &self,
        request: Request<pb::GenerateKeyPairRequest>,
    ) -> Result<Response<pb::GenerateKeyPairResponse>, Status> {
        let mut op = self.start("GenerateKeyPair", &request);
        let req = request.into_inner();
        op.usage(&req.gun, &req.role);
        let spec = (|| -> Result<KeySpec, AdminError> {
            let algorithm = key_type_from_wire(req.key_type)?.ok_or_else(|| {
                AdminError::InvalidArgument("key_type is required: EC_P256, ED25519 or RSA".into())
            })?;
            let naming = match (req.id.is_empty(), req.label.is_empty()) {
                (true, true) => KeyNaming::Tuf(KeyUsage {
                    gun: req.gun.clone(),
                    role: req.role.clone(),
                }),
                (true, false) => KeyNaming::TufId {
                    label: req.label.clone(),
                },
                (false, _) => KeyNaming::Fixed {
                    id: req.id.clone(),
                    label: if req.label.is_empty() {
                        KeyUsage {
                            gun: req.gun.clone(),
                            role: req.role.clone(),
                        }
                        .label()
                    } else {
                        req.label.clone()
                    },
                },
            };
            Ok(KeySpec {
                algorithm,
                rsa_bits: (req.rsa_bits != 0).then_some(req.rsa_bits),
                naming,
            })
        })();
        let result = match spec {
            Ok(spec) => {
                op.detail(spec.algorithm.to_string());
                self.keys
                    .blocking(move |t| t.generate_key_pair(&spec))
                    .await
                    .map_err(AdminError::from)
            }
            Err(e) => Err(e),
        };
        if let Ok((private, _)) = &result {
            op.key_id(&audit_id(&private.reference.id));
        }
        let result = result.map(|(private, public)| pb::GenerateKeyPairResponse {
            private_key: Some(object_to_wire(private)),
            public_key: Some(object_to_wire(public)),
        });
        answer(op, result)
    }

    async fn sign(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let mut op = self.start("Sign", &request);
        let req = request.into_inner();
        let pss = req.pss.map(|p| PssParams {
            hash: p.hash_mechanism,
            mgf: p.mgf,
            salt_len: p.salt_length,
        });
        let parsed = reference_from_wire(req.key).and_then(|key| {
            let mechanism = SignMechanism::from_ckm(req.mechanism, pss)
                .map_err(signerd_token::TokenError::from)?;
            Ok((key, mechanism))
        });
        let result = match parsed {
            Ok((key, mechanism)) => {
                op.key_id(&audit_id(&key.id));
                if let Some(label) = &key.label {
                    let usage = KeyUsage::from_label(label);
                    op.usage(&usage.gun, &usage.role);
                }
                op.detail(mechanism.name().to_owned());
                let data = req.data;
                self.keys
                    .blocking(move |t| t.sign_with(&key, mechanism, &data))
                    .await
                    .map_err(AdminError::from)
            }
            Err(e) => Err(e),
        }
        .map(|signature| pb::SignResponse { signature });
        answer(op, result)
    }

    async fn store_certificate(
        &self,
        request: Request<pb::StoreCertificateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let mut op = self.start("StoreCertificate", &request);
        let req = request.into_inner();
        let usage = KeyUsage::from_label(&req.label);
        op.usage(&usage.gun, &usage.role);
        op.detail("certificate".into());
        let id = (!req.id.is_empty()).then_some(req.id);
        let result = self
            .keys
            .blocking(move |t| t.store_certificate(id, &req.label, &req.certificate_der))
            .await
            .map_err(AdminError::from);
        if let Ok(o) = &result {
            op.key_id(&audit_id(&o.reference.id));
        }
        answer(op, result.map(object_to_wire))
    }

    async fn import_private_key(
        &self,
        request: Request<pb::ImportPrivateKeyRequest>,
    ) -> Result<Response<pb::ImportPrivateKeyResponse>, Status> {
        let mut op = self.start("ImportPrivateKey", &request);
        let mut req = request.into_inner();
        // The only copy signerd keeps of the key: zeroized when the import is done.
        let pkcs8_der = Zeroizing::new(std::mem::take(&mut req.pkcs8_der));
        let usage = KeyUsage::from_label(&req.label);
        op.usage(&usage.gun, &usage.role);
        let result = match key_type_from_wire(req.key_type) {
            Ok(expected) => {
                let import = PrivateKeyImport {
                    id: (!req.id.is_empty()).then_some(req.id),
                    label: req.label,
                    expected,
                    pkcs8_der,
                };
                self.keys
                    .blocking(move |t| t.import_private_key(import))
                    .await
                    .map_err(AdminError::from)
            }
            Err(e) => Err(e),
        };
        if let Ok((private, _)) = &result {
            op.key_id(&audit_id(&private.reference.id));
            if let Some(k) = private.key_type {
                op.detail(k.to_string());
            }
        }
        let result = result.map(|(private, public)| pb::ImportPrivateKeyResponse {
            private_key: Some(object_to_wire(private)),
            public_key: Some(object_to_wire(public)),
        });
        answer(op, result)
    }

    async fn destroy_object(
        &self,
        request: Request<pb::DestroyObjectRequest>,
    ) -> Result<Response<pb::DestroyObjectResponse>, Status> {
        let mut op = self.start("DestroyObject", &request);
        let req = request.into_inner();
        let result = match reference_from_wire(req.r#ref) {
            Ok(reference) => {
                op.key_id(&audit_id(&reference.id));
                op.detail(reference.kind.uri_type().to_owned());
                self.keys
                    .blocking(move |t| t.destroy_objects(&reference))
                    .await
                    .map_err(AdminError::from)
            }
            Err(e) => Err(e),
        }
        .map(|n| pb::DestroyObjectResponse {
            destroyed: u32::try_from(n).unwrap_or(u32::MAX),
        });
        answer(op, result)
    }
}
