//! `signerd.admin.v1.TokenAdmin` over the token layer. Each RPC runs its token work on the
//! blocking pool ([`KeyStore`]). The edge in front identified the caller, records the call and
//! checked the operation; the key-level rules (GUN, role, algorithm, domain; the CA's key is
//! its own `ca` operation) are checked here through the caller's [`Access`] once the key is
//! known, and what is known of the key goes into the audit record's facts.

use std::sync::Arc;

use signerd_proto::admin as pb;
use signerd_proto::admin::token_admin_server::TokenAdmin;
use signerd_token::gc::{is_session_label, SessionOwner};
use signerd_token::{
    KeyDomain, KeyNaming, KeySpec, KeyUsage, ObjectFilter, ObjectRef, PrivateKeyImport, PssParams,
    SignMechanism, Token,
};
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use super::connection::AdminConnection;
use super::convert::{
    audit_id, key_type_from_wire, kind_from_wire, object_to_wire, reference_from_wire,
    tuf_key_id_from_wire,
};
use super::error::AdminError;
use super::login::{LoginPins, LoginUser};
use crate::audit::Port;
use crate::edge::error::KeyError;
use crate::edge::policy::Operation;
use crate::edge::status::status_of;
use crate::edge::Access;
use crate::keys::KeyStore;

/// The admin service over one token.
#[derive(Clone, Debug)]
pub struct TokenAdminService {
    keys: KeyStore,
    pins: Arc<LoginPins>,
    status: super::status::StatusSources,
}

impl TokenAdminService {
    /// Serves the token behind `keys`, checking logins against `pins`.
    pub fn new(keys: KeyStore, pins: LoginPins) -> TokenAdminService {
        TokenAdminService {
            keys,
            pins: Arc::new(pins),
            status: super::status::StatusSources::default(),
        }
    }

    /// The same service, reporting `sources` in `Status`.
    pub fn with_status(mut self, sources: super::status::StatusSources) -> TokenAdminService {
        self.status = sources;
        self
    }

    fn start<T>(&self, request: &Request<T>) -> Access {
        Access::of(Port::Admin, request)
    }
}

/// Turns the result into the answer.
fn answer<T>(_access: Access, result: Result<T, AdminError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(|e| status_of(&e))
}

/// Checks `operation` on every object `reference` names, by the usage in its label, in the
/// same blocking call that then uses them.
fn check_objects(
    t: &Token,
    access: &Access,
    operation: Operation,
    reference: &ObjectRef,
) -> Result<(), KeyError> {
    let filter = ObjectFilter {
        kind: Some(reference.kind),
        id: Some(reference.id.clone()),
        label: reference.label.clone(),
        ..ObjectFilter::default()
    };
    for object in t.find_objects(&filter)? {
        let algorithm = object.key_type;
        let usage = object
            .reference
            .label
            .as_deref()
            .map(KeyUsage::from_label)
            .unwrap_or_default();
        access.check_usage(operation, &usage, algorithm)?;
    }
    Ok(())
}

/// The admin socket connection a request came on; `None` on the mTLS port.
fn connection_of<T>(request: &Request<T>) -> Option<Arc<AdminConnection>> {
    request.extensions().get::<Arc<AdminConnection>>().cloned()
}

/// Refuses a reference to another connection's session key as if it did not exist, and
/// checks `operation` on a session key of this connection by the label its client gave.
fn check_session_key(
    connection: Option<&Arc<AdminConnection>>,
    access: &Access,
    operation: Operation,
    reference: &ObjectRef,
) -> Result<(), AdminError> {
    let Some(label) = reference.label.as_deref() else {
        return Ok(());
    };
    if !is_session_label(label.as_bytes()) {
        return Ok(());
    }
    match (connection, SessionOwner::parse(label)) {
        (Some(c), Some((_, client_label))) if c.owner().owns(label) => {
            Ok(access.check_usage(operation, &KeyUsage::from_label(&client_label), None)?)
        }
        _ => Err(AdminError::Token(
            signerd_token::TokenError::ObjectNotFound(
                "no such session key: a session key pair is usable only on the admin connection \
             that made it, while it stays open; make a new one"
                    .into(),
            ),
        )),
    }
}

#[tonic::async_trait]
impl TokenAdmin for TokenAdminService {
    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let access = self.start(&request);
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
        answer(access, result)
    }

    async fn list_mechanisms(
        &self,
        request: Request<pb::ListMechanismsRequest>,
    ) -> Result<Response<pb::ListMechanismsResponse>, Status> {
        let access = self.start(&request);
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
        answer(access, result)
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let access = self.start(&request);
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
        let result = who
            .and_then(|w| self.pins.login(&access.caller, w, &pin))
            .map(|()| pb::LoginResponse {});
        answer(access, result)
    }

    async fn find_objects(
        &self,
        request: Request<pb::FindObjectsRequest>,
    ) -> Result<Response<pb::FindObjectsResponse>, Status> {
        let access = self.start(&request);
        let req = request.into_inner();
        access.facts.usage(&req.gun, &req.role);
        access.facts.key_id(&req.tuf_key_id);
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
        answer(access, result)
    }

    async fn generate_key_pair(
        &self,
        request: Request<pb::GenerateKeyPairRequest>,
    ) -> Result<Response<pb::GenerateKeyPairResponse>, Status> {
        let access = self.start(&request);
        let connection = connection_of(&request);
        let req = request.into_inner();
        access.facts.usage(&req.gun, &req.role);
        let session = match (req.session, connection) {
            (false, _) => Ok(None),
            (true, Some(c)) => Ok(Some(c)),
            (true, None) => Err(AdminError::FailedPrecondition(
                "session key pairs are made only on the admin Unix socket, whose connection \
                 owns them: point the client at signerd's admin socket (SIGNERD_SOCKET), or \
                 make a token key pair"
                    .into(),
            )),
        };
        let spec = session.and_then(|session| {
            (|| -> Result<KeySpec, AdminError> {
                let algorithm = key_type_from_wire(req.key_type)?.ok_or_else(|| {
                    AdminError::InvalidArgument(
                        "key_type is required: EC_P256, ED25519 or RSA".into(),
                    )
                })?;
                let naming = match (req.id.is_empty(), req.label.is_empty()) {
                    (true, true) => {
                        KeyNaming::Tuf(KeyUsage::new(KeyDomain::Admin, &req.gun, &req.role))
                    }
                    (true, false) => KeyNaming::TufId {
                        label: req.label.clone(),
                    },
                    (false, _) => KeyNaming::Fixed {
                        id: req.id.clone(),
                        label: if req.label.is_empty() {
                            KeyUsage::new(KeyDomain::Admin, &req.gun, &req.role).label()
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
            })()
            .map(|spec| (spec, session))
        });
        let result = match spec {
            Ok((spec, session)) => {
                access.facts.algorithm(spec.algorithm.as_str());
                let usage = match &spec.naming {
                    KeyNaming::Tuf(usage) => usage.clone(),
                    KeyNaming::TufId { label } | KeyNaming::Fixed { label, .. } => {
                        KeyUsage::from_label(label)
                    }
                };
                match (
                    access.check_usage(Operation::Generate, &usage, Some(spec.algorithm)),
                    session,
                ) {
                    (Ok(()), None) => self
                        .keys
                        .blocking(move |t| t.generate_key_pair(&spec))
                        .await
                        .map_err(AdminError::from),
                    (Ok(()), Some(connection)) => {
                        connection.making_session_keys();
                        self.keys
                            .blocking(move |t| {
                                let pair =
                                    t.generate_session_key_pair(&spec, connection.owner())?;
                                // The connection closed while the pair was made: nobody can
                                // use it, and its close may have swept before it existed.
                                if connection.is_closed() {
                                    t.destroy_session_keys(connection.owner())?;
                                }
                                Ok(pair)
                            })
                            .await
                            .map_err(AdminError::from)
                    }
                    (Err(e), _) => Err(e.into()),
                }
            }
            Err(e) => Err(e),
        };
        if let Ok((private, _)) = &result {
            access.facts.key_id(&audit_id(&private.reference.id));
        }
        let result = result.map(|(private, public)| pb::GenerateKeyPairResponse {
            private_key: Some(object_to_wire(private)),
            public_key: Some(object_to_wire(public)),
        });
        answer(access, result)
    }

    async fn sign(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let access = self.start(&request);
        let connection = connection_of(&request);
        let req = request.into_inner();
        let pss = req.pss.map(|p| PssParams {
            hash: p.hash_mechanism,
            mgf: p.mgf,
            salt_len: p.salt_length,
        });
        let parsed = reference_from_wire(req.key).and_then(|key| {
            let mechanism = SignMechanism::from_ckm(req.mechanism, pss)
                .map_err(signerd_token::TokenError::from)?;
            check_session_key(connection.as_ref(), &access, Operation::Sign, &key)?;
            Ok((key, mechanism))
        });
        let result = match parsed {
            Ok((key, mechanism)) => {
                access.facts.key_id(&audit_id(&key.id));
                if let Some(label) = &key.label {
                    let usage = KeyUsage::from_label(label);
                    access.facts.usage(&usage.gun, &usage.role);
                }
                access.facts.algorithm(mechanism.name());
                access.facts.content(&req.data);
                let data = req.data;
                let checked = access.clone();
                self.keys
                    .blocking_with(move |t| {
                        check_objects(t, &checked, Operation::Sign, &key)?;
                        Ok::<_, KeyError>(t.sign_with(&key, mechanism, &data)?)
                    })
                    .await
                    .map_err(AdminError::from)
            }
            Err(e) => Err(e),
        }
        .map(|signature| pb::SignResponse { signature });
        answer(access, result)
    }

    async fn store_certificate(
        &self,
        request: Request<pb::StoreCertificateRequest>,
    ) -> Result<Response<pb::Object>, Status> {
        let access = self.start(&request);
        let req = request.into_inner();
        let usage = KeyUsage::from_label(&req.label);
        access.facts.usage(&usage.gun, &usage.role);
        let id = (!req.id.is_empty()).then_some(req.id);
        let result = match access.check_usage(Operation::Certificates, &usage, None) {
            Ok(()) => self
                .keys
                .blocking(move |t| t.store_certificate(id, &req.label, &req.certificate_der))
                .await
                .map_err(AdminError::from),
            Err(e) => Err(e.into()),
        };
        if let Ok(o) = &result {
            access.facts.key_id(&audit_id(&o.reference.id));
        }
        answer(access, result.map(object_to_wire))
    }

    async fn import_private_key(
        &self,
        request: Request<pb::ImportPrivateKeyRequest>,
    ) -> Result<Response<pb::ImportPrivateKeyResponse>, Status> {
        let access = self.start(&request);
        let mut req = request.into_inner();
        // The only copy signerd keeps of the key: zeroized when the import is done.
        let pkcs8_der = Zeroizing::new(std::mem::take(&mut req.pkcs8_der));
        let usage = KeyUsage::from_label(&req.label);
        access.facts.usage(&usage.gun, &usage.role);
        let result = match key_type_from_wire(req.key_type).and_then(|expected| {
            access
                .check_usage(Operation::Import, &usage, expected)
                .map(|()| expected)
                .map_err(AdminError::from)
        }) {
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
            access.facts.key_id(&audit_id(&private.reference.id));
            if let Some(k) = private.key_type {
                access.facts.algorithm(k.as_str());
            }
        }
        let result = result.map(|(private, public)| pb::ImportPrivateKeyResponse {
            private_key: Some(object_to_wire(private)),
            public_key: Some(object_to_wire(public)),
        });
        answer(access, result)
    }

    async fn destroy_object(
        &self,
        request: Request<pb::DestroyObjectRequest>,
    ) -> Result<Response<pb::DestroyObjectResponse>, Status> {
        let access = self.start(&request);
        let connection = connection_of(&request);
        let req = request.into_inner();
        let result = match reference_from_wire(req.r#ref).and_then(|reference| {
            check_session_key(connection.as_ref(), &access, Operation::Delete, &reference)?;
            Ok(reference)
        }) {
            Ok(reference) => {
                access.facts.key_id(&audit_id(&reference.id));
                let checked = access.clone();
                self.keys
                    .blocking_with(move |t| {
                        check_objects(t, &checked, Operation::Delete, &reference)?;
                        Ok::<_, KeyError>(t.destroy_objects(&reference)?)
                    })
                    .await
                    .map_err(AdminError::from)
            }
            Err(e) => Err(e),
        }
        .map(|n| pb::DestroyObjectResponse {
            destroyed: u32::try_from(n).unwrap_or(u32::MAX),
        });
        answer(access, result)
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let access = self.start(&request);
        let report = super::status::report(&self.keys, &self.status).await;
        answer(access, Ok(report))
    }
}
