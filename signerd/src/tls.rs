//! Mutual TLS for the gRPC endpoint: files checked up front with rustls so a mistake is
//! reported by name at startup (and by `check-config`), not as a failed handshake later.
//!
//! Clients must present a certificate that chains to the client CA (and, when it has an
//! extended key usage, one that includes clientAuth, as the Go signer requires); TLS 1.2 and
//! 1.3 only; ALPN `h2`.
//!
//! signerd accepts TLS itself ([`accept_loop`]): `TCP_NODELAY` on every socket, a handshake
//! timeout, and the client certificate decoded once per connection into the connection's
//! [`PeerInfo`], which tonic hands to every request on it (not decoded per request).

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::config::TlsFiles;
use crate::edge::identity::{Caller, CertIdentity, PeerInfo};

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Loaded and checked TLS material: the rustls server configuration.
pub struct TlsMaterial {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial { .. }")
    }
}

/// Reads the TLS files and checks that they make a working mutual-TLS server.
pub fn load(files: &TlsFiles) -> Result<TlsMaterial, String> {
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
    Ok(TlsMaterial {
        config: Arc::new(config),
    })
}

impl TlsMaterial {
    /// The rustls server configuration: client certificates required, ALPN `h2`.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.config)
    }
}

/// An accepted mutual-TLS connection and who is on it.
#[derive(Debug)]
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
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
/// within [`HANDSHAKE_TIMEOUT`] (each on its own task, so a slow client delays nobody), the
/// client decoded once, then the connection handed to the server through `tx`.
pub async fn accept_loop(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    tx: tokio::sync::mpsc::Sender<Result<PeerStream, std::io::Error>>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
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
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%remote, error = %e, "cannot set TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let tx = tx.clone();
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
                    let info = PeerInfo {
                        remote,
                        caller: Arc::new(caller),
                    };
                    let _ = tx.send(Ok(PeerStream { inner: tls, info })).await;
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
