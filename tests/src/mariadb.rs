//! A throwaway MariaDB server for a test: `mariadb-install-db` in the test's folder, `mariadbd`
//! on a free loopback port, run as an unprivileged user with no option files read, a database
//! and a password user made by its init file, stopped by PID on drop. With a certificate it
//! serves TLS and the user must use it (`REQUIRE SSL`).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{free_port, output_with_timeout, ChildGuard};

/// The uid/gid the server runs as (`nobody`): it owns only the server's folders.
const UNPRIVILEGED: u32 = 65534;
/// The account notary-signer and the migration use (password authentication, loopback only).
pub const USER: &str = "signer";
/// Its password: with a space and an '@', as a DSN must carry them.
pub const PASSWORD: &str = "s3cret p@ss";
/// How long installing and starting the server may take.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one client call may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A running MariaDB server.
#[derive(Debug)]
pub struct MariaDb {
    process: ChildGuard,
    port: u16,
    dir: PathBuf,
    tls: bool,
}

impl MariaDb {
    /// Makes a data folder under `dir/data` and starts the server on `127.0.0.1:<free port>`,
    /// with `database` and [`USER`] (all rights on it) made at start.
    pub fn start(dir: &Path, database: &str) -> io::Result<MariaDb> {
        Self::start_inner(dir, database, None)
    }

    /// Like [`Self::start`], serving TLS with `cert` and `key` (PEM), and [`USER`] allowed to
    /// connect only over TLS.
    pub fn start_tls(dir: &Path, database: &str, cert: &Path, key: &Path) -> io::Result<MariaDb> {
        Self::start_inner(dir, database, Some((cert, key)))
    }

    fn start_inner(dir: &Path, database: &str, tls: Option<(&Path, &Path)>) -> io::Result<MariaDb> {
        let data = dir.join("data");
        let run = dir.join("run");
        let tmp = dir.join("tmp");
        for d in [&data, &run, &tmp] {
            std::fs::create_dir_all(d)?;
            std::os::unix::fs::chown(d, Some(UNPRIVILEGED), Some(UNPRIVILEGED))?;
        }
        let mut install = unprivileged("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]);
        let out = output_with_timeout(install, None, &dir.join("install"), START_TIMEOUT)?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "mariadb-install-db failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let init = dir.join("init.sql");
        std::fs::write(
            &init,
            format!(
                "CREATE DATABASE IF NOT EXISTS `{database}`;\n\
                 CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'{};\n\
                 GRANT ALL ON `{database}`.* TO '{USER}'@'127.0.0.1';\n",
                if tls.is_some() { " REQUIRE SSL" } else { "" }
            ),
        )?;
        std::os::unix::fs::chown(&init, Some(UNPRIVILEGED), Some(UNPRIVILEGED))?;
        let port = free_port()?;
        let mut server = unprivileged("mariadbd");
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", run.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", run.join("mysqld.pid").display()))
            .arg(format!("--init-file={}", init.display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--innodb-flush-log-at-trx-commit=0",
            ]);
        if let Some((cert, key)) = tls {
            // Copies the server (running as nobody) can read.
            for (from, name, flag) in [
                (cert, "server.pem", "--ssl-cert"),
                (key, "server.key", "--ssl-key"),
            ] {
                let to = run.join(name);
                std::fs::copy(from, &to)?;
                std::os::unix::fs::chown(&to, Some(UNPRIVILEGED), Some(UNPRIVILEGED))?;
                server.arg(format!("{flag}={}", to.display()));
            }
        }
        let mut process = ChildGuard::spawn("mariadbd", server, dir)?;
        process.wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), START_TIMEOUT)?;
        Ok(MariaDb {
            process,
            port,
            dir: dir.to_owned(),
            tls: tls.is_some(),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A go-sql-driver DSN for `database`, as notary-signer's `storage.db_url` takes it, with
    /// `params` (e.g. `tls=skip-verify`) after `parseTime=True`.
    pub fn dsn(&self, database: &str, params: &str) -> String {
        let params = if params.is_empty() {
            String::new()
        } else {
            format!("&{params}")
        };
        format!(
            "{USER}:{PASSWORD}@tcp(127.0.0.1:{})/{database}?parseTime=True{params}",
            self.port
        )
    }

    /// Runs `sql` in `database` as [`USER`] with the `mariadb` client (stops at the first error)
    /// and returns its tab-separated output without column names.
    pub fn sql(&self, database: &str, sql: &str) -> io::Result<String> {
        let mut command = Command::new("mariadb");
        command
            .arg("--no-defaults")
            .args(["-h", "127.0.0.1", "-P", &self.port.to_string(), "-u", USER])
            // The password in the environment, not on the command line every `ps` shows.
            .env("MYSQL_PWD", PASSWORD)
            .args(if self.tls { &["--ssl"][..] } else { &[][..] })
            .args(["-N", "-B", "-D", database, "-e", sql]);
        let out = output_with_timeout(command, None, &self.dir.join("client"), CLIENT_TIMEOUT)?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "mariadb {sql:?}: {}",
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

/// `program` run as [`UNPRIVILEGED`], with nothing of ours in its environment.
fn unprivileged(program: &str) -> Command {
    let id = UNPRIVILEGED.to_string();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid", &id, "--regid", &id, "--clear-groups", "--"])
        .arg(program);
    command
        .env_clear()
        .env("LANG", "C.UTF-8")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    command
}
