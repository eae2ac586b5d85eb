//! The audit layer: one [`AuditRecord`] per call on either port, allowed, refused, failed or
//! cancelled, handed to the [`AuditSink`] and awaited before the reply leaves. A sink that
//! cannot take the record turns the reply into UNAVAILABLE (fail closed).
//!
//! The service fills what it learns of the key (ID, GUN, role, algorithm, SHA-256 of the
//! content, the rule that allowed it) into the request's [`OpFacts`], an extension this layer
//! inserts, so nothing is threaded by hand. A call whose client goes away before the answer is
//! recorded as cancelled when its future is dropped. The layer also counts calls in flight, so
//! shutdown waits for exactly those.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};
use signerd_token::ratelog::{self, RateLog};
use signerd_token::{KeyId, KeyInfo};
use tonic::server::NamedService;
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;

use super::identity::CallerName;
use super::inflight::{InFlight, InFlightGuard};
use super::operation::Operation;
use super::record::{AuditRecord, AuditSink, AuditUnavailable, KeyRef, Outcome, Port};

/// What the service learned of a call's key, filled while it runs. Key IDs stay 32 bytes and
/// algorithm names static until a record is written.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// TUF key ID or object reference.
    pub key_id: Option<KeyRef>,
    /// Repository.
    pub gun: Option<String>,
    /// Role.
    pub role: Option<String>,
    /// Algorithm, or the admin mechanism.
    pub algorithm: Option<Cow<'static, str>>,
    /// SHA-256 of the content signed.
    pub content_sha256: Option<[u8; 32]>,
    /// The rule that allowed or refused the call.
    pub rule: Option<String>,
    /// A policy refused the call.
    pub denied: bool,
}

/// The request extension through which the service tells the audit layer about the key.
/// Cheap to clone; the lock is held only to copy a field in or out, never across an await.
#[derive(Clone, Debug, Default)]
pub struct OpFacts(Arc<Mutex<Facts>>);

impl OpFacts {
    /// The facts of the request these extensions belong to (a detached set when the audit
    /// layer is not in front, as in unit tests).
    pub fn of_extensions(extensions: &http::Extensions) -> OpFacts {
        extensions.get::<OpFacts>().cloned().unwrap_or_default()
    }

    /// The facts of a tonic request.
    pub fn of<T>(request: &tonic::Request<T>) -> OpFacts {
        OpFacts::of_extensions(request.extensions())
    }

    fn with(&self, f: impl FnOnce(&mut Facts)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The facts, taken out for the one record written from them.
    fn take(&self) -> Facts {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The key the call names (as the caller wrote it, shortened).
    pub fn key_id(&self, id: &str) {
        let id = KeyRef::text(id);
        self.with(|f| f.key_id = Some(id));
    }

    /// The key the call names, by its ID (no text made until a record is written).
    pub fn id(&self, id: KeyId) {
        self.with(|f| f.key_id = Some(KeyRef::Id(id)));
    }

    /// Repository and role (from the request or the key found).
    pub fn usage(&self, gun: &str, role: &str) {
        self.with(|f| {
            set_text(&mut f.gun, gun);
            set_text(&mut f.role, role);
        });
    }

    /// The algorithm or mechanism (copied: the caller may have named anything).
    pub fn algorithm(&self, algorithm: &str) {
        self.with(|f| f.algorithm = Some(Cow::Owned(algorithm.to_owned())));
    }

    /// Everything known of a key.
    pub fn key(&self, key: &KeyInfo) {
        self.with(|f| {
            f.key_id = Some(KeyRef::Id(key.id));
            set_text(&mut f.gun, &key.usage.gun);
            set_text(&mut f.role, &key.usage.role);
            f.algorithm = Some(Cow::Borrowed(key.algorithm.as_str()));
        });
    }

    /// The content signed, recorded by its SHA-256 only.
    pub fn content(&self, content: &[u8]) {
        let digest: [u8; 32] = Sha256::digest(content).into();
        self.with(|f| f.content_sha256 = Some(digest));
    }

    /// The rule that allowed the call.
    pub fn rule(&self, rule: &str) {
        self.with(|f| set_text(&mut f.rule, rule));
    }

    /// A policy refused the call (by `rule`, when one decided).
    pub fn deny(&self, rule: Option<&str>) {
        self.with(|f| {
            f.denied = true;
            f.rule = rule.map(str::to_owned);
        });
    }
}

/// Sets `slot` to `text`, reusing what it holds when it is the same (the request's GUN and the
/// key's are, for every key operation).
fn set_text(slot: &mut Option<String>, text: &str) {
    match slot {
        Some(s) if s == text => {}
        _ => *slot = Some(text.to_owned()),
    }
}

/// The static name of a method signerd serves (the last segment of its path), so a record
/// copies no text for it; any other path's text as it came.
fn method_name(path: &str) -> Cow<'static, str> {
    let name = path.rsplit('/').next().unwrap_or_default();
    Operation::METHODS
        .iter()
        .find(|m| **m == name)
        .map_or_else(|| Cow::Owned(name.to_owned()), |m| Cow::Borrowed(*m))
}

/// The default sink until an audit file is configured: the operational log line under the
/// `signerd::keyop` target (never a PIN, key bytes or content). The operational log says what
/// an operator must act on, so a call that went well, or failed for a reason its caller must
/// fix (NOT_FOUND, INVALID_ARGUMENT, ...), is a DEBUG line (`log.level =
/// "info,signerd::keyop=debug"` shows them; the per-operation record is the audit trail's). A
/// refused, cancelled or server-side failed call is a WARN line, at most one per outcome per
/// 10 s, with the count of those left out: a fault storm or a client hammering a key out of
/// its reach does not write a line per request. With the DEBUG lines on, every line is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSink;

/// The kind a WARN line is limited by: its outcome.
fn outcome_kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Denied => "PermissionDenied",
        Outcome::Cancelled => "cancelled",
        Outcome::Failed(code) => match code.as_str() {
            "Internal" => "Internal",
            "Unavailable" => "Unavailable",
            "FailedPrecondition" => "FailedPrecondition",
            "PermissionDenied" => "PermissionDenied",
            _ => "failed",
        },
    }
}

/// The WARN lines' limiter, shared by every call.
static KEYOP_WARNINGS: std::sync::LazyLock<RateLog> =
    std::sync::LazyLock::new(|| RateLog::new(ratelog::INTERVAL));

impl AuditSink for LogSink {
    fn record(
        &self,
        r: AuditRecord,
    ) -> Pin<Box<dyn Future<Output = Result<(), AuditUnavailable>> + Send + 'static>> {
        // Most calls go well: when their line is off, nothing below is made for them.
        let warn = match &r.outcome {
            Outcome::Ok => false,
            Outcome::Denied | Outcome::Cancelled => true,
            Outcome::Failed(code) => matches!(
                code.as_str(),
                "Internal" | "Unavailable" | "FailedPrecondition" | "PermissionDenied"
            ),
        };
        // With the per-operation lines on (DEBUG), every line is written, warnings included.
        let every = tracing::enabled!(target: "signerd::keyop", tracing::Level::DEBUG);
        let suppressed = if warn && !every {
            match KEYOP_WARNINGS.admit(outcome_kind(&r.outcome), std::time::Instant::now()) {
                Some(left_out) => left_out,
                None => return Box::pin(std::future::ready(Ok(()))),
            }
        } else {
            if !warn && !every {
                return Box::pin(std::future::ready(Ok(())));
            }
            0
        };
        // Microsecond resolution is plenty, and keeps the lines short.
        let duration_ms = r.duration_us as f64 / 1000.0;
        let method = &*r.method;
        let port = r.port.as_str();
        let client = &*r.identity;
        // Hex on the stack: no text is made for the key ID or the digest first.
        let mut id_hex = [0u8; 64];
        let key_id = r.key_id.as_ref().map_or("", |k| k.as_str(&mut id_hex));
        let gun = r.gun.as_deref().unwrap_or_default();
        let role = r.role.as_deref().unwrap_or_default();
        // The admin API's lines have always called the mechanism `detail`.
        let detail = r.algorithm.as_deref();
        let rule = r.rule.as_deref();
        let mut hex = [0u8; 64];
        let content_sha256 = r.content_sha256.and_then(|d| {
            hex::encode_to_slice(d, &mut hex).ok()?;
            std::str::from_utf8(&hex).ok()
        });
        let outcome = match &r.outcome {
            Outcome::Denied => "PermissionDenied",
            other => other.as_str(),
        };
        let error = r.error.as_deref();
        if warn {
            tracing::warn!(target: "signerd::keyop", method, port, key_id, gun, role, client, detail, rule, outcome, duration_ms, error, suppressed)
        } else if error.is_none() {
            tracing::debug!(target: "signerd::keyop", method, port, key_id, gun, role, client, detail, content_sha256, rule, outcome, duration_ms)
        } else {
            tracing::debug!(target: "signerd::keyop", method, port, key_id, gun, role, client, detail, rule, outcome, duration_ms, error)
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Records every call on `port` in `sink`, counting it in `in_flight` while it runs.
#[derive(Clone)]
pub struct AuditLayer {
    port: Port,
    sink: Arc<dyn AuditSink>,
    in_flight: InFlight,
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl AuditLayer {
    /// The audit layer for `port`.
    pub fn new(port: Port, sink: Arc<dyn AuditSink>, in_flight: InFlight) -> AuditLayer {
        AuditLayer {
            port,
            sink,
            in_flight,
        }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audited<S>;

    fn layer(&self, inner: S) -> Audited<S> {
        Audited {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuditLayer`] makes.
#[derive(Clone)]
pub struct Audited<S> {
    inner: S,
    layer: AuditLayer,
}

impl<S> std::fmt::Debug for Audited<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.layer.fmt(f)
    }
}

/// A call being audited; dropped before [`Pending::finish`] (client gone, deadline passed, the
/// server aborted it), it records the call as cancelled on a spawned task.
struct Pending {
    port: Port,
    sink: Arc<dyn AuditSink>,
    time: SystemTime,
    started: Instant,
    identity: Arc<str>,
    method: Cow<'static, str>,
    facts: OpFacts,
    done: bool,
    _in_flight: InFlightGuard,
}

impl Pending {
    /// The call's one record: the facts are moved into it, not copied.
    fn record(&mut self, outcome: Outcome, error: Option<String>) -> AuditRecord {
        let f = self.facts.take();
        let outcome = match outcome {
            Outcome::Failed(code) if f.denied && code == "PermissionDenied" => Outcome::Denied,
            other => other,
        };
        AuditRecord {
            time: self.time,
            port: self.port,
            identity: Arc::clone(&self.identity),
            method: std::mem::take(&mut self.method),
            key_id: f.key_id,
            gun: f.gun,
            role: f.role,
            algorithm: f.algorithm,
            content_sha256: f.content_sha256,
            outcome,
            rule: f.rule,
            duration_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            error,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let record = self.record(
            Outcome::Cancelled,
            Some("the client went away or the deadline passed before the answer".into()),
        );
        let sink = Arc::clone(&self.sink);
        // Drop runs inside the runtime (tonic drops the handler future there); without one
        // there is nowhere to write from, and the process is going away.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = sink.record(record).await {
                    tracing::error!(error = %e, "a cancelled call could not be audited");
                }
            });
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<tonic::body::Body>> for Audited<S>
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
        // Health is probed every few seconds by notary-server: not a key operation.
        if request.uri().path().starts_with("/grpc.health.") {
            return Box::pin(self.inner.call(request));
        }
        // Fail closed before any key is touched: while the trail cannot be written, a call is
        // refused rather than run and then answered UNAVAILABLE.
        let method = method_name(request.uri().path());
        if let Err(reason) = self.layer.sink.health() {
            let refused = AuditUnavailable { reason };
            tracing::error!(method = &*method, error = %refused, "refusing a key operation: the audit trail cannot be written");
            return Box::pin(std::future::ready(Ok(tonic::Status::unavailable(
                refused.to_string(),
            )
            .into_http())));
        }
        let facts = OpFacts::default();
        request.extensions_mut().insert(facts.clone());
        let mut pending = Pending {
            port: self.layer.port,
            sink: Arc::clone(&self.layer.sink),
            time: SystemTime::now(),
            started: Instant::now(),
            identity: CallerName::from_extensions(request.extensions()).shared(),
            method,
            facts,
            done: false,
            _in_flight: self.layer.in_flight.enter(),
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            let (outcome, error) = match tonic::Status::from_header_map(response.headers()) {
                Some(s) if s.code() != Code::Ok => (
                    Outcome::Failed(format!("{:?}", s.code())),
                    Some(s.message().to_owned()),
                ),
                // A unary OK carries its status in the trailers, after the body.
                _ => (Outcome::Ok, None),
            };
            let record = pending.record(outcome, error);
            pending.done = true;
            match pending.sink.record(record).await {
                Ok(()) => Ok(response),
                Err(e) => {
                    tracing::error!(error = %e, "refusing the answer: it could not be audited");
                    Ok(tonic::Status::unavailable(e.to_string()).into_http())
                }
            }
        })
    }
}

impl<S: NamedService> NamedService for Audited<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::identity::Caller;
    use std::sync::Mutex as StdMutex;

    /// A sink that keeps records in memory, or refuses them.
    #[derive(Default)]
    struct Memory {
        records: StdMutex<Vec<AuditRecord>>,
        broken: bool,
    }

    impl AuditSink for Arc<Memory> {
        fn record(
            &self,
            record: AuditRecord,
        ) -> Pin<Box<dyn Future<Output = Result<(), AuditUnavailable>> + Send + 'static>> {
            let result = if self.broken {
                Err(AuditUnavailable {
                    reason: "disk full".into(),
                })
            } else {
                self.records.lock().unwrap().push(record);
                Ok(())
            };
            Box::pin(std::future::ready(result))
        }
    }

    /// An inner service that fills the facts, then answers `status` (after `wait`).
    #[derive(Clone)]
    struct Handler {
        status: Code,
        wait: Option<Arc<tokio::sync::Notify>>,
    }

    impl Service<http::Request<tonic::body::Body>> for Handler {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            let facts = OpFacts::of_extensions(request.extensions());
            facts.key_id("abc");
            facts.usage("example.com/app", "timestamp");
            facts.content(b"payload");
            facts.rule("builtin:notary-server");
            let status = self.status;
            let wait = self.wait.clone();
            Box::pin(async move {
                if let Some(w) = wait {
                    w.notified().await;
                }
                Ok(if status == Code::Ok {
                    http::Response::new(tonic::body::Body::empty())
                } else {
                    tonic::Status::new(status, "key not found").into_http()
                })
            })
        }
    }

    fn request() -> http::Request<tonic::body::Body> {
        let mut r = http::Request::builder()
            .uri("/proto.Signer/Sign")
            .body(tonic::body::Body::empty())
            .unwrap();
        r.extensions_mut().insert(Arc::new(Caller::Unknown));
        r
    }

    fn stack(memory: &Arc<Memory>, handler: Handler) -> (Audited<Handler>, InFlight) {
        let in_flight = InFlight::default();
        let layer = AuditLayer::new(
            Port::Notary,
            Arc::new(Arc::clone(memory)),
            in_flight.clone(),
        );
        (layer.layer(handler), in_flight)
    }

    #[tokio::test]
    async fn every_outcome_is_recorded_with_the_facts() {
        let memory = Arc::new(Memory::default());
        for status in [Code::Ok, Code::NotFound] {
            let (mut svc, in_flight) = stack(&memory, Handler { status, wait: None });
            svc.call(request()).await.unwrap();
            assert_eq!(in_flight.count(), 0);
        }
        let records = memory.records.lock().unwrap();
        assert_eq!(records[0].outcome, Outcome::Ok);
        assert_eq!(records[0].method, "Sign");
        assert_eq!(records[0].gun.as_deref(), Some("example.com/app"));
        assert_eq!(records[0].rule.as_deref(), Some("builtin:notary-server"));
        assert_eq!(
            records[0].content_sha256,
            Some(Sha256::digest(b"payload").into())
        );
        assert_eq!(records[1].outcome, Outcome::Failed("NotFound".into()));
        assert_eq!(records[1].error.as_deref(), Some("key not found"));
    }

    #[tokio::test]
    async fn a_cancelled_call_is_recorded() {
        let memory = Arc::new(Memory::default());
        let gate = Arc::new(tokio::sync::Notify::new());
        let (mut svc, in_flight) = stack(
            &memory,
            Handler {
                status: Code::Ok,
                wait: Some(gate),
            },
        );
        let call = svc.call(request());
        // Start it, then drop it unanswered as hyper does when the client resets the stream.
        let mut call = Box::pin(call);
        assert!(futures_poll_once(&mut call).await.is_none());
        assert_eq!(in_flight.count(), 1);
        drop(call);
        assert_eq!(in_flight.count(), 0);
        for _ in 0..100 {
            if !memory.records.lock().unwrap().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let records = memory.records.lock().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].outcome, Outcome::Cancelled);
        assert_eq!(records[0].key_id, Some(KeyRef::text("abc")));
    }

    #[tokio::test]
    async fn a_sink_that_fails_turns_the_answer_unavailable() {
        let memory = Arc::new(Memory {
            broken: true,
            ..Memory::default()
        });
        let (mut svc, _) = stack(
            &memory,
            Handler {
                status: Code::Ok,
                wait: None,
            },
        );
        let response = svc.call(request()).await.unwrap();
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("disk full"), "{status:?}");
    }

    #[tokio::test]
    async fn records_share_the_connection_name_and_keep_key_ids_as_bytes() {
        let memory = Arc::new(Memory::default());
        let (mut svc, _) = stack(
            &memory,
            Handler {
                status: Code::Ok,
                wait: None,
            },
        );
        let name = CallerName::of(&Caller::Unknown);
        let id: KeyId = "a".repeat(64).parse().unwrap();
        for _ in 0..2 {
            let mut r = request();
            r.extensions_mut().insert(name.clone());
            svc.call(r).await.unwrap();
        }
        let facts = OpFacts::default();
        facts.id(id);
        facts.id(id);
        assert_eq!(facts.take().key_id, Some(KeyRef::Id(id)));
        let records = memory.records.lock().unwrap();
        for r in records.iter() {
            // The one name made for the connection, not a copy per call.
            assert!(Arc::ptr_eq(&r.identity, &name.shared()));
            assert!(matches!(r.method, Cow::Borrowed("Sign")));
        }
        assert_eq!(KeyRef::Id(id).to_string(), id.to_string());
        assert_eq!(method_name("/x.Y/Unheard"), "Unheard");
        assert!(matches!(method_name("/x.Y/Unheard"), Cow::Owned(_)));
    }

    #[test]
    fn key_text_is_shortened_and_gun_copies_are_reused() {
        let facts = OpFacts::default();
        facts.key_id(&"k".repeat(500));
        facts.usage("example.com/app", "timestamp");
        let gun_before = facts.0.lock().unwrap().gun.as_ref().unwrap().as_ptr();
        facts.usage("example.com/app", "timestamp");
        let f = facts.take();
        assert_eq!(f.gun.as_ref().unwrap().as_ptr(), gun_before);
        assert_eq!(f.key_id.unwrap().to_string().len(), 80);
        assert!(facts.take().key_id.is_none(), "taken once");
    }

    async fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| match Pin::new(&mut *f).poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    /// A log writer into memory, for reading back the lines a sink writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<StdMutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn caller_text_cannot_forge_a_human_log_line() {
        let out = Lines::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        let forged = "x\n2026-01-01T00:00:00Z  INFO signerd::keyop: method=\"Sign\" outcome=\"ok\"";
        tracing::subscriber::with_default(subscriber, || {
            let record = AuditRecord {
                time: std::time::SystemTime::now(),
                port: Port::Notary,
                identity: "CN=a\r\nb".into(),
                method: "CreateKey".into(),
                key_id: None,
                gun: Some(forged.into()),
                role: Some("r\u{1b}[2K".into()),
                algorithm: Some(forged.into()),
                content_sha256: None,
                outcome: Outcome::Failed("InvalidArgument".into()),
                rule: None,
                duration_us: 1,
                error: Some(format!("algorithm '{forged}' is not supported")),
            };
            drop(LogSink.record(record));
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "one record, one line: {text}");
        assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text}");
        assert!(
            text.contains(r#"x\n2026-01-01"#),
            "escaped, not dropped: {text}"
        );
    }

    /// A record of `outcome`, as a Sign on the Notary port makes it.
    fn sign_record(outcome: Outcome) -> AuditRecord {
        AuditRecord {
            time: std::time::SystemTime::now(),
            port: Port::Notary,
            identity: "CN=notary-server".into(),
            method: "Sign".into(),
            key_id: None,
            gun: Some("example.com/app".into()),
            role: Some("timestamp".into()),
            algorithm: Some("ecdsa".into()),
            content_sha256: None,
            error: match outcome {
                Outcome::Ok => None,
                _ => Some("the token went away".into()),
            },
            outcome,
            rule: None,
            duration_us: 1,
        }
    }

    /// The lines `records` make under the log filter `level`.
    fn lines_at(level: &str, records: impl FnOnce()) -> String {
        let out = Lines::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, records);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text
    }

    // Without an audit file the log is no per-operation record: at the default level a call
    // that went well writes nothing, and a storm of failed calls one line with a count.
    #[test]
    fn at_the_default_level_key_operations_write_no_line_and_faults_one_per_interval() {
        let text = lines_at("info", || {
            for _ in 0..1000 {
                drop(LogSink.record(sign_record(Outcome::Ok)));
            }
            for _ in 0..1000 {
                drop(LogSink.record(sign_record(Outcome::Failed("Unavailable".into()))));
            }
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("WARN") && text.contains("outcome=\"Unavailable\""),
            "{text}"
        );

        let on = lines_at("info,signerd::keyop=debug", || {
            drop(LogSink.record(sign_record(Outcome::Ok)));
        });
        assert_eq!(on.lines().count(), 1, "{on}");
        assert!(
            on.contains("DEBUG") && on.contains("outcome=\"ok\""),
            "{on}"
        );
    }
}
