//! Who is calling, on either port: the peer's uid, gid and supplementary groups on the Unix
//! socket (SO_PEERCRED, read by tokio when the connection is accepted, and the process's
//! `/proc/<pid>/status`), or the verified client certificate on the mTLS port (subject, SANs,
//! SHA-256 fingerprint, issuer, decoded with x509-cert once per connection, in
//! [`crate::tls::accept_loop`]).
//!
//! [`IdentityLayer`] puts an `Arc<Caller>` and its [`CallerName`] into each request's
//! extensions; the policy and audit layers and the key store read them from there. On the mTLS
//! port both are made once per connection ([`PeerInfo::new`]) and shared by every request on it,
//! so a request costs two reference counts, not a certificate decode and a formatted subject and
//! fingerprint. On the admin socket likewise ([`LocalPeer::of`]): the peer credentials and the
//! groups in `/proc` are read when the connection is accepted, as the kernel's SO_PEERCRED
//! itself is fixed then, not once per request.

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
            // The subject alone can be shared by several certificates (a reissued one, or
            // another CA's); the fingerprint says which one it was.
            Caller::Certificate(cert) => write!(
                f,
                "{} sha256:{}",
                cert.subject,
                hex::encode(cert.fingerprint)
            ),
            Caller::Unknown => f.write_str("unidentified peer"),
        }
    }
}

/// The text that names a caller in audit records and log lines (`uid=… gid=… pid=…`, or the
/// certificate's subject and `sha256:` fingerprint). Made once per connection on the mTLS port
/// and shared; cloning it counts a reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerName(Arc<str>);

impl CallerName {
    /// The name of `caller`.
    pub fn of(caller: &Caller) -> CallerName {
        #[cfg(test)]
        NAMES_MADE.with(|n| n.set(n.get() + 1));
        CallerName(caller.to_string().into())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, shared (for records that outlive the request).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// The name the identity layer gave a request's caller; made from its [`Caller`] (unknown
    /// when there is none) without the layer in front, as in unit tests.
    pub fn from_extensions(extensions: &http::Extensions) -> CallerName {
        match extensions.get::<CallerName>() {
            Some(name) => name.clone(),
            None => CallerName::of(&Caller::from_extensions(extensions)),
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Names made on this thread: a test counts them.
    static NAMES_MADE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl fmt::Display for CallerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Caller {
    /// The caller of a request, from the connection information tonic attached to it.
    pub fn of(extensions: &http::Extensions) -> Caller {
        if let Some(peer) = extensions.get::<PeerInfo>() {
            return Caller::clone(&peer.caller);
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
        // On the mTLS port the caller was decoded and named once, when the connection was
        // accepted.
        let extensions = request.extensions();
        let (caller, name, lane) = if let Some(peer) = extensions.get::<PeerInfo>() {
            (Arc::clone(&peer.caller), peer.name.clone(), peer.lane)
        } else if let Some(peer) = extensions.get::<LocalPeer>() {
            (Arc::clone(&peer.caller), peer.name.clone(), Lane::LOCAL)
        } else {
            let caller = Caller::of(extensions);
            let name = CallerName::of(&caller);
            (Arc::new(caller), name, Lane::LOCAL)
        };
        let extensions = request.extensions_mut();
        extensions.insert(caller);
        extensions.insert(name);
        extensions.insert(lane);
        self.inner.call(request)
    }
}

impl<S: NamedService> NamedService for Identify<S> {
    const NAME: &'static str = S::NAME;
}

/// Who is at the other end of one connection, decoded and named once when it is accepted;
/// tonic hands a clone (two reference counts) to every request on the connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The client, by its verified certificate.
    pub caller: Arc<Caller>,
    /// The client's name in records and logs.
    pub name: CallerName,
    /// The connection's lane in the token workers' queue.
    pub lane: Lane,
}

impl PeerInfo {
    /// The connection from `remote` of `caller`, named now, on a lane of its own.
    pub fn new(remote: SocketAddr, caller: Caller) -> PeerInfo {
        let name = CallerName::of(&caller);
        PeerInfo {
            remote,
            caller: Arc::new(caller),
            name,
            lane: Lane::next(),
        }
    }
}

/// The process at the other end of one admin socket connection, identified and named once when
/// the connection is accepted; every request on it gets a clone.
#[derive(Clone, Debug)]
pub struct LocalPeer {
    /// The process, by its peer credentials.
    pub caller: Arc<Caller>,
    /// Its name in records and logs.
    pub name: CallerName,
}

impl LocalPeer {
    /// The peer of an accepted admin socket connection, by its peer credentials (and its
    /// supplementary groups, read from `/proc/<pid>/status`).
    pub fn of(uds: &UdsConnectInfo) -> LocalPeer {
        let caller = match &uds.peer_cred {
            Some(cred) => Caller::Local {
                uid: cred.uid(),
                gid: cred.gid(),
                groups: cred.pid().map(supplementary_groups).unwrap_or_default(),
                pid: cred.pid(),
            },
            None => Caller::Unknown,
        };
        LocalPeer {
            name: CallerName::of(&caller),
            caller: Arc::new(caller),
        }
    }
}

/// One client connection's lane in the token workers' queue: the workers take lanes in turn,
/// so the calls of one connection wait behind each other, not behind another connection's.
/// Calls that come with no connection of their own (the admin socket) share [`Lane::LOCAL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lane(pub u64);

impl Lane {
    /// The lane of calls with no client connection of their own.
    pub const LOCAL: Lane = Lane(0);

    /// A lane no connection had before.
    fn next() -> Lane {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Lane(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
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

    /// A service that keeps the caller name each request arrived with.
    #[derive(Clone, Default)]
    struct Names(Arc<std::sync::Mutex<Vec<CallerName>>>);

    impl Service<http::Request<()>> for Names {
        type Response = ();
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<(), Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<()>) -> Self::Future {
            let name = request.extensions().get::<CallerName>().unwrap().clone();
            self.0.lock().unwrap().push(name);
            std::future::ready(Ok(()))
        }
    }

    #[test]
    fn a_connection_is_named_once_for_all_its_requests() {
        let cert = CertIdentity {
            subject: "CN=notary-server,O=example".into(),
            sans: vec![],
            fingerprint: [0xab; 32],
            issuer: "CN=ca".into(),
        };
        let made = NAMES_MADE.with(|n| n.get());
        let peer = PeerInfo::new("127.0.0.1:1".parse().unwrap(), Caller::Certificate(cert));
        let names = Names::default();
        let mut svc = IdentityLayer.layer(names.clone());
        for _ in 0..100 {
            // tonic hands each request a clone of the connection's info.
            let mut request = http::Request::new(());
            request.extensions_mut().insert(peer.clone());
            drop(svc.call(request));
        }
        assert_eq!(
            NAMES_MADE.with(|n| n.get()) - made,
            1,
            "named once, at accept"
        );
        let names = names.0.lock().unwrap();
        assert_eq!(names.len(), 100);
        assert!(names
            .iter()
            .all(|n| Arc::ptr_eq(&n.shared(), &peer.name.shared())));
        assert_eq!(
            names[0].as_str(),
            format!("CN=notary-server,O=example sha256:{}", "ab".repeat(32))
        );
    }
}
