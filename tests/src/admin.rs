//! signerd's admin API and admin CLI as tests use them: signerd started with an `[admin]`
//! config of the test's choosing, a gRPC client on the admin socket, and `signerd <noun> <verb>`
//! runs whose exit code and output are checked.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use signerd_proto::admin::token_admin_client::TokenAdminClient;
use tonic::transport::{Channel, Endpoint};

use crate::pki::TestPki;
use crate::process::output_with_timeout;
use crate::signerd::{signerd_bin, Signerd, TestToken};

/// Longest one admin CLI command may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts signerd on `token` with its admin socket at `<dir>/admin.sock` and `admin` (TOML
/// lines of the `[admin]` section, e.g. `allow_uids = [65534]`) in a config file under `dir`.
/// Returns signerd and the socket path once the socket accepts connections.
pub fn start_signerd(
    dir: &Path,
    token: &TestToken,
    pki: &TestPki,
    admin: &str,
) -> io::Result<(Signerd, PathBuf)> {
    let socket = dir.join("admin.sock");
    let config = dir.join("admin.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nsocket = {:?}\n{admin}\n",
            socket.display().to_string()
        ),
    )?;
    let config = config.display().to_string();
    let signerd = Signerd::start_with(dir, "signerd", token, pki, &["--config", &config])?;
    wait_for_socket(&socket, &signerd)?;
    Ok((signerd, socket))
}

/// Waits until `socket` accepts connections.
pub fn wait_for_socket(socket: &Path, signerd: &Signerd) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "signerd did not serve its admin socket {}\n{}",
                socket.display(),
                signerd.logs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A gRPC client of the admin API on `socket`.
pub async fn client(socket: &Path) -> TokenAdminClient<Channel> {
    let channel = Endpoint::from_shared(format!("unix:{}", socket.display()))
        .expect("a unix: endpoint")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    TokenAdminClient::new(channel)
}

/// `signerd <noun> <verb>` against one admin socket, run in a folder of the test's own, each
/// run's output kept in `<dir>/runs/`.
#[derive(Debug)]
pub struct AdminCli {
    socket: PathBuf,
    dir: PathBuf,
    runs: std::cell::Cell<u32>,
}

impl AdminCli {
    /// Runs commands in `dir` against `socket`.
    pub fn new(socket: &Path, dir: &Path) -> io::Result<AdminCli> {
        std::fs::create_dir_all(dir.join("runs"))?;
        Ok(AdminCli {
            socket: socket.to_owned(),
            dir: dir.to_owned(),
            runs: std::cell::Cell::new(0),
        })
    }

    /// The folder commands run in (relative output paths land here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `signerd <args>` with `SIGNERD_SOCKET` set, whatever its exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let label: String = args
            .iter()
            .take(2)
            .flat_map(|a| a.chars())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(30)
            .collect();
        let mut command = Command::new(signerd_bin());
        command
            .args(args)
            .current_dir(&self.dir)
            .env("SIGNERD_SOCKET", &self.socket)
            .env_remove("SIGNERD_ADDR");
        output_with_timeout(
            command,
            None,
            &self.dir.join("runs").join(format!("{n:03}-{label}")),
            CLI_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("signerd {args:?}: {e}"))
    }

    /// Runs `signerd <args>` and returns stdout.
    ///
    /// # Panics
    /// When it fails, with both outputs.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "signerd {args:?} failed with {}\n{}",
            out.status,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `signerd <args>`, expecting exit code `code`; returns stdout then stderr.
    ///
    /// # Panics
    /// When the exit code differs.
    pub fn run_code(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "signerd {args:?}: expected exit {code}\n{}",
            text(&out)
        );
        text(&out)
    }

    /// Runs `signerd <args> --json` and parses stdout.
    ///
    /// # Panics
    /// When it fails or prints no JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run_ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("signerd {all:?}: not JSON ({e}):\n{out}"))
    }
}

/// Stdout then stderr of a run.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `openssl <args>`; returns (success, stdout + stderr).
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    (out.status.success(), text(&out))
}
