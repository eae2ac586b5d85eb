//! The two servers under test, each started under `taskset` on the server CPU, on loopback, with
//! the throwaway PKI, logging into the benchmark's temp dir and stopped by PID when dropped.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use signerd_tests::{free_port, ChildGuard, TestPki};

/// How long a server gets to listen after start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many fresh ports a server is tried on when its port was taken in the meantime.
const BIND_ATTEMPTS: usize = 3;

/// A running server under test.
#[derive(Debug)]
pub struct Server {
    /// Its process (stopped on drop).
    pub process: ChildGuard,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// The server's PID (taskset execs it, so it is the child's own).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// `taskset -c cpus program`: the program runs only on `cpus` from its first instruction, so
/// its runtime sizes itself (tokio workers, GOMAXPROCS) to what it really gets.
pub fn pinned(cpus: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(TASKSET);
    command.arg("-c").arg(cpus).arg(program);
    command
}

/// util-linux's taskset, by absolute path so a cleared environment still finds it.
pub const TASKSET: &str = "/usr/bin/taskset";

/// Starts `command_for(port)` (a [`pinned`] command) in `dir` until it listens.
fn start(
    name: &'static str,
    log_name: &str,
    dir: &Path,
    mut command_for: impl FnMut(u16) -> io::Result<Command>,
) -> io::Result<Server> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = command_for(port)?;
        command.current_dir(dir);
        let mut process = ChildGuard::spawn(log_name, command, dir)?;
        match process.wait_for_port(addr, START_TIMEOUT) {
            Ok(()) => return Ok(Server { process, addr }),
            Err(e)
                if attempt < BIND_ATTEMPTS
                    && (process.logs().contains("address already in use")
                        || process.logs().contains("cannot listen on")) =>
            {
                eprintln!("{name}: port {port} was taken, retrying: {e}");
            }
            Err(e) => return Err(e),
        }
    }
}

/// The Go notary-signer with its memory store, configured as the tests configure it.
pub fn go_signer(dir: &Path, pki: &TestPki, binary: &Path, cpus: &str) -> io::Result<Server> {
    let config = dir.join("notary-signer.json");
    start("Go notary-signer", "notary-signer", dir, |port| {
        let document = json!({
            "server": {
                "grpc_addr": format!("127.0.0.1:{port}"),
                "tls_cert_file": pki.server.cert,
                "tls_key_file": pki.server.key,
                "client_ca_file": pki.ca.cert_path(),
            },
            "storage": { "backend": "memory" },
            "logging": { "level": "info" },
        });
        std::fs::write(&config, serde_json::to_vec_pretty(&document)?)?;
        let mut command = pinned(cpus, binary);
        command.arg("-config").arg(&config);
        // notary-signer reads NOTARY_SIGNER_* overrides from the environment: start clean.
        command.env_clear().env("HOME", dir);
        Ok(command)
    })
}

/// How signerd is started.
#[derive(Clone, Debug)]
pub struct SignerdSetup {
    /// The `signerd` binary.
    pub binary: PathBuf,
    /// The token URI (module-path and pin-source included).
    pub token_uri: String,
    /// The token's `SOFTHSM2_CONF`.
    pub softhsm_conf: PathBuf,
    /// `token.sessions`, when not signerd's default.
    pub sessions: Option<u32>,
}

/// signerd on the benchmark's token, with the same PKI as the Go signer, default logging.
pub fn signerd(dir: &Path, pki: &TestPki, setup: &SignerdSetup, cpus: &str) -> io::Result<Server> {
    let path = |p: &Path| p.display().to_string();
    start("signerd", "signerd", dir, |port| {
        let mut command = pinned(cpus, &setup.binary);
        command
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--tls-cert")
            .arg(path(&pki.server.cert))
            .arg("--tls-key")
            .arg(path(&pki.server.key))
            .arg("--client-ca")
            .arg(path(pki.ca.cert_path()))
            .arg("--token")
            .arg(&setup.token_uri)
            .arg("--admin-socket")
            .arg(path(&dir.join("signerd-admin.sock")))
            .arg("--dev-dir")
            .arg(path(&dir.join("signerd-unused-dev-dir")))
            .env("SOFTHSM2_CONF", &setup.softhsm_conf)
            .env_remove("RUST_LOG");
        if let Some(n) = setup.sessions {
            command.env("SIGNERD_TOKEN_SESSIONS", n.to_string());
        }
        Ok(command)
    })
}

/// The stack floor ([`crate::floor`]): this executable's hidden `stack-floor` command, with the
/// same PKI as the signers.
pub fn stack_floor(dir: &Path, pki: &TestPki, bench_exe: &Path, cpus: &str) -> io::Result<Server> {
    start("stack floor", "stack-floor", dir, |port| {
        let mut command = pinned(cpus, bench_exe);
        command
            .arg("stack-floor")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--tls-cert")
            .arg(&pki.server.cert)
            .arg("--tls-key")
            .arg(&pki.server.key)
            .arg("--client-ca")
            .arg(pki.ca.cert_path())
            .env_remove("RUST_LOG");
        Ok(command)
    })
}
