//! The PKCS#11 shim as tests use it: the built `libpkcs11_shim.so`, a signerd serving its admin
//! API on a Unix socket of the test's own (with the notary CLI's PINs), the environment a
//! client process needs, and the `libykcs11.so` link the notary CLI loads.
//!
//! The link lives at a real system path (the notary CLI searches fixed paths only), so
//! [`YkcsLink`] holds an exclusive file lock while it exists (tests that make it run one at a
//! time, across test processes and concurrent runs) and removes it on drop. Other tests are
//! immune anyway: [`crate::NotaryClient`] sets `SIGNERD_SHIM_DISABLE=1` unless told to use the
//! shim, and a disabled shim shows no token, so the notary CLI behaves as if no YubiKey
//! library were there.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{Flock, FlockArg};

use crate::pki::TestPki;
use crate::signerd::{signerd_bin, Signerd, TestToken};

/// The user PIN the notary CLI offers first (ykcs11's default PIV PIN).
pub const NOTARY_USER_PIN: &str = "123456";
/// The SO PIN the notary CLI offers first (the default PIV management key).
pub const NOTARY_SO_PIN: &str = "010203040506070801020304050607080102030405060708";
/// Where the tests link the shim for the notary CLI (the last path it searches).
pub const YKCS11_LINK: &str = "/usr/local/lib/libykcs11.so";
/// The paths the notary CLI searches before [`YKCS11_LINK`]; none may exist during the test.
pub const EARLIER_YKCS11_PATHS: [&str; 5] = [
    "/usr/lib/libykcs11.so",
    "/usr/lib/libykcs11.so.1",
    "/usr/lib64/libykcs11.so",
    "/usr/lib64/libykcs11.so.1",
    "/usr/lib/x86_64-linux-gnu/libykcs11.so",
];
/// The lock serializing every holder of [`YKCS11_LINK`].
const LINK_LOCK: &str = "/tmp/signerd-test-libykcs11.lock";

/// The built shim, `target/<profile>/libpkcs11_shim.so`, rebuilt first if any of its sources
/// is newer. (Test builds make only the shim's `rlib`, and `cargo build --bins` skips it.)
///
/// # Panics
/// When the build fails.
pub fn shim_module() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("PKCS11_SHIM_SO") {
                return PathBuf::from(p);
            }
            let exe = std::env::current_exe().expect("the test binary knows its path");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("the test binary lives in target/<profile>/deps")
                .to_path_buf();
            let so = profile_dir.join("libpkcs11_shim.so");
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("tests/ is inside the workspace");
            let built = std::fs::metadata(&so).and_then(|m| m.modified()).ok();
            let newest_source = ["pkcs11-shim", "proto", "Cargo.lock"]
                .iter()
                .filter_map(|p| newest_mtime(&workspace.join(p)))
                .max();
            let fresh = matches!((built, newest_source), (Some(b), Some(s)) if b >= s);
            if !fresh {
                let target_dir = profile_dir.parent().expect("target/<profile>");
                let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
                cargo
                    .args([
                        "build",
                        "--quiet",
                        "-p",
                        "pkcs11-shim",
                        "--lib",
                        "--target-dir",
                    ])
                    .arg(target_dir)
                    .current_dir(workspace);
                if profile_dir.file_name().is_some_and(|n| n == "release") {
                    cargo.arg("--release");
                }
                let status = cargo.status().expect("run cargo build -p pkcs11-shim");
                assert!(status.success(), "cargo build -p pkcs11-shim failed");
            }
            assert!(so.exists(), "{} is missing", so.display());
            so
        })
        .clone()
}

/// The newest modification time of a file or of any file under a folder (`target/` aside).
pub fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "target")
        .filter_map(|e| newest_mtime(&e.path()))
        .max()
}

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

/// The shim linked as [`YKCS11_LINK`] by `signerd shim install`, for as long as this lives;
/// the link is removed (and the lock released) on drop, even when the test panics.
#[derive(Debug)]
pub struct YkcsLink {
    _lock: Flock<File>,
    module: PathBuf,
    /// What `signerd shim install` printed.
    pub install_output: String,
}

impl YkcsLink {
    /// Takes the lock (waiting for other holders), checks that no other YubiKey library would
    /// win, and runs `signerd shim install --module <shim>`.
    ///
    /// # Panics
    /// When another `libykcs11.so` is in the way: the test cannot run honestly then.
    pub fn install(module: &Path) -> io::Result<YkcsLink> {
        let file = File::create(LINK_LOCK)?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io::Error::other(format!("flock {LINK_LOCK}: {e}")))?;
        for p in EARLIER_YKCS11_PATHS {
            assert!(
                std::fs::symlink_metadata(p).is_err(),
                "{p} exists and the notary CLI would load it before {YKCS11_LINK}"
            );
        }
        // A link left by a killed run is ours to replace; anything else is not.
        if let Ok(target) = std::fs::read_link(YKCS11_LINK) {
            if target.file_name().is_some_and(|n| n == "libpkcs11_shim.so") {
                std::fs::remove_file(YKCS11_LINK)?;
            }
        }
        let out = Command::new(signerd_bin())
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
                "signerd shim install failed: {install_output}"
            )));
        }
        Ok(YkcsLink {
            _lock: lock,
            module: module.to_path_buf(),
            install_output,
        })
    }
}

impl Drop for YkcsLink {
    fn drop(&mut self) {
        // Only our own link goes; the lock is released after, when `_lock` drops.
        if std::fs::read_link(YKCS11_LINK).is_ok_and(|t| t == self.module) {
            if let Err(e) = std::fs::remove_file(YKCS11_LINK) {
                eprintln!("could not remove {YKCS11_LINK}: {e}");
            }
        }
    }
}
