//! notary-server with memory storage, TLS from a test CA, and a remote signer.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{BIND_ATTEMPTS, NOTARY_SERVER_BIN};
use crate::https;
use crate::pki::TestCa;
use crate::process::{free_port, ChildGuard};

/// How long notary-server gets to answer its health endpoint after start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Timeout of one HTTPS request to notary-server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What notary-server needs to reach a signer (its `trust_service` section).
#[derive(Debug, Clone)]
pub struct SignerEndpoint {
    /// Host notary-server dials and checks the signer certificate against (`127.0.0.1`).
    pub host: String,
    /// The signer's gRPC port.
    pub port: u16,
    /// CA notary-server trusts for the signer's certificate.
    pub ca_file: PathBuf,
    /// Client certificate notary-server presents to the signer.
    pub client_cert: PathBuf,
    /// Key of `client_cert`.
    pub client_key: PathBuf,
}

impl SignerEndpoint {
    /// `host:port`, as a string.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

// What a signer needs to be reached through a test PKI: here, beside the endpoint type, so the
// PKI knows nothing of notary-server.
impl crate::pki::TestPki {
    /// How notary-server reaches a signer using this PKI on `127.0.0.1:port`.
    pub fn signer_endpoint(&self, port: u16) -> SignerEndpoint {
        SignerEndpoint {
            host: "127.0.0.1".to_owned(),
            port,
            ca_file: self.ca.cert_path().to_owned(),
            client_cert: self.client.cert.clone(),
            client_key: self.client.key.clone(),
        }
    }
}

/// A running notary-server (memory storage) on `127.0.0.1:<free port>`, stopped on drop.
#[derive(Debug)]
pub struct NotaryServer {
    process: ChildGuard,
    addr: SocketAddr,
    ca_file: PathBuf,
    config: PathBuf,
    key_algorithm: String,
}

impl NotaryServer {
    /// Writes a config into `dir` (its own HTTPS CA and certificate, memory storage, remote
    /// `trust_service` at `signer` with `key_algorithm`), starts notary-server and waits until
    /// `/_notary_server/health` answers (any status).
    pub fn start(dir: &Path, signer: &SignerEndpoint, key_algorithm: &str) -> io::Result<Self> {
        let ca = TestCa::new(dir, "notary-server-ca")?;
        let tls = ca.issue_server("notary-server")?;
        let config = dir.join("notary-server.json");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let document = json!({
                "server": {
                    "http_addr": addr.to_string(),
                    "tls_cert_file": tls.cert,
                    "tls_key_file": tls.key,
                },
                "trust_service": {
                    "type": "remote",
                    "hostname": signer.host,
                    "port": signer.port.to_string(),
                    "key_algorithm": key_algorithm,
                    "tls_ca_file": signer.ca_file,
                    "tls_client_cert": signer.client_cert,
                    "tls_client_key": signer.client_key,
                },
                "storage": { "backend": "memory" },
                "logging": { "level": "debug" },
            });
            std::fs::write(&config, serde_json::to_vec_pretty(&document)?)?;

            let mut command = Command::new(NOTARY_SERVER_BIN);
            command.arg("-config").arg(&config);
            // notary-server reads NOTARY_SERVER_* overrides from the environment: start clean.
            command.env_clear().env("HOME", dir);
            let process = ChildGuard::spawn("notary-server", command, dir)?;
            let mut server = Self {
                process,
                addr,
                ca_file: ca.cert_path().to_owned(),
                config: config.clone(),
                key_algorithm: key_algorithm.to_owned(),
            };
            match server.wait_answering(START_TIMEOUT) {
                Ok(()) => return Ok(server),
                Err(e)
                    if attempt < BIND_ATTEMPTS
                        && server.logs().contains("address already in use") =>
                {
                    eprintln!("notary-server: port {port} was taken, retrying: {e}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Polls the health endpoint until it gives any HTTP answer.
    fn wait_answering(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.process.ensure_running()?;
            let last = match self.try_health_status() {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "notary-server health did not answer within {timeout:?}: {last}\n{}",
                        self.process.log_tail(40)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `https://127.0.0.1:<port>`, for the notary CLI.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The server's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate clients must trust for the server's HTTPS certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The config file notary-server was started with.
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// The `trust_service.key_algorithm` it was started with.
    pub fn key_algorithm(&self) -> &str {
        &self.key_algorithm
    }

    /// Status of `GET /_notary_server/health` (200 healthy, 503 when the signer check failed).
    ///
    /// # Panics
    /// When the server gives no HTTP answer at all; use [`Self::try_health_status`] to poll.
    pub fn health_status(&self) -> u16 {
        match self.try_health_status() {
            Ok(status) => status,
            Err(e) => panic!(
                "notary-server health endpoint gave no answer: {e}\n{}",
                self.process.log_tail(40)
            ),
        }
    }

    /// Status of `GET /_notary_server/health`, or why no HTTP answer came.
    pub fn try_health_status(&self) -> io::Result<u16> {
        self.get_status("/_notary_server/health")
    }

    /// Status of `GET <path>` on the server (e.g. `/v2/<gun>/_trust/tuf/root.json`).
    pub fn get_status(&self, path: &str) -> io::Result<u16> {
        https::get_status(self.addr, path, &self.ca_file, REQUEST_TIMEOUT)
    }

    /// Polls health until it is 200, e.g. after a signer restart: notary-server checks its
    /// signer every 10 s and reports 503 from a failed check until the next good one.
    pub fn wait_healthy(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.try_health_status();
            if matches!(last, Ok(200)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "notary-server not healthy within {timeout:?} (last: {last:?})\n{}",
                        self.process.log_tail(40)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Polls `GET /v2/<gun>/_trust/tuf/timestamp.key` until it is 200, i.e. until notary-server
    /// can reach its signer again (e.g. after a signer restart).
    ///
    /// notary-server's gRPC channel reconnects with backoff after the signer went away, and its
    /// calls fail fast meanwhile (HTTP 500), while its health endpoint is refreshed only every
    /// 10 s. For a GUN with a root, this request makes notary-server ask the signer for the
    /// timestamp key (`GetKeyInfo`); only if the signer does not know it (or the call fails)
    /// does notary-server ask for a new one (`CreateKey`), which is not published.
    pub fn wait_signer_reachable(&self, gun: &str, timeout: Duration) -> io::Result<Duration> {
        let started = Instant::now();
        let path = format!("/v2/{gun}/_trust/tuf/timestamp.key");
        loop {
            let last = self.get_status(&path);
            if matches!(last, Ok(200)) {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "GET {path} not 200 within {timeout:?} (last: {last:?})\n{}",
                        self.process.log_tail(40)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server process (logs, stop).
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.process
    }

    /// Everything notary-server has logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// The last `lines` lines of notary-server's logs, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
