//! TLS material reloaded on SIGHUP (issue 11, Operations): after the certificate, key and
//! client CA files are replaced and signerd gets SIGHUP, a new connection is served the new
//! certificate and may use a client certificate of the new CA, while a connection opened
//! before keeps working on its own TLS session (no reconnect). A broken replacement leaves the
//! material in force and says why.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use signerd_proto::notary::key_management_client::KeyManagementClient;
use signerd_proto::notary::signer_client::SignerClient;
use signerd_proto::notary::{CreateKeyRequest, SignatureRequest};
use signerd_tests::signerd::{Signerd, TestToken};
use signerd_tests::{IssuedCert, TestCa, TestDir, TestPki};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Uri};

/// Fields drop in order: signerd stops before its folder goes.
struct Setup {
    signerd: Signerd,
    pki: TestPki,
    _token: TestToken,
    dir: TestDir,
}

fn setup(name: &str) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(dir.path()).unwrap();
    let signerd = Signerd::start(dir.path(), "signerd", &token, &pki).unwrap();
    Setup {
        signerd,
        pki,
        _token: token,
        dir,
    }
}

/// A connector that dials signerd and counts how often it did: a channel that never dialled
/// again kept its first connection.
#[derive(Clone)]
struct CountingConnector {
    addr: SocketAddr,
    dials: Arc<AtomicUsize>,
}

impl tonic::codegen::Service<Uri> for CountingConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        self.dials.fetch_add(1, Ordering::SeqCst);
        let addr = self.addr;
        Box::pin(async move { Ok(TokioIo::new(tokio::net::TcpStream::connect(addr).await?)) })
    }
}

/// A channel presenting `client`, trusting `ca`, over one counted connection.
async fn counted_channel(
    addr: SocketAddr,
    client: &IssuedCert,
    ca: &Path,
) -> (Channel, Arc<AtomicUsize>) {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .identity(Identity::from_pem(
            std::fs::read(&client.cert).unwrap(),
            std::fs::read(&client.key).unwrap(),
        ))
        .domain_name("localhost");
    let dials = Arc::new(AtomicUsize::new(0));
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_with_connector(CountingConnector {
            addr,
            dials: Arc::clone(&dials),
        })
        .await
        .unwrap();
    (channel, dials)
}

/// The leaf certificate signerd serves to a new connection from `client` (mutual TLS, CA
/// `ca`), or the handshake error.
fn served_leaf(addr: SocketAddr, client: &IssuedCert, ca: &Path) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&client.cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&client.key).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let mut tls =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    // TLS 1.3: the server checks the client's certificate after the client's handshake is
    // done; a refusal arrives as an alert on the first read.
    tls.writer()
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    tls.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    let leaf = tls
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or("no server certificate")?;
    tls.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    Ok(leaf)
}

fn pem_der(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Sends SIGHUP and waits for one more log line containing `line`.
fn sighup_and_wait(signerd: &mut Signerd, line: &str) {
    let already = signerd.logs().matches(line).count();
    let pid = nix::unistd::Pid::from_raw(signerd.process().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for_lines(signerd, line, already + 1);
}

/// Waits until signerd has logged `count` lines containing `line`.
fn wait_for_lines(signerd: &Signerd, line: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while signerd.logs().matches(line).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {line:?} after SIGHUP:\n{}",
            signerd.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn new_connections_get_the_new_certificate_and_open_ones_keep_working() {
    let mut s = setup("tls-reload");
    let addr = s.signerd.addr();
    let ca = s.pki.ca.cert_path().to_owned();
    let (old, dials) = counted_channel(addr, &s.pki.client, &ca).await;
    let key = KeyManagementClient::new(old.clone())
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "example.com/tls".into(),
            role: "timestamp".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .key_info
        .unwrap()
        .key_id;
    assert_eq!(
        served_leaf(addr, &s.pki.client, &ca).unwrap(),
        pem_der(&s.pki.server.cert)
    );

    // A client of another CA is refused until that CA is in the client CA file.
    let other_ca = TestCa::new(&s.dir.subdir("other").unwrap(), "other-ca").unwrap();
    let other_client = other_ca.issue_client("notary-server-client").unwrap();
    assert!(
        served_leaf(addr, &other_client, &ca).is_err(),
        "a client of an unknown CA must be refused"
    );

    // Rotate: a renewed server certificate and key, and the second CA trusted for clients.
    let renewed = s.pki.ca.issue_server("signer-renewed").unwrap();
    std::fs::copy(&renewed.cert, &s.pki.server.cert).unwrap();
    std::fs::copy(&renewed.key, &s.pki.server.key).unwrap();
    let mut bundle = std::fs::read(&ca).unwrap();
    bundle.extend(std::fs::read(other_ca.cert_path()).unwrap());
    std::fs::write(&ca, &bundle).unwrap();
    sighup_and_wait(
        &mut s.signerd,
        "SIGHUP: TLS certificate, key and client CA reloaded",
    );
    assert!(
        s.signerd.logs().contains("subject CN=signer-renewed"),
        "the log names the certificate now served:\n{}",
        s.signerd.logs()
    );

    let leaf = served_leaf(addr, &s.pki.client, &ca).unwrap();
    assert_eq!(
        leaf,
        pem_der(&renewed.cert),
        "a new connection gets the renewed certificate"
    );
    served_leaf(addr, &other_client, &ca).expect("the new client CA is trusted");

    // The connection opened before the reload still answers, on the same TLS session.
    SignerClient::new(old)
        .sign(SignatureRequest {
            key_id: key,
            content: b"after the reload".to_vec(),
        })
        .await
        .expect("the old connection keeps working");
    assert_eq!(dials.load(Ordering::SeqCst), 1, "no reconnect");

    // A replacement that does not fit (the key of another certificate) is refused; the
    // renewed material stays.
    std::fs::copy(&s.pki.client.key, &s.pki.server.key).unwrap();
    sighup_and_wait(&mut s.signerd, "SIGHUP: TLS not reloaded");
    assert_eq!(
        served_leaf(addr, &s.pki.client, &ca).unwrap(),
        pem_der(&renewed.cert)
    );
    // The same handler reloads the policy after the TLS material, failed or not.
    wait_for_lines(&s.signerd, "SIGHUP: policy reloaded", 2);
}
