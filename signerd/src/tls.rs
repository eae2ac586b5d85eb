//! Mutual TLS for the gRPC endpoint: files checked up front with rustls so a mistake is
//! reported by name at startup (and by `check-config`), not as a failed handshake later.
//!
//! Clients must present a certificate that chains to the client CA (and, when it has an
//! extended key usage, one that includes clientAuth, as the Go signer requires); TLS 1.2 and
//! 1.3 only; ALPN `h2`.
//!
//! signerd accepts TLS itself ([`accept_loop`]): `TCP_NODELAY` on every socket, a handshake
//! timeout, and the client certificate decoded once per connection into the connection's
//! [`PeerInfo`], which tonic hands to every request on it (not decoded per request); while one
//! client is active its writes are coalesced ([`crate::coalesce`]; on a runtime of one thread
//! the connection's task writes them together itself, [`crate::h2::Streams`]), so the answers
//! ready together leave together.
//!
//! Connections are capped ([`ConnectionCap`], total and per peer address, counted from accept
//! to close, handshake included) so a flood cannot take the descriptors the token needs; one
//! over the cap is closed at once. A connection silent for the idle timeout (no TLS record,
//! no HTTP/2 preface, no answer to keepalive pings) is closed.
//!
//! The certificate, its key and the client CA are reloaded on SIGHUP ([`TlsMaterial::reload`]):
//! the files are read and checked as at startup, and the new configuration is what the next
//! handshake uses; connections already open keep theirs (a TLS session is not renegotiated),
//! so nothing is dropped. Files that do not make a working server leave the old material in
//! force.

use std::collections::HashMap;
use std::future::Future as _;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::coalesce::Coalesced;
use crate::config::TlsFiles;
use crate::edge::identity::{Caller, CertIdentity, PeerInfo};
use crate::scheduling::Scheduling;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Loaded and checked TLS material: the rustls server configuration in force, and the files
/// it is read from again on [`TlsMaterial::reload`]. Clones share it.
#[derive(Clone)]
pub struct TlsMaterial {
    live: LiveConfig,
    files: TlsFiles,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The server configuration in force; each new connection takes the current one, so a reload
/// reaches every handshake after it and no connection before it.
#[derive(Clone)]
pub struct LiveConfig(Arc<RwLock<Arc<rustls::ServerConfig>>>);

impl LiveConfig {
    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        // Held only to clone an Arc; a poisoned lock still holds a whole configuration.
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn replace(&self, config: Arc<rustls::ServerConfig>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = config;
    }
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveConfig { .. }")
    }
}

/// Reads the TLS files and checks that they make a working mutual-TLS server.
pub fn load(files: &TlsFiles) -> Result<TlsMaterial, String> {
    let config = server_config(files)?;
    Ok(TlsMaterial {
        live: LiveConfig(Arc::new(RwLock::new(config))),
        files: files.clone(),
    })
}

/// The rustls server configuration `files` make, checked.
fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let read = |what: &str, path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
    };
    let cert_pem = read("server.tls_cert", &files.cert)?;
    let key_pem = read("server.tls_key", &files.key)?;
    let ca_pem = read("server.client_ca", &files.client_ca)?;

    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "server.tls_cert {}: not PEM certificates: {e}",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls_cert {} holds no certificate",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "server.tls_key {}: no PEM private key found ({e})",
            files.key.display()
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    let mut any = false;
    for ca in CertificateDer::pem_slice_iter(&ca_pem) {
        let ca = ca.map_err(|e| {
            format!(
                "server.client_ca {}: not PEM ({e})",
                files.client_ca.display()
            )
        })?;
        roots.add(ca).map_err(|e| {
            format!(
                "server.client_ca {}: not a usable CA certificate ({e})",
                files.client_ca.display()
            )
        })?;
        any = true;
    }
    if !any {
        return Err(format!(
            "server.client_ca {} holds no certificate",
            files.client_ca.display()
        ));
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("server.client_ca {}: {e}", files.client_ca.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "server.tls_key {} does not fit server.tls_cert {}: {e}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

impl TlsMaterial {
    /// The rustls server configuration in force: client certificates required, ALPN `h2`.
    pub fn server_config(&self) -> LiveConfig {
        self.live.clone()
    }

    /// Reads the files again; if they make a working server, new connections get the new
    /// certificate, key and client CA (open ones keep theirs) and the answer describes the
    /// certificate now served. Otherwise the material in force stays and `Err` says why.
    pub fn reload(&self) -> Result<String, String> {
        let config = server_config(&self.files)?;
        let leaf = std::fs::read(&self.files.cert)
            .ok()
            .and_then(|pem| CertificateDer::pem_slice_iter(&pem).next()?.ok())
            .and_then(|der| CertIdentity::decode(der.as_ref()));
        self.live.replace(config);
        Ok(match leaf {
            Some(id) => format!(
                "{} (subject {}, sha256 {})",
                self.files.cert.display(),
                id.subject,
                hex::encode(id.fingerprint)
            ),
            None => self.files.cert.display().to_string(),
        })
    }
}

/// Open connections, total and per peer address.
#[derive(Clone, Debug)]
pub struct ConnectionCap {
    state: Arc<Mutex<CapState>>,
    total_max: usize,
    per_peer_max: usize,
}

#[derive(Debug, Default)]
struct CapState {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

impl ConnectionCap {
    /// At most `total_max` connections, `per_peer_max` of them from one address.
    pub fn new(total_max: usize, per_peer_max: usize) -> ConnectionCap {
        ConnectionCap {
            state: Arc::default(),
            total_max,
            per_peer_max,
        }
    }

    /// A slot for a connection from `peer`, held until dropped; `None` when a cap is reached.
    pub fn take(&self, peer: IpAddr) -> Option<Slot> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let from_peer = state.per_peer.get(&peer).copied().unwrap_or(0);
        if state.total >= self.total_max || from_peer >= self.per_peer_max {
            return None;
        }
        state.total += 1;
        state.per_peer.insert(peer, from_peer + 1);
        Some(Slot {
            cap: self.clone(),
            peer,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

/// One open connection's place under the [`ConnectionCap`].
#[derive(Debug)]
pub struct Slot {
    cap: ConnectionCap,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.cap.state.lock().unwrap_or_else(|e| e.into_inner());
        state.total = state.total.saturating_sub(1);
        if let Some(n) = state.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                state.per_peer.remove(&self.peer);
            }
        }
    }
}

/// How connections are limited: the cap, and how long one may stay silent.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Open connections.
    pub cap: ConnectionCap,
    /// Silence after which a connection is closed.
    pub idle_timeout: Duration,
}

/// An accepted mutual-TLS connection and who is on it.
#[derive(Debug)]
pub struct PeerStream {
    /// Writes coalesced while the active clients batch ([`Coalesced`]): the answers ready in one
    /// turn of the runtime leave in one TLS write.
    inner: Coalesced<tokio_rustls::server::TlsStream<TcpStream>>,
    info: PeerInfo,
    idle_timeout: Duration,
    /// Fires once nothing has been read for `idle_timeout`.
    silence: Pin<Box<tokio::time::Sleep>>,
    _slot: Slot,
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + this.idle_timeout;
                    this.silence.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.silence.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    tracing::debug!(
                        remote = %this.info.remote,
                        "connection silent for {:?}; closed",
                        this.idle_timeout
                    );
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connection idle too long",
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections on `listener` until the receiver is gone: `TCP_NODELAY`, the handshake
/// (with the configuration in force when the connection came) within [`HANDSHAKE_TIMEOUT`] (each on its own task, so a slow client delays nobody), the
/// client decoded once, then the connection handed to the server through `tx`, its writes
/// coalesced while `scheduling` says the active clients batch. A connection over `limits.cap` is
/// closed at once.
pub async fn accept_loop(
    listener: TcpListener,
    config: LiveConfig,
    limits: ConnectionLimits,
    scheduling: Scheduling,
    tx: tokio::sync::mpsc::Sender<Result<PeerStream, std::io::Error>>,
) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a similar pressure: back off instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let Some(slot) = limits.cap.take(remote.ip()) else {
            tracing::debug!(%remote, open = limits.cap.open(), "connection cap reached; connection closed");
            drop(tcp);
            continue;
        };
        let idle_timeout = limits.idle_timeout;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%remote, error = %e, "cannot set TCP_NODELAY");
        }
        // The configuration in force now: a reload reaches the next handshake.
        let acceptor = tokio_rustls::TlsAcceptor::from(config.current());
        let tx = tx.clone();
        let scheduling = scheduling.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let caller = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(|leaf| CertIdentity::decode(leaf.as_ref()))
                        .map(Caller::Certificate)
                        .unwrap_or(Caller::Unknown);
                    let info = PeerInfo::new(remote, caller);
                    let silence = Box::pin(tokio::time::sleep(idle_timeout));
                    let stream = PeerStream {
                        inner: Coalesced::new(tls, scheduling),
                        info,
                        idle_timeout,
                        silence,
                        _slot: slot,
                    };
                    let _ = tx.send(Ok(stream)).await;
                }
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(
                    %remote,
                    "TLS handshake not done within {HANDSHAKE_TIMEOUT:?}; connection closed"
                ),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_total_and_per_peer_and_frees_on_drop() {
        let cap = ConnectionCap::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = cap.take(a).unwrap();
        let _a2 = cap.take(a).unwrap();
        assert!(cap.take(a).is_none(), "per-peer cap");
        let _b1 = cap.take(b).unwrap();
        assert!(cap.take(b).is_none(), "total cap");
        assert_eq!(cap.open(), 3);
        drop(a1);
        assert_eq!(cap.open(), 2);
        assert!(cap.take(b).is_some(), "a closed connection frees its place");
    }
}
