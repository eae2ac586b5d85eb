//! Python clients for tests: a virtualenv with pinned PyPI packages, made once and kept under
//! `target/python/` (keyed by the interpreter and the requirements) so later runs start at once,
//! with pip's download cache beside it. A venv that no longer imports its packages is made again.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::process::output_with_timeout;

/// The python-pkcs11 release the tests and `scripts/pkcs11-suite.sh` use.
pub const PYTHON_PKCS11: &str = "python-pkcs11==0.10.1";

/// How long making a venv and installing into it may take (downloads included).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the import check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// A virtualenv with its packages installed.
#[derive(Debug)]
pub struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// The cached venv with `requirements` (pip requirement strings, pinned), in which
    /// `import <check>` works; made under `target/python/` if missing or broken.
    pub fn cached(requirements: &[&str], check: &str) -> io::Result<Venv> {
        let interpreter = interpreter();
        let mut key = Sha256::new();
        key.update(interpreter.as_os_str().as_encoded_bytes());
        for r in requirements {
            key.update(b"\0");
            key.update(r.as_bytes());
        }
        let key = hex::encode(&key.finalize()[..8]);
        let root = target_dir().join("python");
        std::fs::create_dir_all(&root)?;
        let venv = Venv {
            dir: root.join(format!("venv-{key}")),
        };
        if venv.dir.exists() {
            if venv.imports(check, &root).is_ok() {
                return Ok(venv);
            }
            std::fs::remove_dir_all(&venv.dir)?;
        }
        // Made aside and renamed into place, so a half-made venv is never used and two test
        // processes making it at once both end with a whole one.
        let building = root.join(format!("building-{key}-{}", std::process::id()));
        let logs = root.join(format!("building-{key}-{}-log", std::process::id()));
        std::fs::create_dir_all(&logs)?;
        let mut make = Command::new(&interpreter);
        make.args(["-m", "venv"]).arg(&building);
        run(make, &logs.join("venv"), "python3 -m venv")?;
        let mut pip = Command::new(building.join("bin").join("python"));
        pip.args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
            .arg("--cache-dir")
            .arg(root.join("pip-cache"))
            .args(requirements);
        run(pip, &logs.join("pip"), "pip install")?;
        if std::fs::rename(&building, &venv.dir).is_err() && venv.dir.exists() {
            // Another process finished first: use its venv.
            std::fs::remove_dir_all(&building)?;
        }
        std::fs::remove_dir_all(&logs)?;
        venv.imports(check, &root)?;
        Ok(venv)
    }

    /// The venv's interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    fn imports(&self, check: &str, log_dir: &Path) -> io::Result<()> {
        let mut command = Command::new(self.python());
        command.args(["-c", &format!("import {check}")]);
        let log = log_dir.join(format!("check-{}", std::process::id()));
        let out = output_with_timeout(command, None, &log, CHECK_TIMEOUT);
        for extension in ["stdout", "stderr"] {
            let _ = std::fs::remove_file(log.with_extension(extension));
        }
        let out = out?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{}: import {check} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }
}

fn run(command: Command, log: &Path, what: &str) -> io::Result<()> {
    let out = output_with_timeout(command, None, log, INSTALL_TIMEOUT)?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{what} failed ({}): {}{}\n(needs Debian's python3-venv and PyPI)",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

/// Debian's `python3` (the `python3-venv` package makes its venvs), else the one on `PATH`.
fn interpreter() -> PathBuf {
    let debian = Path::new("/usr/bin/python3");
    if debian.is_file() {
        debian.to_owned()
    } else {
        PathBuf::from("python3")
    }
}

/// `target/`: test binaries live in `target/<profile>/deps/`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.ancestors()
        .nth(3)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}
