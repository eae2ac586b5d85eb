//! The bridge from blocking PKCS#11 calls to signerd's async gRPC admin API.
//!
//! The library owns one I/O thread running a current-thread tokio runtime. A host thread that
//! calls into the shim spawns its RPC onto that runtime and waits for the answer on a plain
//! channel: it never calls `block_on` itself, so nothing deadlocks when many host threads call
//! at once, when the host runs its own tokio runtime, or when the host calls from inside one.
//! `C_Finalize` stops the runtime and joins the thread, so after it no shim code runs (the
//! notary CLI `dlclose`s the library after every operation).
//!
//! Connection failures (signerd down or restarted) rebuild the channel and retry a few times
//! within the call's deadline; calls that change the token are retried only when the request
//! cannot have reached signerd.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};
use tokio::net::UnixStream;
use tokio::time::Instant;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint as TonicEndpoint, Identity,
};
use tonic::{Code, Status};
use zeroize::Zeroizing;

use crate::config::{Config, Endpoint};
use crate::error::Error;

/// Whether a call may be sent again after a connection failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Reads and signatures: sending twice does no harm.
    Idempotent,
    /// Calls that change the token: retried only if the connection could not be made.
    OnlyIfNotSent,
}

/// How many times one call is tried when the connection fails under it.
const ATTEMPTS: usize = 4;

/// The path of an admin RPC.
fn rpc_path(method: &'static str) -> &'static str {
    match method {
        "ListTokens" => "/signerd.admin.v1.TokenAdmin/ListTokens",
        "ListMechanisms" => "/signerd.admin.v1.TokenAdmin/ListMechanisms",
        "Login" => "/signerd.admin.v1.TokenAdmin/Login",
        "FindObjects" => "/signerd.admin.v1.TokenAdmin/FindObjects",
        "GenerateKeyPair" => "/signerd.admin.v1.TokenAdmin/GenerateKeyPair",
        "Sign" => "/signerd.admin.v1.TokenAdmin/Sign",
        "StoreCertificate" => "/signerd.admin.v1.TokenAdmin/StoreCertificate",
        "ImportPrivateKey" => "/signerd.admin.v1.TokenAdmin/ImportPrivateKey",
        "DestroyObject" => "/signerd.admin.v1.TokenAdmin/DestroyObject",
        _ => "/signerd.admin.v1.TokenAdmin/Unknown",
    }
}

// === impl Bridge ===

/// The I/O thread, its runtime and the connection to signerd.
pub struct Bridge {
    handle: tokio::runtime::Handle,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    connector: Arc<Connector>,
    timeout: Duration,
}

impl Bridge {
    /// Starts the I/O thread. Nothing connects yet: the first call does.
    pub fn start(config: &Config) -> Result<Bridge, Error> {
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("signerd-shim-io".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                // Runs every spawned RPC until C_Finalize; then the runtime drops, which
                // cancels what is left and closes the connection.
                runtime.block_on(async {
                    let _ = stop_rx.await;
                });
            })
            .map_err(|e| Error::General(format!("cannot start the I/O thread: {e}")))?;
        let handle = match handle_rx.recv() {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(Error::General(format!(
                    "cannot start the async runtime: {e}"
                )));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::General("the I/O thread died at start".into()));
            }
        };
        let endpoint = match &config.endpoint {
            // A relative socket path means relative to where the host started.
            Endpoint::Unix(p) if p.is_relative() => Endpoint::Unix(
                std::env::current_dir()
                    .map(|d| d.join(p))
                    .unwrap_or_else(|_| p.clone()),
            ),
            other => other.clone(),
        };
        Ok(Bridge {
            handle,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
            connector: Arc::new(Connector {
                endpoint,
                channel: Mutex::new(None),
            }),
            timeout: config.timeout,
        })
    }

    /// Stops the runtime and joins the I/O thread. Idempotent.
    pub fn shutdown(&self) {
        if let Ok(mut stop) = self.stop.lock() {
            if let Some(tx) = stop.take() {
                let _ = tx.send(());
            }
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }

    /// Where signerd is, for messages.
    pub fn describe(&self) -> String {
        self.connector.describe()
    }

    /// Calls admin RPC `method` with `request` and waits for the answer: the blocking entry
    /// point for PKCS#11 functions. `request` is cloned for each attempt.
    pub fn call<Req, Resp>(
        &self,
        method: &'static str,
        retry: Retry,
        request: Req,
    ) -> Result<Resp, Error>
    where
        Req: Message + Clone + 'static,
        Resp: Message + Default + 'static,
    {
        let connector = self.connector.clone();
        let timeout = self.timeout;
        self.run(async move {
            let deadline = Instant::now() + timeout;
            let mut last = String::new();
            for attempt in 0..ATTEMPTS {
                let channel = connector.channel()?;
                let sent = unary::<Req, Resp>(channel, method, request.clone());
                match tokio::time::timeout_at(deadline, sent).await {
                    Err(_) => {
                        return Err(Error::DeviceError(format!(
                            "{method}: no answer from signerd at {} within {timeout:?}",
                            connector.describe()
                        )))
                    }
                    Ok(Ok(response)) => return Ok(response),
                    Ok(Err(failure)) => {
                        let Failure { status, sent } = failure;
                        if !is_connection_failure(&status) {
                            return Err(status_error(method, status));
                        }
                        last = status.message().to_owned();
                        connector.reset();
                        if sent && retry == Retry::OnlyIfNotSent {
                            break;
                        }
                        let pause = Duration::from_millis(50 * (1 << attempt));
                        if attempt + 1 == ATTEMPTS || Instant::now() + pause >= deadline {
                            break;
                        }
                        tokio::time::sleep(pause).await;
                    }
                }
            }
            Err(Error::DeviceError(format!(
                "{method}: cannot reach signerd at {}: {last}",
                connector.describe()
            )))
        })
    }

    /// Runs `future` on the I/O thread and waits for it.
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        // The future has its own deadline; this one only guards against a stuck runtime.
        match rx.recv_timeout(self.timeout + Duration::from_secs(5)) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::DeviceError(
                "the shim's I/O thread did not answer in time".into(),
            )),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::DeviceError(
                "the shim is shutting down (C_Finalize)".into(),
            )),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// === impl Connector ===

/// Makes (and remakes) the gRPC channel to signerd.
struct Connector {
    endpoint: Endpoint,
    channel: Mutex<Option<Channel>>,
}

impl Connector {
    fn describe(&self) -> String {
        match &self.endpoint {
            Endpoint::Unix(p) => format!("unix:{}", p.display()),
            Endpoint::Tls(t) => t.uri.clone(),
        }
    }

    /// The current channel, made if needed. Runs on the I/O thread (tonic spawns its worker
    /// there).
    fn channel(&self) -> Result<Channel, Error> {
        let mut slot = self.channel.lock()?;
        if let Some(channel) = slot.as_ref() {
            return Ok(channel.clone());
        }
        let channel = match &self.endpoint {
            Endpoint::Unix(path) => unix_channel(path.clone())?,
            Endpoint::Tls(t) => {
                let read = |p: &PathBuf, what: &str| {
                    std::fs::read(p).map_err(|e| {
                        Error::DeviceError(format!("cannot read {what} {}: {e}", p.display()))
                    })
                };
                let tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(read(&t.ca, "the CA file")?))
                    .identity(Identity::from_pem(
                        read(&t.client_cert, "the client certificate")?,
                        Zeroizing::new(read(&t.client_key, "the client key")?).as_slice(),
                    ))
                    .domain_name(t.domain.clone());
                TonicEndpoint::from_shared(t.uri.clone())
                    .map_err(|e| Error::DeviceError(format!("bad address {}: {e}", t.uri)))?
                    .tls_config(tls)
                    .map_err(|e| Error::DeviceError(format!("TLS setup: {e}")))?
                    .connect_timeout(Duration::from_secs(5))
                    .connect_lazy()
            }
        };
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Forgets the channel so the next call connects afresh.
    fn reset(&self) {
        if let Ok(mut slot) = self.channel.lock() {
            *slot = None;
        }
    }
}

fn unix_channel(path: PathBuf) -> Result<Channel, Error> {
    // The URI is a placeholder: the connector below ignores it and dials the socket.
    let endpoint =
        TonicEndpoint::from_static("http://signerd.admin").connect_timeout(Duration::from_secs(5));
    Ok(endpoint.connect_with_connector_lazy(tower::service_fn(
        move |_: tonic::codegen::http::Uri| {
            let path = path.clone();
            async move {
                let stream = UnixStream::connect(&path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        },
    )))
}

/// A failed RPC, and whether the request may have reached signerd.
struct Failure {
    status: Status,
    sent: bool,
}

/// One unary admin RPC on `channel`.
async fn unary<Req, Resp>(
    channel: Channel,
    method: &'static str,
    request: Req,
) -> Result<Resp, Failure>
where
    Req: Message + 'static,
    Resp: Message + Default + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| Failure {
        status: Status::unavailable(format!("not connected: {e}")),
        sent: false,
    })?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    grpc.unary(
        tonic::Request::new(request),
        PathAndQuery::from_static(rpc_path(method)),
        codec,
    )
    .await
    .map(tonic::Response::into_inner)
    .map_err(|status| {
        // A refused or failed connect never sent the request.
        let text = format!("{status:?}").to_ascii_lowercase();
        let sent = !(text.contains("connect") || text.contains("not connected"));
        Failure { status, sent }
    })
}

/// Whether `status` says the connection failed rather than signerd answering.
fn is_connection_failure(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown | Code::Internal => {
            let text = status.message().to_ascii_lowercase();
            text.contains("transport error")
                || text.contains("connection")
                || text.contains("not ready")
                || text.contains("broken pipe")
        }
        _ => false,
    }
}

/// What an answer from signerd means for the PKCS#11 caller.
fn status_error(method: &'static str, status: Status) -> Error {
    let message = status.message().to_owned();
    match status.code() {
        Code::PermissionDenied if method == "Login" => Error::PinIncorrect,
        Code::NotFound => Error::NotFound { call: method },
        Code::AlreadyExists => Error::TemplateInconsistent(message),
        Code::Unimplemented => Error::DeviceError(format!(
            "signerd does not serve {method} (an older signerd without the admin API?): {message}"
        )),
        Code::PermissionDenied | Code::Unauthenticated => Error::Refused {
            call: method,
            message: format!("{message} (is this user allowed on signerd's admin socket?)"),
        },
        Code::InvalidArgument | Code::OutOfRange => Error::Refused {
            call: method,
            message,
        },
        Code::FailedPrecondition
        | Code::Unavailable
        | Code::ResourceExhausted
        | Code::Internal
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Aborted
        | Code::DataLoss
        | Code::Ok => Error::DeviceError(format!(
            "{method}: signerd says {:?}: {message}",
            status.code()
        )),
    }
}

// === secret-bearing requests ===

/// `LoginRequest` whose PIN is wiped when the message is dropped.
#[derive(Clone, Default)]
pub struct LoginRequest {
    /// `UserType` as its wire number.
    pub user_type: i32,
    /// The PIN, for the length of one call.
    pub pin: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user_type", &self.user_type)
            .field("pin", &"[redacted]")
            .finish()
    }
}

impl Message for LoginRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.user_type != 0 {
            encoding::int32::encode(1, &self.user_type, buf);
        }
        if !self.pin.is_empty() {
            encoding::bytes::encode(2, &*self.pin, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Sent, never received.
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        (if self.user_type != 0 {
            encoding::int32::encoded_len(1, &self.user_type)
        } else {
            0
        }) + if self.pin.is_empty() {
            0
        } else {
            encoding::bytes::encoded_len(2, &*self.pin)
        }
    }

    fn clear(&mut self) {
        *self = LoginRequest::default();
    }
}

/// `ImportPrivateKeyRequest` whose PKCS#8 bytes are wiped when the message is dropped.
#[derive(Clone, Default)]
pub struct ImportPrivateKeyRequest {
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// `CKA_LABEL`.
    pub label: String,
    /// `KeyType` as its wire number.
    pub key_type: i32,
    /// Unencrypted PKCS#8 DER.
    pub pkcs8_der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ImportPrivateKeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportPrivateKeyRequest")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("key_type", &self.key_type)
            .field("pkcs8_der", &"[redacted]")
            .finish()
    }
}

impl Message for ImportPrivateKeyRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.id.is_empty() {
            encoding::bytes::encode(1, &self.id, buf);
        }
        if !self.label.is_empty() {
            encoding::string::encode(2, &self.label, buf);
        }
        if self.key_type != 0 {
            encoding::int32::encode(3, &self.key_type, buf);
        }
        if !self.pkcs8_der.is_empty() {
            encoding::bytes::encode(4, &*self.pkcs8_der, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        let mut n = 0;
        if !self.id.is_empty() {
            n += encoding::bytes::encoded_len(1, &self.id);
        }
        if !self.label.is_empty() {
            n += encoding::string::encoded_len(2, &self.label);
        }
        if self.key_type != 0 {
            n += encoding::int32::encoded_len(3, &self.key_type);
        }
        if !self.pkcs8_der.is_empty() {
            n += encoding::bytes::encoded_len(4, &*self.pkcs8_der);
        }
        n
    }

    fn clear(&mut self) {
        *self = ImportPrivateKeyRequest::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signerd_proto::admin;

    #[test]
    fn secret_requests_encode_like_the_generated_ones() {
        let ours = LoginRequest {
            user_type: 2,
            pin: Zeroizing::new(b"0102".to_vec()),
        };
        let generated = admin::LoginRequest {
            user_type: 2,
            pin: b"0102".to_vec(),
        };
        assert_eq!(ours.encode_to_vec(), generated.encode_to_vec());
        assert!(!format!("{ours:?}").contains("0102"));

        let ours = ImportPrivateKeyRequest {
            id: vec![2],
            label: "root".into(),
            key_type: 1,
            pkcs8_der: Zeroizing::new(vec![0x30, 0x01, 0x00]),
        };
        let generated = admin::ImportPrivateKeyRequest {
            id: vec![2],
            label: "root".into(),
            key_type: 1,
            pkcs8_der: vec![0x30, 0x01, 0x00],
        };
        assert_eq!(ours.encode_to_vec(), generated.encode_to_vec());
        assert_eq!(ours.encoded_len(), generated.encoded_len());
    }

    #[test]
    fn connection_failures_are_told_apart_from_answers() {
        assert!(is_connection_failure(&Status::unavailable("x")));
        assert!(is_connection_failure(&Status::unknown(
            "Service was not ready: transport error"
        )));
        assert!(!is_connection_failure(&Status::not_found("no key")));
        assert!(matches!(
            status_error("Login", Status::permission_denied("wrong PIN")),
            Error::PinIncorrect
        ));
        assert!(matches!(
            status_error("Sign", Status::not_found("gone")),
            Error::NotFound { call: "Sign" }
        ));
    }
}
