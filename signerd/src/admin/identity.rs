//! Who is calling the admin API: the peer's uid/gid on the Unix socket (SO_PEERCRED, read by
//! tokio when the connection is accepted), or the client certificate on the mTLS port.
//!
//! [`IdentityLayer`] puts a [`Caller`] into each request's extensions; the policy layer and the
//! service read it from there.

use std::fmt;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

/// The identity of an admin API caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A process on the admin socket.
    Local {
        /// Its uid.
        uid: u32,
        /// Its primary gid (supplementary groups are not visible through SO_PEERCRED).
        gid: u32,
        /// Its process ID, when the kernel gave one.
        pid: Option<i32>,
    },
    /// A client on the mTLS port, by its verified leaf certificate.
    Certificate {
        /// The subject, RFC 4514 form.
        subject: String,
        /// SHA-256 of the certificate's DER.
        fingerprint: [u8; 32],
    },
    /// A connection signerd could not identify (refused by every policy).
    Unknown,
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Local { uid, gid, pid } => {
                write!(f, "uid={uid} gid={gid}")?;
                if let Some(pid) = pid {
                    write!(f, " pid={pid}")?;
                }
                Ok(())
            }
            Caller::Certificate {
                subject,
                fingerprint,
            } => write!(f, "{subject} (sha256:{})", hex::encode(fingerprint)),
            Caller::Unknown => f.write_str("unidentified peer"),
        }
    }
}

impl Caller {
    /// The caller of a request, from the connection information tonic attached to it.
    pub fn of(extensions: &http::Extensions) -> Caller {
        if let Some(uds) = extensions.get::<UdsConnectInfo>() {
            return match &uds.peer_cred {
                Some(cred) => Caller::Local {
                    uid: cred.uid(),
                    gid: cred.gid(),
                    pid: cred.pid(),
                },
                None => Caller::Unknown,
            };
        }
        if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
            if let Some(leaf) = tls.peer_certs().and_then(|certs| certs.first().cloned()) {
                return Caller::Certificate {
                    subject: crate::tls::subject_of(&leaf),
                    fingerprint: Sha256::digest(leaf.as_ref()).into(),
                };
            }
        }
        Caller::Unknown
    }
}

/// Adds the [`Caller`] to every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityLayer;

impl<S> Layer<S> for IdentityLayer {
    type Service = Identify<S>;

    fn layer(&self, inner: S) -> Identify<S> {
        Identify { inner }
    }
}

/// The service [`IdentityLayer`] makes.
#[derive(Clone, Debug)]
pub struct Identify<S> {
    inner: S,
}

// === impl Identify ===

impl<S, B> Service<http::Request<B>> for Identify<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let caller = Caller::of(request.extensions());
        request.extensions_mut().insert(caller);
        self.inner.call(request)
    }
}

impl<S: NamedService> NamedService for Identify<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_display_what_identifies_them() {
        let local = Caller::Local {
            uid: 1000,
            gid: 100,
            pid: Some(42),
        };
        assert_eq!(local.to_string(), "uid=1000 gid=100 pid=42");
        let cert = Caller::Certificate {
            subject: "CN=ops".into(),
            fingerprint: [0xab; 32],
        };
        assert!(cert.to_string().starts_with("CN=ops (sha256:abab"));
        assert_eq!(Caller::of(&http::Extensions::new()), Caller::Unknown);
    }
}
