//! Who is calling, on either port: the peer's uid, gid and supplementary groups on the Unix
//! socket (SO_PEERCRED, read by tokio when the connection is accepted, and the process's
//! `/proc/<pid>/status`), or the verified client certificate on the mTLS port (subject, SANs,
//! SHA-256 fingerprint, issuer, decoded with x509-cert once per connection, in
//! [`crate::tls::accept_loop`]).
//!
//! [`IdentityLayer`] puts an `Arc<Caller>` into each request's extensions; the policy and audit
//! layers and the key store read it from there.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

/// The identity of a caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A process on the admin socket.
    Local {
        /// Its uid.
        uid: u32,
        /// Its primary gid.
        gid: u32,
        /// Its supplementary groups (from `/proc/<pid>/status`; empty when unreadable).
        groups: Vec<u32>,
        /// Its process ID, when the kernel gave one.
        pid: Option<i32>,
    },
    /// A client on the mTLS port, by its verified leaf certificate.
    Certificate(CertIdentity),
    /// A connection signerd could not identify (refused by every policy).
    Unknown,
}

/// What identifies a verified client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertIdentity {
    /// The subject, RFC 4514 form.
    pub subject: String,
    /// DNS names, URIs and email addresses of the subjectAltName extension.
    pub sans: Vec<String>,
    /// SHA-256 of the certificate's DER.
    pub fingerprint: [u8; 32],
    /// The issuer's name, RFC 4514 form (the CA that issued it).
    pub issuer: String,
}

impl CertIdentity {
    /// Decodes a leaf certificate's DER; `None` when it does not parse.
    pub fn decode(der_bytes: &[u8]) -> Option<CertIdentity> {
        use der::Decode as _;
        use x509_cert::ext::pkix::name::GeneralName;
        use x509_cert::ext::pkix::SubjectAltName;
        let cert = x509_cert::Certificate::from_der(der_bytes).ok()?;
        let tbs = &cert.tbs_certificate;
        let mut sans = Vec::new();
        if let Ok(Some((_, san))) = tbs.get::<SubjectAltName>() {
            for name in san.0 {
                match name {
                    GeneralName::DnsName(n) => sans.push(n.to_string()),
                    GeneralName::UniformResourceIdentifier(u) => sans.push(u.to_string()),
                    GeneralName::Rfc822Name(e) => sans.push(e.to_string()),
                    _ => {}
                }
            }
        }
        Some(CertIdentity {
            subject: tbs.subject.to_string(),
            sans,
            fingerprint: Sha256::digest(der_bytes).into(),
            issuer: tbs.issuer.to_string(),
        })
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Local { uid, gid, pid, .. } => {
                write!(f, "uid={uid} gid={gid}")?;
                if let Some(pid) = pid {
                    write!(f, " pid={pid}")?;
                }
                Ok(())
            }
            Caller::Certificate(cert) => f.write_str(&cert.subject),
            Caller::Unknown => f.write_str("unidentified peer"),
        }
    }
}

impl Caller {
    /// The caller of a request, from the connection information tonic attached to it.
    pub fn of(extensions: &http::Extensions) -> Caller {
        if let Some(peer) = extensions.get::<PeerInfo>() {
            return Caller::clone(&peer.caller);
        }
        if let Some(uds) = extensions.get::<UdsConnectInfo>() {
            return match &uds.peer_cred {
                Some(cred) => Caller::Local {
                    uid: cred.uid(),
                    gid: cred.gid(),
                    groups: cred.pid().map(supplementary_groups).unwrap_or_default(),
                    pid: cred.pid(),
                },
                None => Caller::Unknown,
            };
        }
        if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
            if let Some(leaf) = tls.peer_certs().and_then(|certs| certs.first().cloned()) {
                return CertIdentity::decode(leaf.as_ref())
                    .map(Caller::Certificate)
                    .unwrap_or(Caller::Unknown);
            }
        }
        Caller::Unknown
    }

    /// The caller a request's identity layer found; unknown when there was none.
    pub fn from_extensions(extensions: &http::Extensions) -> Arc<Caller> {
        extensions
            .get::<Arc<Caller>>()
            .cloned()
            .unwrap_or_else(|| Arc::new(Caller::Unknown))
    }
}

/// The supplementary groups of process `pid`, from the `Groups:` line of its status file.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|text| parse_groups(&text))
        .unwrap_or_default()
}

fn parse_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Adds the `Arc<Caller>` to every request.
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
        // On the mTLS port the caller was decoded once, when the connection was accepted.
        let caller = match request.extensions().get::<PeerInfo>() {
            Some(peer) => Arc::clone(&peer.caller),
            None => Arc::new(Caller::of(request.extensions())),
        };
        request.extensions_mut().insert(caller);
        self.inner.call(request)
    }
}

impl<S: NamedService> NamedService for Identify<S> {
    const NAME: &'static str = S::NAME;
}

/// Who is at the other end of one connection, decoded once when it is accepted.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The client, by its verified certificate.
    pub caller: Arc<Caller>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_display_what_identifies_them() {
        let local = Caller::Local {
            uid: 1000,
            gid: 100,
            groups: vec![],
            pid: Some(42),
        };
        assert_eq!(local.to_string(), "uid=1000 gid=100 pid=42");
        assert_eq!(Caller::of(&http::Extensions::new()), Caller::Unknown);
        assert_eq!(
            *Caller::from_extensions(&http::Extensions::new()),
            Caller::Unknown
        );
    }

    #[test]
    fn groups_come_from_the_status_file() {
        let status = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 27 1000 \nVmRSS:\t1 kB\n";
        assert_eq!(parse_groups(status), vec![4, 27, 1000]);
        assert_eq!(parse_groups("Groups:\n"), Vec::<u32>::new());
        assert_eq!(parse_groups("nothing"), Vec::<u32>::new());
    }
}
