//! The Go notary-signer with its memory store: the reference every signerd test is checked
//! against, and the benchmark baseline.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use super::{SignerEndpoint, BIND_ATTEMPTS, NOTARY_SIGNER_BIN};
use crate::pki::TestPki;
use crate::process::{free_port, ChildGuard};

/// How long notary-signer gets to listen after start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Go notary-signer (memory store, mTLS from a [`TestPki`]), stopped on drop.
///
/// The memory store needs no passphrase alias (only SQL/RethinkDB stores read
/// `NOTARY_SIGNER_<ALIAS>`), and it loses every key when the process stops.
#[derive(Debug)]
pub struct GoSigner {
    process: ChildGuard,
    endpoint: SignerEndpoint,
    dir: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl GoSigner {
    /// Writes `<dir>/notary-signer.json` (gRPC on `127.0.0.1:<free port>`, the PKI's server
    /// certificate, clients required to chain to the PKI's CA, memory store) and starts
    /// notary-signer, waiting until its port accepts connections.
    pub fn start(dir: &Path, pki: &TestPki) -> io::Result<Self> {
        Self::start_with_storage(dir, pki, json!({ "backend": "memory" }), &[])
    }

    /// Like [`Self::start`] with another `storage` section (e.g. `postgres` with `db_url` and
    /// `default_alias`) and extra environment (the `NOTARY_SIGNER_<ALIAS>` passphrases).
    pub fn start_with_storage(
        dir: &Path,
        pki: &TestPki,
        storage: serde_json::Value,
        env: &[(String, String)],
    ) -> io::Result<Self> {
        let config = dir.join("notary-signer.json");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let document = json!({
                "server": {
                    "grpc_addr": format!("127.0.0.1:{port}"),
                    "tls_cert_file": pki.server.cert,
                    "tls_key_file": pki.server.key,
                    "client_ca_file": pki.ca.cert_path(),
                },
                "storage": storage,
                "logging": { "level": "info" },
            });
            std::fs::write(&config, serde_json::to_vec_pretty(&document)?)?;
            let process = spawn(dir, &config, env)?;
            let mut signer = Self {
                process,
                endpoint: pki.signer_endpoint(port),
                dir: dir.to_owned(),
                config: config.clone(),
                env: env.to_vec(),
            };
            match signer.wait_listening() {
                Ok(()) => return Ok(signer),
                Err(e)
                    if attempt < BIND_ATTEMPTS
                        && signer.process.logs().contains("address already in use") =>
                {
                    eprintln!("notary-signer: port {port} was taken, retrying: {e}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the signer's port accepts connections.
    fn wait_listening(&mut self) -> io::Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.endpoint.port));
        self.process.wait_for_port(addr, START_TIMEOUT)
    }

    /// How notary-server reaches this signer.
    pub fn endpoint(&self) -> &SignerEndpoint {
        &self.endpoint
    }

    /// The config file notary-signer was started with.
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// Stops the signer (SIGTERM, then SIGKILL) and starts it again on the same port and
    /// config. The memory store starts empty: keys made before are gone.
    pub fn restart(&mut self) -> io::Result<()> {
        self.process.stop()?;
        self.process = spawn(&self.dir, &self.config, &self.env)?;
        self.wait_listening()
    }

    /// The signer process (logs, stop, kill).
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.process
    }

    /// Everything notary-signer has logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }
}

/// Starts notary-signer with `config`, logging into `dir`.
fn spawn(dir: &Path, config: &Path, env: &[(String, String)]) -> io::Result<ChildGuard> {
    let mut command = Command::new(NOTARY_SIGNER_BIN);
    command.arg("-config").arg(config);
    // notary-signer reads NOTARY_SIGNER_* overrides from the environment: start clean.
    command
        .env_clear()
        .env("HOME", dir)
        .envs(env.iter().cloned());
    ChildGuard::spawn("notary-signer", command, dir)
}
