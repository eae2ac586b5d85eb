//! The edge both ports share, a stack of tower layers over the services, outermost first:
//! [`metrics`] (every call counted by method and code, and timed) -> [`identity`] (who is calling: certificate or socket peer) -> [`audit`] (one record per call,
//! awaited before the reply leaves; calls in flight counted) -> [`policy`] (is the operation
//! granted at all?) -> the service, whose key store checks the key-level rules through an
//! [`Access`] once the key is known. Errors become status codes in one place, [`status`].
//!
//! The audit layer sits outside the policy layer so a refused call is recorded too.
//! `grpc/` and `admin/` depend on this module, not on each other.

pub mod admission;
pub mod audit;
pub mod error;
pub mod identity;
pub mod inflight;
pub mod limits;
pub mod metrics;
pub mod operation;
pub mod policy;
pub mod record;
pub mod status;
pub mod validate;

use std::sync::Arc;

use signerd_token::{KeyId, KeyInfo, KeyUsage, TokenError};
use tower_layer::Layer as _;

use self::admission::{Admission, AdmissionLayer, Admit};
use self::audit::{AuditLayer, Audited, OpFacts};
use self::error::KeyError;
use self::identity::{Caller, Identify, IdentityLayer, Lane};
use self::inflight::InFlight;
use self::metrics::{Metered, MetricsLayer};
use self::policy::{Decision, Enforce, KeyFacts, Operation, Policy, PolicyHandle, PolicyLayer};
use self::record::{AuditSink, Port};

/// A service with the edge's layers in front.
pub type Edged<S> = Metered<Identify<Audited<Enforce<Admit<S>>>>>;

/// The layers every port shares: what a service needs to be served.
#[derive(Clone)]
pub struct Edge {
    policy: PolicyHandle,
    sink: Arc<dyn AuditSink>,
    in_flight: InFlight,
    metrics: crate::metrics::Metrics,
    admission: Admission,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// The edge over `policy`, recording in `sink`.
    pub fn new(policy: PolicyHandle, sink: Arc<dyn AuditSink>) -> Edge {
        Edge {
            policy,
            sink,
            in_flight: InFlight::default(),
            metrics: crate::metrics::Metrics::default(),
            admission: Admission::for_workers(1),
        }
    }

    /// The same edge, admitting the Notary port's key operations through `admission`.
    pub fn with_admission(mut self, admission: Admission) -> Edge {
        self.admission = admission;
        self
    }

    /// The same edge, counting calls into `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Edge {
        self.metrics = metrics;
        self
    }

    /// Wraps `service` of `port` in metrics, identity, audit, policy and admission.
    pub fn wrap<S>(&self, port: Port, service: S) -> Edged<S> {
        let admitted = AdmissionLayer::new(port, self.admission.clone()).layer(service);
        MetricsLayer::new(port, self.metrics.clone()).layer(
            IdentityLayer.layer(
                AuditLayer::new(port, Arc::clone(&self.sink), self.in_flight.clone())
                    .layer(PolicyLayer::new(port, self.policy.clone()).layer(admitted)),
            ),
        )
    }

    /// What the admission tells how many connections are active on the Notary port.
    pub fn scheduling(&self) -> crate::scheduling::Scheduling {
        self.admission.scheduling()
    }

    /// The policy in force (swapped on reload).
    pub fn policy(&self) -> &PolicyHandle {
        &self.policy
    }

    /// Where audit records go.
    pub fn sink(&self) -> Arc<dyn AuditSink> {
        Arc::clone(&self.sink)
    }

    /// What the calls are counted into.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Key operations in flight on every port.
    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }
}

/// Who is asking, on which port, under which policy: what the key store checks a key against
/// once it knows it (as PARSEC hands the application's name to every provider call).
#[derive(Clone, Debug)]
pub struct Access {
    /// The port the call came in on.
    pub port: Port,
    /// The caller.
    pub caller: Arc<Caller>,
    /// The policy snapshot the call started under.
    pub policy: Arc<Policy>,
    /// Where the key's facts go for the audit record.
    pub facts: OpFacts,
    /// The token workers' lane the call waits in: its connection's on the Notary port.
    pub lane: u64,
}

impl Access {
    /// The access of a request that came through the edge. Without the edge's layers in front
    /// (a unit test), the caller is unknown and the empty policy refuses everything.
    pub fn of<T>(port: Port, request: &tonic::Request<T>) -> Access {
        let ext = request.extensions();
        Access {
            port,
            caller: Caller::from_extensions(ext),
            policy: ext.get::<Arc<Policy>>().cloned().unwrap_or_default(),
            facts: OpFacts::of(request),
            lane: ext.get::<Lane>().map_or(Lane::LOCAL.0, |l| l.0),
        }
    }

    /// Decides `operation` on a key described by `key`, recording the rule.
    pub fn decide(&self, operation: Operation, key: &KeyFacts<'_>) -> Decision {
        let decision = self.policy.decide(self.port, &self.caller, operation, key);
        match &decision {
            Decision::Allow(rule) => self.facts.rule(rule),
            Decision::Hidden => self
                .facts
                .rule(&format!("out of the {} port's reach", self.port.as_str())),
            Decision::Deny(_) => self.facts.deny(None),
        }
        decision
    }

    /// Allows `operation` on key `info` (found by `id`), or answers as if there were no such
    /// key (out of reach), or refuses.
    pub fn check_key(&self, operation: Operation, info: &KeyInfo) -> Result<(), KeyError> {
        self.facts.key(info);
        match self.decide(operation, &facts_of(&info.usage, Some(info.algorithm))) {
            Decision::Allow(_) => Ok(()),
            Decision::Hidden => Err(TokenError::KeyNotFound(info.id).into()),
            Decision::Deny(r) => Err(r.into()),
        }
    }

    /// Whether `operation` on key `id` reaches it (`Ok(false)`: answer as for an absent key).
    pub fn reaches(&self, operation: Operation, info: &KeyInfo) -> Result<bool, KeyError> {
        match self.check_key(operation, info) {
            Ok(()) => Ok(true),
            Err(KeyError::Token(TokenError::KeyNotFound(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks `operation` on a key of `usage` that is about to be made or touched, by the
    /// facts the request gives (an unreachable key cannot be made: refused).
    pub fn check_usage(
        &self,
        operation: Operation,
        usage: &KeyUsage,
        algorithm: Option<signerd_token::KeyAlgorithm>,
    ) -> Result<(), KeyError> {
        self.facts.usage(&usage.gun, &usage.role);
        match self.decide(operation, &facts_of(usage, algorithm)) {
            Decision::Allow(_) => Ok(()),
            Decision::Hidden => Err(error::Refusal {
                operation,
                reason: format!(
                    "keys of domain {} and role {:?} are out of the {} port's reach",
                    usage.domain,
                    usage.role,
                    self.port.as_str()
                ),
            }
            .into()),
            Decision::Deny(r) => Err(r.into()),
        }
    }

    /// The facts of a key known only by ID so far.
    pub fn key_id(&self, id: &KeyId) {
        self.facts.id(*id);
    }
}

fn facts_of(usage: &KeyUsage, algorithm: Option<signerd_token::KeyAlgorithm>) -> KeyFacts<'_> {
    KeyFacts {
        gun: &usage.gun,
        role: &usage.role,
        algorithm,
        domain: usage.domain,
    }
}
