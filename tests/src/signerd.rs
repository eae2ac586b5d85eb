//! signerd as the tests run it: a SoftHSM token of the test's own, and the `signerd` binary
//! started on it with mutual TLS from a [`TestPki`], stopped (by PID) when dropped.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use signerd_proto::health::health_client::HealthClient;
use signerd_proto::notary::key_management_client::KeyManagementClient;
use signerd_proto::notary::signer_client::SignerClient;
use signerd_token::softhsm::SoftHsmDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use crate::artifacts::signerd_bin;
use crate::notary::SignerEndpoint;
use crate::pki::{IssuedCert, TestPki};
use crate::process::{free_port, ChildGuard};

/// The user PIN of test tokens.
pub const TEST_PIN: &str = "246810";
/// The security officer PIN of test tokens.
pub const TEST_SO_PIN: &str = "135791";
/// The label of test tokens.
pub const TEST_TOKEN_LABEL: &str = "signerd-test";

/// How many ports signerd is started on when the chosen one was taken in the meantime.
const BIND_ATTEMPTS: usize = 3;

/// How long signerd gets to listen after start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The log level the tests run signerd at: the default (`info`) with the per-operation
/// `signerd::keyop` lines on.
pub const KEYOP_LOG_LEVEL: &str = "info,signerd::keyop=debug";

/// A SoftHSM token in a folder of the test's own.
#[derive(Debug, Clone)]
pub struct TestToken {
    /// The SoftHSM configuration.
    pub softhsm: SoftHsmDir,
    /// The file holding the user PIN.
    pub pin_file: PathBuf,
    /// The token URI (module path and PIN file included).
    pub uri: String,
    /// Environment signerd needs to reach the token (e.g. `P11_KIT_SERVER_ADDRESS` for a remote
    /// token through `p11-kit-client.so`); empty for a local SoftHSM token.
    pub env: Vec<(String, String)>,
}

impl TestToken {
    /// Makes a token labelled [`TEST_TOKEN_LABEL`] under `dir`.
    pub fn create(dir: &Path) -> io::Result<TestToken> {
        let softhsm = SoftHsmDir::create(&dir.join("softhsm")).map_err(io::Error::other)?;
        softhsm
            .init_token(TEST_TOKEN_LABEL, TEST_PIN, TEST_SO_PIN)
            .map_err(io::Error::other)?;
        let pin_file = dir.join("token-pin");
        std::fs::write(&pin_file, TEST_PIN)?;
        let uri = softhsm.uri(TEST_TOKEN_LABEL, &pin_file);
        Ok(TestToken {
            softhsm,
            pin_file,
            uri,
            env: Vec::new(),
        })
    }
}

/// A running signerd, stopped on drop.
#[derive(Debug)]
pub struct Signerd {
    process: Option<ChildGuard>,
    name: String,
    log_dir: PathBuf,
    command: Vec<String>,
    softhsm_conf: PathBuf,
    token_env: Vec<(String, String)>,
    addr: SocketAddr,
    endpoint: SignerEndpoint,
    client: IssuedCert,
    ca: PathBuf,
}

impl Signerd {
    /// Starts signerd on `token` with the PKI's server certificate, trusting its CA for clients.
    pub fn start(dir: &Path, name: &str, token: &TestToken, pki: &TestPki) -> io::Result<Signerd> {
        Self::start_with(dir, name, token, pki, &[])
    }

    /// Like [`Signerd::start`], with extra command-line arguments.
    pub fn start_with(
        dir: &Path,
        name: &str,
        token: &TestToken,
        pki: &TestPki,
        extra: &[&str],
    ) -> io::Result<Signerd> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Another test may take the free port before signerd binds it: try a new one.
            let mut signerd = Self::configure(dir, name, token, pki, free_port()?, extra);
            match signerd.launch() {
                Ok(()) => return Ok(signerd),
                Err(e) if attempt < BIND_ATTEMPTS && e.to_string().contains("cannot listen on") => {
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts signerd on `127.0.0.1:port` (e.g. the port of the signer it replaces, so
    /// notary-server reconnects to it at the same address).
    pub fn start_on_port(
        dir: &Path,
        name: &str,
        token: &TestToken,
        pki: &TestPki,
        port: u16,
    ) -> io::Result<Signerd> {
        let mut signerd = Self::configure(dir, name, token, pki, port, &[]);
        signerd.launch()?;
        Ok(signerd)
    }

    fn configure(
        dir: &Path,
        name: &str,
        token: &TestToken,
        pki: &TestPki,
        port: u16,
        extra: &[&str],
    ) -> Signerd {
        let path = |p: &Path| p.display().to_string();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = vec![
            "serve".to_string(),
            "--listen".into(),
            addr.to_string(),
            "--tls-cert".into(),
            path(&pki.server.cert),
            "--tls-key".into(),
            path(&pki.server.key),
            "--client-ca".into(),
            path(pki.ca.cert_path()),
            "--token".into(),
            token.uri.clone(),
            "--dev-dir".into(),
            path(&dir.join(format!("{name}-unused-dev-dir"))),
        ];
        command.extend(extra.iter().map(|s| s.to_string()));
        Signerd {
            process: None,
            name: name.to_owned(),
            log_dir: dir.to_owned(),
            command,
            softhsm_conf: token.softhsm.conf(),
            token_env: token.env.clone(),
            addr,
            endpoint: pki.signer_endpoint(port),
            client: pki.client.clone(),
            ca: pki.ca.cert_path().to_owned(),
        }
    }

    fn launch(&mut self) -> io::Result<()> {
        let mut command = Command::new(signerd_bin());
        command
            .args(&self.command)
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            // The tests read each key operation's log line (DEBUG since the audit trail is the
            // record): on, unless a test sets its own level.
            .env("SIGNERD_LOG_LEVEL", KEYOP_LOG_LEVEL)
            .envs(self.token_env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG");
        let mut process = ChildGuard::spawn(&self.name, command, &self.log_dir)?;
        process.wait_for_port(self.addr, START_TIMEOUT)?;
        self.process = Some(process);
        Ok(())
    }

    /// Stops signerd (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(&mut self) -> io::Result<std::process::ExitStatus> {
        match self.process.as_mut() {
            Some(p) => p.stop(),
            None => Err(io::Error::other("signerd is not running")),
        }
    }

    /// Stops signerd and starts it again on the same address and token.
    pub fn restart(&mut self) -> io::Result<()> {
        if let Some(mut p) = self.process.take() {
            p.stop()?;
        }
        self.launch()
    }

    /// The running process.
    pub fn process(&mut self) -> &mut ChildGuard {
        self.process.as_mut().expect("signerd is running")
    }

    /// Everything signerd logged so far.
    pub fn logs(&self) -> String {
        self.process
            .as_ref()
            .map(ChildGuard::logs)
            .unwrap_or_default()
    }

    /// How notary-server reaches this signerd.
    pub fn endpoint(&self) -> &SignerEndpoint {
        &self.endpoint
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A gRPC channel with notary-server's client certificate.
    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        self.channel_as(Some(&self.client), &self.ca).await
    }

    /// A gRPC channel presenting `client` (or no certificate), trusting `ca` for the server.
    pub async fn channel_as(
        &self,
        client: Option<&IssuedCert>,
        ca: &Path,
    ) -> Result<Channel, tonic::transport::Error> {
        self.endpoint_as(client, ca)?.connect().await
    }

    /// The endpoint [`Self::channel`] connects to, for a client that connects on a runtime of
    /// its own (a channel's connection task runs on the runtime that connected it).
    pub fn grpc_endpoint(&self) -> Result<Endpoint, tonic::transport::Error> {
        self.endpoint_as(Some(&self.client), &self.ca)
    }

    /// The endpoint of [`Self::channel_as`].
    pub fn endpoint_as(
        &self,
        client: Option<&IssuedCert>,
        ca: &Path,
    ) -> Result<Endpoint, tonic::transport::Error> {
        let ca_pem = std::fs::read(ca).expect("CA file readable");
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name("localhost");
        if let Some(c) = client {
            let cert = std::fs::read(&c.cert).expect("client cert readable");
            let key = std::fs::read(&c.key).expect("client key readable");
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Ok(Channel::from_shared(format!("https://{}", self.addr))
            .expect("valid URI")
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30)))
    }

    /// Clients for the three services over one channel.
    pub async fn clients(&self) -> Clients {
        let channel = self.channel().await.expect("mTLS connection to signerd");
        Clients {
            keys: KeyManagementClient::new(channel.clone()),
            signer: SignerClient::new(channel.clone()),
            health: HealthClient::new(channel),
        }
    }
}

/// gRPC clients of one signerd.
#[derive(Debug, Clone)]
pub struct Clients {
    /// `proto.KeyManagement`.
    pub keys: KeyManagementClient<Channel>,
    /// `proto.Signer`.
    pub signer: SignerClient<Channel>,
    /// `grpc.health.v1.Health`.
    pub health: HealthClient<Channel>,
}
