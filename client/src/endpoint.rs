//! Where signerd's admin API is, and the one place a channel to it is built.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use zeroize::Zeroizing;

use crate::error::SetupError;
pub use crate::error::TlsFile;

/// How to reach signerd's admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The admin Unix socket (signerd checks the peer's uid).
    Unix(PathBuf),
    /// The admin API over mutual TLS, with an admin client certificate.
    Tls(TlsEndpoint),
}

/// Which uid must be serving an admin Unix socket before anything is sent on it: the kernel's
/// peer credentials (SO_PEERCRED) of the connection, checked on every connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SocketPeer {
    /// Any uid: signerd's own checks of the caller are all there is.
    #[default]
    Any,
    /// Root, or the owner of the socket file.
    RootOrOwner,
    /// Exactly this uid.
    Uid(u32),
}

/// The socket's server runs as a uid the client does not trust; nothing was sent.
#[derive(Debug, thiserror::Error)]
#[error("{} is served by uid {peer}, not {expected}: not the real signerd, refused before sending anything (set SIGNERD_SERVER_UID to the uid signerd runs as if this is it)", .socket.display())]
pub struct UntrustedServer {
    /// The socket.
    pub socket: PathBuf,
    /// The uid of the process serving it.
    pub peer: u32,
    /// The uids that were trusted, for the message.
    pub expected: String,
}

impl SocketPeer {
    /// Checks the peer of `stream`, connected to `socket`.
    pub fn check(&self, socket: &Path, stream: &tokio::net::UnixStream) -> std::io::Result<()> {
        let peer = stream.peer_cred()?.uid();
        let (trusted, expected) = match *self {
            SocketPeer::Any => return Ok(()),
            SocketPeer::Uid(uid) => (peer == uid, format!("uid {uid}")),
            SocketPeer::RootOrOwner => {
                let owner = std::fs::metadata(socket)?.uid();
                (
                    peer == 0 || peer == owner,
                    format!("root or the socket's owner (uid {owner})"),
                )
            }
        };
        if trusted {
            Ok(())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                UntrustedServer {
                    socket: socket.to_path_buf(),
                    peer,
                    expected,
                },
            ))
        }
    }
}

/// An mTLS admin endpoint. The files are read each time a connection is made, so a renewed
/// certificate is picked up on the next reconnect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsEndpoint {
    /// `https://host:port`.
    pub uri: String,
    /// The name signerd's certificate must carry.
    pub domain: String,
    /// Admin client certificate (PEM), listed in signerd's `admin.admin_clients`.
    pub client_cert: PathBuf,
    /// Its key (PEM).
    pub client_key: PathBuf,
    /// CA that signed signerd's certificate (PEM).
    pub ca: PathBuf,
}

impl Endpoint {
    /// The same endpoint with a relative socket path made absolute against the current
    /// directory: where the process started, not wherever it is when it first connects.
    pub fn absolute(self) -> Endpoint {
        match self {
            Endpoint::Unix(p) if p.is_relative() => {
                Endpoint::Unix(std::path::absolute(&p).unwrap_or(p))
            }
            other => other,
        }
    }

    /// Where signerd is, for messages: `unix:<path>` or the `https://` address.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix:{}", p.display()),
            Endpoint::Tls(t) => t.uri.clone(),
        }
    }

    /// The tonic endpoint for this address; nothing connects yet. A Unix socket's endpoint is
    /// only a placeholder URI: [`Endpoint::channel`] connects it with a connector that checks
    /// the peer.
    pub(crate) fn tonic(
        &self,
        connect_timeout: Duration,
    ) -> Result<tonic::transport::Endpoint, SetupError> {
        match self {
            Endpoint::Unix(path) => {
                path.to_str()
                    .ok_or_else(|| SetupError::SocketPath(path.clone()))?;
                Ok(
                    tonic::transport::Endpoint::from_static("http://signerd.admin.socket")
                        .connect_timeout(connect_timeout),
                )
            }
            Endpoint::Tls(t) => {
                let read = |file: TlsFile, path: &PathBuf| {
                    std::fs::read(path).map_err(|source| SetupError::Read {
                        file,
                        path: path.clone(),
                        source,
                    })
                };
                let ca = read(TlsFile::Ca, &t.ca)?;
                let cert = read(TlsFile::ClientCert, &t.client_cert)?;
                let key = Zeroizing::new(read(TlsFile::ClientKey, &t.client_key)?);
                let tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .identity(Identity::from_pem(cert, key.as_slice()))
                    .domain_name(t.domain.clone());
                tonic::transport::Endpoint::from_shared(t.uri.clone())
                    .map_err(|source| SetupError::Address {
                        address: t.uri.clone(),
                        source,
                    })?
                    .tls_config(tls)
                    .map_err(SetupError::Tls)
                    .map(|e| e.connect_timeout(connect_timeout))
            }
        }
    }

    /// A channel that connects on its first call (and again after a failure).
    pub(crate) fn lazy_channel(
        &self,
        connect_timeout: Duration,
        peer: SocketPeer,
    ) -> Result<Channel, SetupError> {
        let endpoint = self.tonic(connect_timeout)?;
        Ok(match self {
            Endpoint::Unix(path) => {
                endpoint.connect_with_connector_lazy(unix_connector(path, peer))
            }
            Endpoint::Tls(_) => endpoint.connect_lazy(),
        })
    }

    /// Connects now.
    pub(crate) async fn connect(
        &self,
        connect_timeout: Duration,
        peer: SocketPeer,
    ) -> Result<Result<Channel, tonic::transport::Error>, SetupError> {
        let endpoint = self.tonic(connect_timeout)?;
        Ok(match self {
            Endpoint::Unix(path) => {
                endpoint
                    .connect_with_connector(unix_connector(path, peer))
                    .await
            }
            Endpoint::Tls(_) => endpoint.connect().await,
        })
    }
}

/// Connects to the socket at `path` and checks who serves it before the channel uses it.
fn unix_connector(
    path: &Path,
    peer: SocketPeer,
) -> impl tower_service::Service<
    tonic::codegen::http::Uri,
    Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let path = path.to_path_buf();
    tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(&path).await?;
            peer.check(&path, &stream)?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sockets_are_anchored_where_the_process_started() {
        let Endpoint::Unix(p) = Endpoint::Unix(PathBuf::from(".signerd/admin.sock")).absolute()
        else {
            unreachable!("a Unix endpoint stays one")
        };
        assert_eq!(
            p,
            std::env::current_dir().unwrap().join(".signerd/admin.sock")
        );
        let absolute = Endpoint::Unix(PathBuf::from("/run/signerd/admin.sock"));
        assert_eq!(absolute.clone().absolute(), absolute);
        assert_eq!(absolute.describe(), "unix:/run/signerd/admin.sock");
    }

    #[test]
    fn unreadable_tls_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint::Tls(TlsEndpoint {
            uri: "https://localhost:1".into(),
            domain: "localhost".into(),
            client_cert: dir.path().join("client.pem"),
            client_key: dir.path().join("client-key.pem"),
            ca: dir.path().join("ca.pem"),
        });
        match endpoint.tonic(Duration::from_secs(1)).err() {
            Some(SetupError::Read { file, path, .. }) => {
                assert_eq!(file, TlsFile::Ca);
                assert_eq!(path, dir.path().join("ca.pem"));
            }
            other => panic!("expected a read error, got {other:?}"),
        }
    }
}
