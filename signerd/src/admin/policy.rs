//! Who may use the admin API: peer uids/gids on the socket, listed client certificates on the
//! mTLS port. [`PolicyLayer`] answers everyone else PERMISSION_DENIED, saying what to configure,
//! before the request reaches the service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::server::NamedService;
use tower_layer::Layer;
use tower_service::Service;

use super::error::AdminError;
use super::identity::Caller;
use crate::config::{AdminClient, AdminSettings};
use crate::grpc::oplog::OpLog;
use crate::grpc::status::admin_status;

/// The admin API's allow lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminPolicy {
    allow_uids: Vec<u32>,
    allow_gids: Vec<u32>,
    admin_clients: Vec<AdminClient>,
}

impl AdminPolicy {
    /// The policy `settings` describe; with no uid list, only `own_uid` (signerd's) is allowed.
    pub fn from_settings(settings: &AdminSettings, own_uid: u32) -> AdminPolicy {
        AdminPolicy {
            allow_uids: settings.allow_uids.clone().unwrap_or_else(|| vec![own_uid]),
            allow_gids: settings.allow_gids.clone(),
            admin_clients: settings.admin_clients.clone(),
        }
    }

    /// Whether any client certificate is an admin (then the API is served on the mTLS port).
    pub fn has_admin_clients(&self) -> bool {
        !self.admin_clients.is_empty()
    }

    /// A one-line summary for startup logs and `check-config`.
    pub fn describe(&self) -> String {
        format!(
            "socket peers with uid {:?} or gid {:?}; {} admin client certificate(s) on the mTLS port",
            self.allow_uids,
            self.allow_gids,
            self.admin_clients.len()
        )
    }

    /// Allows `caller`, or says why not and what to configure.
    pub fn check(&self, caller: &Caller) -> Result<(), AdminError> {
        match caller {
            Caller::Local { uid, gid, .. } => {
                if self.allow_uids.contains(uid) || self.allow_gids.contains(gid) {
                    Ok(())
                } else {
                    Err(AdminError::PermissionDenied(format!(
                        "uid {uid} (gid {gid}) may not use signerd's admin API; add the uid to admin.allow_uids or the group to admin.allow_gids in signerd's config (allowed now: uids {:?}, gids {:?})",
                        self.allow_uids, self.allow_gids
                    )))
                }
            }
            Caller::Certificate {
                subject,
                fingerprint,
            } => {
                let listed = self.admin_clients.iter().any(|c| match c {
                    AdminClient::Subject(s) => s == subject,
                    AdminClient::Fingerprint(f) => f == fingerprint,
                });
                if listed {
                    Ok(())
                } else {
                    Err(AdminError::PermissionDenied(format!(
                        "client certificate '{subject}' is not an admin; add \"{subject}\" or \"sha256:{}\" to admin.admin_clients in signerd's config",
                        hex::encode(fingerprint)
                    )))
                }
            }
            Caller::Unknown => Err(AdminError::PermissionDenied(
                "signerd cannot tell who is calling (no peer credentials, no client certificate); use the admin socket or an admin client certificate".into(),
            )),
        }
    }
}

/// Refuses callers the policy does not allow.
#[derive(Clone, Debug)]
pub struct PolicyLayer {
    policy: Arc<AdminPolicy>,
}

impl PolicyLayer {
    /// Enforces `policy`.
    pub fn new(policy: AdminPolicy) -> PolicyLayer {
        PolicyLayer {
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = Enforce<S>;

    fn layer(&self, inner: S) -> Enforce<S> {
        Enforce {
            inner,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// The service [`PolicyLayer`] makes.
#[derive(Clone, Debug)]
pub struct Enforce<S> {
    inner: S,
    policy: Arc<AdminPolicy>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

// === impl Enforce ===

impl<S> Service<http::Request<tonic::body::Body>> for Enforce<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // Set by IdentityLayer, which runs first; a request without it is unidentified.
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Unknown);
        match self.policy.check(&caller) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(e) => {
                let method = request.uri().path().rsplit('/').next().unwrap_or_default();
                OpLog::denied(method, &caller.to_string(), &e.to_string());
                let response = admin_status(&e).into_http();
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

impl<S: NamedService> NamedService for Enforce<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(uids: Option<Vec<u32>>, gids: Vec<u32>, clients: Vec<AdminClient>) -> AdminPolicy {
        AdminPolicy::from_settings(
            &AdminSettings {
                allow_uids: uids,
                allow_gids: gids,
                admin_clients: clients,
                ..Default::default()
            },
            1000,
        )
    }

    fn local(uid: u32, gid: u32) -> Caller {
        Caller::Local {
            uid,
            gid,
            pid: None,
        }
    }

    #[test]
    fn default_allows_only_signerds_own_uid() {
        let p = policy(None, vec![], vec![]);
        assert!(p.check(&local(1000, 1000)).is_ok());
        let err = p.check(&local(1001, 1001)).unwrap_err().to_string();
        assert!(
            err.contains("uid 1001 (gid 1001) may not use") && err.contains("admin.allow_uids"),
            "{err}"
        );
        assert!(p.check(&Caller::Unknown).is_err());
        assert!(!p.has_admin_clients());
    }

    #[test]
    fn explicit_lists_replace_the_default() {
        let p = policy(Some(vec![0]), vec![50], vec![]);
        assert!(
            p.check(&local(1000, 1000)).is_err(),
            "own uid is not implied"
        );
        assert!(p.check(&local(0, 0)).is_ok());
        assert!(p.check(&local(1234, 50)).is_ok(), "by group");
    }

    #[test]
    fn certificates_by_subject_or_fingerprint() {
        let p = policy(
            None,
            vec![],
            vec![
                AdminClient::Subject("CN=ops".into()),
                AdminClient::Fingerprint([7; 32]),
            ],
        );
        let cert = |subject: &str, fp: u8| Caller::Certificate {
            subject: subject.into(),
            fingerprint: [fp; 32],
        };
        assert!(p.check(&cert("CN=ops", 1)).is_ok());
        assert!(p.check(&cert("CN=other", 7)).is_ok());
        let err = p
            .check(&cert("CN=notary-server", 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'CN=notary-server' is not an admin")
                && err.contains("admin.admin_clients"),
            "{err}"
        );
    }
}
