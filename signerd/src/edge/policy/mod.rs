//! Who may do what with which key, on both ports.
//!
//! A [`Policy`] is a list of [`Rule`]s: the `[[policy]]` rules of the config file, plus built-in
//! ones so an existing config keeps working: `admin.allow_uids`, `admin.allow_gids` and
//! `admin.admin_clients` grant every admin operation, and, when no rule names the Notary port,
//! `builtin:notary-server` grants any verified client certificate what notary-server does
//! (create, info, sign, delete of `timestamp` and `snapshot` keys).
//!
//! Two checks: [`PolicyLayer`] refuses a call no rule grants the operation of at all (before any
//! key is touched); the key store asks [`Policy::decide`] once the key is known (its GUN, role,
//! algorithm and domain). On the Notary port a key out of reach (another domain, or a legacy key
//! whose role is not `timestamp`/`snapshot`) reads as absent: NOT_FOUND, never a hint that it
//! exists. Rules are reloaded on SIGHUP through a [`PolicyHandle`].

pub mod config;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use signerd_token::{KeyAlgorithm, KeyDomain};
use tonic::server::NamedService;
use tower_layer::Layer;
use tower_service::Service;

use super::audit::OpFacts;
use super::error::Refusal;
use super::identity::Caller;
pub use super::operation::Operation;
use super::record::Port;
use crate::config::{AdminClient, AdminSettings};

/// Roles notary-server manages itself: the only ones the Notary port reaches by default.
pub const NOTARY_ROLES: [&str; 2] = ["timestamp", "snapshot"];

/// A glob over GUNs or roles: `*` matches any run of characters, `/` included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// The glob `pattern`.
    pub fn new(pattern: &str) -> Glob {
        Glob(pattern.to_owned())
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = text.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            // No `*` at all: the whole text must be the pattern.
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// Whom a rule names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Who {
    /// Any verified client certificate.
    pub any_certificate: bool,
    /// Certificate subjects.
    pub subjects: Vec<String>,
    /// Certificate subjectAltNames.
    pub sans: Vec<String>,
    /// Certificate SHA-256 fingerprints.
    pub fingerprints: Vec<[u8; 32]>,
    /// Issuers the certificate must have.
    pub issuers: Vec<String>,
    /// Socket peer uids.
    pub uids: Vec<u32>,
    /// Socket peer primary gids.
    pub gids: Vec<u32>,
    /// Socket peer groups, primary or supplementary.
    pub groups: Vec<u32>,
}

impl Who {
    /// Whether `caller` is one of these.
    pub fn matches(&self, caller: &Caller) -> bool {
        match caller {
            Caller::Certificate(c) => {
                let named = !self.subjects.is_empty()
                    || !self.sans.is_empty()
                    || !self.fingerprints.is_empty();
                let by_name = self.subjects.contains(&c.subject)
                    || c.sans.iter().any(|s| self.sans.contains(s))
                    || self.fingerprints.contains(&c.fingerprint);
                let chosen = if named {
                    by_name || self.any_certificate
                } else {
                    self.any_certificate || !self.issuers.is_empty()
                };
                chosen && (self.issuers.is_empty() || self.issuers.contains(&c.issuer))
            }
            Caller::Local {
                uid, gid, groups, ..
            } => {
                self.uids.contains(uid)
                    || self.gids.contains(gid)
                    || self.groups.contains(gid)
                    || groups.iter().any(|g| self.groups.contains(g))
            }
            Caller::Unknown => false,
        }
    }
}

/// A compiled rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Its name, in audit records and refusals.
    pub name: String,
    /// The port it governs.
    pub port: Port,
    /// Whom it names.
    pub who: Who,
    /// What it grants.
    pub operations: Vec<Operation>,
    /// GUN globs; empty = any.
    pub guns: Vec<Glob>,
    /// Role globs; empty = any.
    pub roles: Vec<Glob>,
    /// Algorithms; empty = any.
    pub algorithms: Vec<KeyAlgorithm>,
    /// Domains; empty = the port's default.
    pub domains: Vec<KeyDomain>,
}

/// What is known of the key an operation is about.
#[derive(Clone, Copy, Debug)]
pub struct KeyFacts<'a> {
    /// Its repository.
    pub gun: &'a str,
    /// Its role.
    pub role: &'a str,
    /// Its algorithm, when known.
    pub algorithm: Option<KeyAlgorithm>,
    /// Its domain.
    pub domain: KeyDomain,
}

impl Rule {
    fn domain_ok(&self, domain: KeyDomain) -> bool {
        if self.domains.is_empty() {
            match self.port {
                Port::Notary => matches!(domain, KeyDomain::Notary | KeyDomain::Legacy),
                Port::Admin => true,
            }
        } else {
            self.domains.contains(&domain)
        }
    }

    fn key_ok(&self, key: &KeyFacts<'_>) -> bool {
        self.domain_ok(key.domain)
            && (self.guns.is_empty() || self.guns.iter().any(|g| g.matches(key.gun)))
            && (self.roles.is_empty() || self.roles.iter().any(|g| g.matches(key.role)))
            && key
                .algorithm
                .is_none_or(|a| self.algorithms.is_empty() || self.algorithms.contains(&a))
    }

    /// Whether this rule opens a key the Notary port does not reach by default: it lists the
    /// key's domain and role explicitly.
    fn widens_to(&self, key: &KeyFacts<'_>) -> bool {
        self.domains.contains(&key.domain)
            && !self.roles.is_empty()
            && self.roles.iter().any(|g| g.matches(key.role))
    }
}

/// What the policy says about one operation on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the named rule.
    Allow(String),
    /// The key is out of the caller's reach: answer exactly as for an absent key.
    Hidden,
    /// Refused.
    Deny(Refusal),
}

/// The rules in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// The configured `rules` plus the built-in ones from `admin` (`own_uid` is signerd's uid,
    /// allowed on the socket when `admin.allow_uids` is not set).
    pub fn new(rules: Vec<Rule>, admin: &AdminSettings, own_uid: u32) -> Policy {
        let mut all = Vec::new();
        let admin_rule = |name: &str, who: Who| Rule {
            name: name.to_owned(),
            port: Port::Admin,
            who,
            operations: Operation::ADMIN.to_vec(),
            guns: vec![],
            roles: vec![],
            algorithms: vec![],
            domains: vec![],
        };
        let uids = admin.allow_uids.clone().unwrap_or_else(|| vec![own_uid]);
        all.push(admin_rule(
            "admin.allow_uids",
            Who {
                uids,
                ..Who::default()
            },
        ));
        if !admin.allow_gids.is_empty() {
            all.push(admin_rule(
                "admin.allow_gids",
                Who {
                    gids: admin.allow_gids.clone(),
                    ..Who::default()
                },
            ));
        }
        if !admin.admin_clients.is_empty() {
            let mut who = Who::default();
            for c in &admin.admin_clients {
                match c {
                    AdminClient::Subject(s) => who.subjects.push(s.clone()),
                    AdminClient::Fingerprint(f) => who.fingerprints.push(*f),
                }
            }
            all.push(admin_rule("admin.admin_clients", who));
        }
        if !rules.iter().any(|r| r.port == Port::Notary) {
            all.push(Rule {
                name: "builtin:notary-server".into(),
                port: Port::Notary,
                who: Who {
                    any_certificate: true,
                    ..Who::default()
                },
                operations: Operation::NOTARY.to_vec(),
                guns: vec![],
                roles: NOTARY_ROLES.iter().map(|r| Glob::new(r)).collect(),
                algorithms: vec![],
                domains: vec![],
            });
        }
        all.extend(rules);
        Policy { rules: all }
    }

    /// Whether any client certificate may use the admin API (then it is served on the mTLS
    /// port too).
    pub fn admin_on_tls(&self) -> bool {
        self.rules.iter().any(|r| {
            r.port == Port::Admin
                && (r.who.any_certificate
                    || !r.who.subjects.is_empty()
                    || !r.who.sans.is_empty()
                    || !r.who.fingerprints.is_empty()
                    || !r.who.issuers.is_empty())
        })
    }

    /// A one-line summary for startup logs.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.rules.iter().map(|r| r.name.as_str()).collect();
        format!("{} rule(s): {}", names.len(), names.join(", "))
    }

    fn for_caller<'a>(
        &'a self,
        port: Port,
        caller: &'a Caller,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.port == port && r.who.matches(caller))
    }

    /// Allows `operation` on `port` when some rule grants it to `caller` at all; which keys it
    /// may touch is [`Policy::decide`]'s answer.
    pub fn may_call(
        &self,
        port: Port,
        caller: &Caller,
        operation: Operation,
    ) -> Result<(), Refusal> {
        let mut named = false;
        for rule in self.for_caller(port, caller) {
            named = true;
            if rule.operations.contains(&operation) {
                return Ok(());
            }
        }
        let reason = match (port, caller, named) {
            (Port::Admin, Caller::Local { uid, gid, .. }, false) => {
                let uids: Vec<u32> = self.rules.iter().filter(|r| r.port == Port::Admin).flat_map(|r| r.who.uids.clone()).collect();
                let gids: Vec<u32> = self.rules.iter().filter(|r| r.port == Port::Admin).flat_map(|r| r.who.gids.clone()).collect();
                format!("uid {uid} (gid {gid}) may not use signerd's admin API; add the uid to admin.allow_uids or the group to admin.allow_gids in signerd's config, or a [[policy]] rule with port = \"admin\" (allowed now: uids {uids:?}, gids {gids:?})")
            }
            (Port::Admin, Caller::Certificate(c), false) => format!(
                "client certificate '{}' is not an admin; add \"{}\" or \"sha256:{}\" to admin.admin_clients in signerd's config, or a [[policy]] rule with port = \"admin\"",
                c.subject, c.subject, hex::encode(c.fingerprint)
            ),
            (_, Caller::Unknown, _) => "signerd cannot tell who is calling (no peer credentials, no client certificate); use the admin socket or a client certificate".into(),
            (_, _, false) => format!(
                "no [[policy]] rule names {} on the {} port; add one with {}",
                describe_caller(caller),
                port.as_str(),
                selector_hint(caller)
            ),
            (_, _, true) => format!(
                "no [[policy]] rule grants {operation} on the {} port to {}; add \"{operation}\" to the operations of a rule that names it",
                port.as_str(),
                describe_caller(caller)
            ),
        };
        Err(Refusal { operation, reason })
    }

    /// Decides `operation` by `caller` on `port` on the key `key` (for a create: the key to be).
    pub fn decide(
        &self,
        port: Port,
        caller: &Caller,
        operation: Operation,
        key: &KeyFacts<'_>,
    ) -> Decision {
        // Anything on the trust-pinning CA's key or certificate is its own operation on the
        // admin port, so a rule for ordinary keys never reaches it.
        let operation = if port == Port::Admin
            && key.role == "ca"
            && matches!(
                operation,
                Operation::Sign
                    | Operation::Generate
                    | Operation::Delete
                    | Operation::Import
                    | Operation::Certificates
            ) {
            Operation::Ca
        } else {
            operation
        };
        let rules: Vec<&Rule> = self.for_caller(port, caller).collect();
        if port == Port::Notary && !notary_reaches(key) && !rules.iter().any(|r| r.widens_to(key)) {
            if operation == Operation::Create {
                return Decision::Deny(Refusal {
                    operation,
                    reason: format!(
                        "the Notary port makes only {} keys (what notary-server manages), not {:?}; make root, targets and delegation keys with `signerd root new` or `signerd key generate` on the admin socket",
                        NOTARY_ROLES.join(" and "),
                        key.role
                    ),
                });
            }
            return Decision::Hidden;
        }
        if port == Port::Notary && !rules.iter().any(|r| r.domain_ok(key.domain)) {
            return Decision::Hidden;
        }
        match rules
            .iter()
            .find(|r| r.operations.contains(&operation) && r.key_ok(key))
        {
            Some(rule) => Decision::Allow(rule.name.clone()),
            None => Decision::Deny(Refusal {
                operation,
                reason: format!(
                    "no [[policy]] rule grants {operation} on {} keys of role {:?} in {:?} to {} on the {} port",
                    key.domain,
                    key.role,
                    key.gun,
                    describe_caller(caller),
                    port.as_str()
                ),
            }),
        }
    }
}

/// Whether the Notary port reaches a key without a rule that opens it: Notary-domain and
/// legacy keys of the roles notary-server manages.
fn notary_reaches(key: &KeyFacts<'_>) -> bool {
    matches!(key.domain, KeyDomain::Notary | KeyDomain::Legacy) && NOTARY_ROLES.contains(&key.role)
}

fn describe_caller(caller: &Caller) -> String {
    match caller {
        Caller::Certificate(c) => {
            format!("'{}' (sha256:{})", c.subject, hex::encode(c.fingerprint))
        }
        other => other.to_string(),
    }
}

fn selector_hint(caller: &Caller) -> String {
    match caller {
        Caller::Certificate(c) => format!("subjects = [\"{}\"]", c.subject),
        Caller::Local { uid, .. } => format!("uids = [{uid}]"),
        Caller::Unknown => "a certificate or uid selector".into(),
    }
}

/// The policy in force, swapped whole on reload: a request reads one snapshot and keeps it.
#[derive(Clone, Debug, Default)]
pub struct PolicyHandle {
    current: Arc<RwLock<Arc<Policy>>>,
}

impl PolicyHandle {
    /// Starts with `policy`.
    pub fn new(policy: Policy) -> PolicyHandle {
        PolicyHandle {
            current: Arc::new(RwLock::new(Arc::new(policy))),
        }
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        // A poisoned lock still holds a whole policy: a writer only ever swaps the Arc.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts `policy` in force for every request that starts from now on.
    pub fn replace(&self, policy: Policy) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }
}

/// Refuses calls no rule grants the operation of, before they reach the service; puts the
/// policy snapshot into the request for the key store.
#[derive(Clone, Debug)]
pub struct PolicyLayer {
    port: Port,
    policy: PolicyHandle,
}

impl PolicyLayer {
    /// Enforces `policy` on `port`.
    pub fn new(port: Port, policy: PolicyHandle) -> PolicyLayer {
        PolicyLayer { port, policy }
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = Enforce<S>;

    fn layer(&self, inner: S) -> Enforce<S> {
        Enforce {
            inner,
            port: self.port,
            policy: self.policy.clone(),
        }
    }
}

/// The service [`PolicyLayer`] makes.
#[derive(Clone, Debug)]
pub struct Enforce<S> {
    inner: S,
    port: Port,
    policy: PolicyHandle,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

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

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let caller = Caller::from_extensions(request.extensions());
        let policy = self.policy.current();
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        let refusal = match Operation::of_method(self.port, method) {
            Some(operation) => policy
                .may_call(self.port, &caller, operation)
                .err()
                .map(|r| r.to_string()),
            // Health answers everybody with a verified certificate; any other method no rule
            // can name is refused, so a new RPC is never open by omission.
            None if request.uri().path().starts_with("/grpc.health.v1.Health/") => None,
            None => Some(format!(
                "{method} is not an operation signerd's policy knows; no rule can grant it"
            )),
        };
        if let Some(refusal) = refusal {
            OpFacts::of_extensions(request.extensions()).deny(None);
            let response = tonic::Status::permission_denied(refusal).into_http();
            return Box::pin(std::future::ready(Ok(response)));
        }
        request.extensions_mut().insert(policy);
        Box::pin(self.inner.call(request))
    }
}

impl<S: NamedService> NamedService for Enforce<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests;
