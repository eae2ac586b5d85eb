//! The PKCS#11 shim as tests use it: the built `libpkcs11_shim.so`, a signerd serving its admin
//! API on a Unix socket of the test's own (with the notary CLI's PINs), the environment a
//! client process needs, and the `libykcs11.so` link the notary CLI loads.
//!
//! The link lives at a system path (the notary CLI searches fixed paths only), so [`YkcsLink`]
//! makes it in a private mount namespace ([`crate::namespace`]): a folder of the test's own
//! stands in for `/usr/local/lib`, and only the processes started through the link see it.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub use crate::artifacts::shim_module;
use crate::namespace::PrivateLib;
pub use crate::namespace::{EARLIER_YKCS11_PATHS, YKCS11_LINK};
use crate::pki::TestPki;
use crate::signerd::{signerd_bin, Signerd, TestToken};

/// The user PIN the notary CLI offers first (ykcs11's default PIV PIN).
pub const NOTARY_USER_PIN: &str = "123456";
/// The SO PIN the notary CLI offers first (the default PIV management key).
pub const NOTARY_SO_PIN: &str = "010203040506070801020304050607080102030405060708";

/// signerd with its admin API on a Unix socket, accepting the notary CLI's PINs
/// ([`NOTARY_USER_PIN`] for users, [`NOTARY_SO_PIN`] for the SO).
#[derive(Debug)]
pub struct AdminSignerd {
    /// The running signerd (Notary API on mTLS as usual).
    pub signerd: Signerd,
    /// The admin socket.
    pub socket: PathBuf,
}

impl AdminSignerd {
    /// Starts signerd on `token` with an `[admin]` section in a config file under `dir`.
    pub fn start(dir: &Path, token: &TestToken, pki: &TestPki) -> io::Result<AdminSignerd> {
        Self::start_with(dir, token, pki, "")
    }

    /// Like [`Self::start`], with more lines for the `[admin]` section (e.g. `admin_clients`).
    pub fn start_with(
        dir: &Path,
        token: &TestToken,
        pki: &TestPki,
        admin_lines: &str,
    ) -> io::Result<AdminSignerd> {
        let socket = dir.join("admin.sock");
        let user_pin = dir.join("admin-user-pin");
        let so_pin = dir.join("admin-so-pin");
        std::fs::write(&user_pin, NOTARY_USER_PIN)?;
        std::fs::write(&so_pin, NOTARY_SO_PIN)?;
        let config = dir.join("admin.toml");
        std::fs::write(
            &config,
            format!(
                "[admin]\nsocket = {:?}\nuser_pin_file = {:?}\nso_pin_file = {:?}\n{admin_lines}\n",
                socket.display().to_string(),
                user_pin.display().to_string(),
                so_pin.display().to_string()
            ),
        )?;
        let config = config.display().to_string();
        let signerd = Signerd::start_with(dir, "signerd", token, pki, &["--config", &config])?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "signerd did not make its admin socket {}\n{}",
                    socket.display(),
                    signerd.logs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(AdminSignerd { signerd, socket })
    }

    /// Waits until the admin socket is back after a restart.
    pub fn wait_socket(&self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::other("the admin socket did not come back"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The environment a shim client needs to reach this signerd.
    pub fn shim_env(&self, log: &Path) -> Vec<(String, String)> {
        vec![
            ("SIGNERD_SOCKET".into(), self.socket.display().to_string()),
            ("SIGNERD_SHIM_DISABLE".into(), "0".into()),
            ("SIGNERD_SHIM_LOG".into(), log.display().to_string()),
            ("SIGNERD_SHIM_LOG_LEVEL".into(), "info".into()),
        ]
    }
}

/// Runs a tool with `env` added, returning its output whatever the exit status.
pub fn run_tool(program: &str, args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = Command::new(program);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a tool and returns its stdout.
///
/// # Panics
/// When it fails, with both outputs.
pub fn run_tool_ok(program: &str, args: &[&str], env: &[(String, String)]) -> String {
    let out = run_tool(program, args, env);
    assert!(
        out.status.success(),
        "{program} {args:?} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shim linked as [`YKCS11_LINK`] by `signerd shim install`, in a private mount namespace:
/// the link is a file in the test's folder, seen at [`YKCS11_LINK`] only by the processes that
/// [`Self::namespace`] starts (e.g. through [`crate::NotaryClient::in_namespace`]).
#[derive(Debug)]
pub struct YkcsLink {
    namespace: PrivateLib,
    /// What `signerd shim install` printed.
    pub install_output: String,
}

impl YkcsLink {
    /// Runs `signerd shim install --module <module>` inside a private namespace whose
    /// `/usr/local/lib` is `dir/usr-local-lib` (the earlier paths the notary CLI searches are
    /// masked there).
    pub fn install(dir: &Path, module: &Path) -> io::Result<YkcsLink> {
        let namespace = PrivateLib::new(dir)?;
        let out = namespace
            .command(signerd_bin())
            .args(["shim", "install", "--module"])
            .arg(module)
            .output()?;
        let install_output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "signerd shim install (in a private mount namespace) failed: {install_output}"
            )));
        }
        Ok(YkcsLink {
            namespace,
            install_output,
        })
    }

    /// The namespace whose `/usr/local/lib` holds the link.
    pub fn namespace(&self) -> &PrivateLib {
        &self.namespace
    }

    /// The link as a file on the real system (in the test's folder).
    pub fn file(&self) -> PathBuf {
        self.namespace.folder().join("libykcs11.so")
    }
}
