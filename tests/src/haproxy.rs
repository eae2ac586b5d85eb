//! HAProxy in front of signerd replicas, started from the shipped `config/haproxy.cfg` with its
//! server lines replaced by the test's replicas, on loopback, stopped by PID on drop.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::notary::SignerEndpoint;
use crate::pki::TestPki;
use crate::process::{free_port, ChildGuard};

/// The haproxy binary (Debian package `haproxy`).
pub const HAPROXY_BIN: &str = "/usr/sbin/haproxy";

/// The backend the shipped configuration balances over.
pub const BACKEND: &str = "signerd_replicas";

/// How many ports HAProxy is started on when the chosen one was taken in the meantime.
const BIND_ATTEMPTS: usize = 3;

/// How long HAProxy gets to listen after start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The shipped configuration, `config/haproxy.cfg` at the workspace root.
pub fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config")
        .join("haproxy.cfg")
}

/// `template` (the shipped configuration) with its `server` lines replaced by one per replica,
/// named `signerd-1`, `signerd-2`, ... in order. The backend must be the last section, as it is
/// in the shipped file; `scripts/replicas.sh` does the same with sed.
pub fn with_replicas(template: &str, replicas: &[SocketAddr]) -> String {
    let mut config: String = template
        .lines()
        .filter(|line| !line.trim_start().starts_with("server "))
        .map(|line| format!("{line}\n"))
        .collect();
    for (i, addr) in replicas.iter().enumerate() {
        config.push_str(&format!("    server signerd-{} {addr}\n", i + 1));
    }
    config
}

/// One row of HAProxy's `show stat` for a backend server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStat {
    /// The server's name (`signerd-1`, ...).
    pub name: String,
    /// `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/2` (coming up), `no check`, ...
    pub status: String,
    /// Connections open to it now.
    pub current_sessions: u64,
    /// Connections it has taken since start.
    pub total_sessions: u64,
}

/// A running HAProxy with the shipped configuration, stopped on drop.
#[derive(Debug)]
pub struct Haproxy {
    process: ChildGuard,
    addr: SocketAddr,
    stats: PathBuf,
    config: PathBuf,
}

impl Haproxy {
    /// Starts HAProxy in `dir` on `127.0.0.1:<free port>`, balancing over `replicas`, which serve
    /// `pki`'s server certificate; its health checks present a client certificate of `pki`'s CA.
    pub fn start(dir: &Path, replicas: &[SocketAddr], pki: &TestPki) -> io::Result<Self> {
        let check = pki.ca.issue_client("haproxy-check")?;
        let check_pem = dir.join("haproxy-check.pem");
        let mut pem = std::fs::read(&check.cert)?;
        pem.extend(std::fs::read(&check.key)?);
        std::fs::write(&check_pem, pem)?;
        let template = std::fs::read_to_string(shipped_config())?;
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, with_replicas(&template, replicas))?;
        let stats = dir.join("haproxy-stats.sock");

        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let mut command = Command::new(HAPROXY_BIN);
            command
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .env("SIGNERD_LB_LISTEN", addr.to_string())
                .env("SIGNERD_LB_STATS", &stats)
                .env("SIGNERD_CHECK_CA", pki.ca.cert_path())
                .env("SIGNERD_CHECK_CERT", &check_pem);
            let mut process = ChildGuard::spawn("haproxy", command, dir)?;
            match process.wait_for_port(addr, START_TIMEOUT) {
                Ok(()) => {
                    let haproxy = Self {
                        process,
                        addr,
                        stats,
                        config,
                    };
                    // The frontend may listen before the stats socket exists.
                    haproxy.servers_within(START_TIMEOUT)?;
                    return Ok(haproxy);
                }
                Err(e) if attempt < BIND_ATTEMPTS && process.logs().contains("cannot bind") => {
                    eprintln!("haproxy: {addr} was taken, retrying: {e}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The frontend address notary-server connects to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How notary-server reaches the replicas through HAProxy (same PKI as the replicas).
    pub fn endpoint(&self, pki: &TestPki) -> SignerEndpoint {
        pki.signer_endpoint(self.addr.port())
    }

    /// The configuration HAProxy runs with.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The HAProxy process.
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.process
    }

    /// Sends one command to the stats socket and returns the answer.
    pub fn command(&self, line: &str) -> io::Result<String> {
        let mut stream = UnixStream::connect(&self.stats).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("HAProxy stats socket {}: {e}", self.stats.display()),
            )
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// The backend's servers as HAProxy sees them now.
    pub fn servers(&self) -> io::Result<Vec<ServerStat>> {
        let csv = self.command("show stat")?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .ok_or_else(|| io::Error::other(format!("no header in show stat:\n{csv}")))?
            .split(',')
            .collect();
        let column = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .ok_or_else(|| io::Error::other(format!("no {name} column in show stat")))
        };
        let (px, sv, status, scur, stot) = (
            column("pxname")?,
            column("svname")?,
            column("status")?,
            column("scur")?,
            column("stot")?,
        );
        let mut servers = Vec::new();
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.get(px) != Some(&BACKEND)
                || matches!(fields.get(sv), Some(&"BACKEND") | Some(&"FRONTEND") | None)
            {
                continue;
            }
            let number = |i: usize| fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
            servers.push(ServerStat {
                name: fields[sv].to_owned(),
                status: fields.get(status).copied().unwrap_or_default().to_owned(),
                current_sessions: number(scur),
                total_sessions: number(stot),
            });
        }
        Ok(servers)
    }

    /// [`Self::servers`], retried until the stats socket answers or `timeout` passes.
    fn servers_within(&self, timeout: Duration) -> io::Result<Vec<ServerStat>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.servers() {
                Ok(servers) => return Ok(servers),
                Err(e) if Instant::now() >= deadline => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{e}\n{}", self.process.log_tail(20)),
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Waits until server `name` has status `status` (`UP`, `DOWN`), failing with the last
    /// stats and HAProxy's log tail after `timeout`.
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let servers = self.servers()?;
            if servers.iter().any(|s| s.name == name && s.status == status) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{name} not {status} within {timeout:?}: {servers:?}\n{}",
                        self.process.log_tail(20)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
