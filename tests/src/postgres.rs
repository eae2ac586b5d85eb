//! A throwaway PostgreSQL cluster for a test: `initdb` in the test's folder, the server on a free
//! loopback port, run as an unprivileged user (PostgreSQL refuses root), stopped by PID on drop.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{free_port, output_with_timeout, ChildGuard};

/// The uid/gid the cluster runs as (`nobody`): it owns only the cluster's folder.
const UNPRIVILEGED: u32 = 65534;
/// The database superuser `initdb` makes (trust authentication on loopback only).
pub const SUPERUSER: &str = "signer";
/// How long the server gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one psql call may take.
const PSQL_TIMEOUT: Duration = Duration::from_secs(30);

/// A running PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    process: ChildGuard,
    port: u16,
    bin: PathBuf,
    dir: PathBuf,
}

impl Postgres {
    /// Makes a cluster under `dir/pgdata` and starts it on `127.0.0.1:<free port>`.
    pub fn start(dir: &Path) -> io::Result<Postgres> {
        let bin = bin_dir()?;
        let data = dir.join("pgdata");
        let sockets = dir.join("pgsock");
        for d in [&data, &sockets] {
            std::fs::create_dir_all(d)?;
            std::os::unix::fs::chown(d, Some(UNPRIVILEGED), Some(UNPRIVILEGED))?;
        }
        let mut initdb = unprivileged(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        let out = output_with_timeout(initdb, None, &dir.join("initdb"), START_TIMEOUT)?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let port = free_port()?;
        let mut server = unprivileged(&bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&sockets)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"]);
        let mut process = ChildGuard::spawn("postgres", server, dir)?;
        process.wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), START_TIMEOUT)?;
        Ok(Postgres {
            process,
            port,
            bin,
            dir: dir.to_owned(),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `postgres://` URL for `database`, as notary-signer's `storage.db_url` takes it.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Runs `sql` in `database` with psql (stops at the first error) and returns its output.
    pub fn psql(&self, database: &str, sql: &str) -> io::Result<String> {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
            ])
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql]);
        let out = output_with_timeout(command, None, &self.dir.join("psql"), PSQL_TIMEOUT)?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "psql {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The server process (logs, stop).
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.process
    }
}

/// `command` run as [`UNPRIVILEGED`], with nothing of ours in its environment.
fn unprivileged(program: &Path) -> Command {
    let id = UNPRIVILEGED.to_string();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid", &id, "--regid", &id, "--clear-groups", "--"])
        .arg(program);
    command.env_clear().env("LANG", "C.UTF-8");
    command
}

/// Debian's PostgreSQL server binaries (`/usr/lib/postgresql/<version>/bin`), newest first.
fn bin_dir() -> io::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            io::Error::other(format!(
                "PostgreSQL is not installed (apt-get install postgresql): {e}"
            ))
        })?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        io::Error::other("no /usr/lib/postgresql/*/bin/postgres (apt-get install postgresql)")
    })
}
