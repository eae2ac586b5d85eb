//! SoftHSM2 tokens made in a folder of their own: the embedded dev default and every test use
//! these, so nothing touches the system token directory and no two runs share state.
//!
//! The steps are those of `scripts/softhsm-setup.sh`: a `softhsm2.conf` naming a private token
//! directory, then `softhsm2-util --init-token --free`, run with `SOFTHSM2_CONF` set for that
//! child process only.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `softhsm2` package puts the module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM2 configuration rooted in one folder.
#[derive(Clone, Debug)]
pub struct SoftHsmDir {
    root: PathBuf,
}

/// Why a SoftHSM token could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SoftHsmError {
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `softhsm2-util` is missing or failed.
    #[error(
        "softhsm2-util --init-token failed: {0}; install SoftHSM2 (apt-get install -y softhsm2)"
    )]
    Init(String),
}

impl SoftHsmDir {
    /// Makes (or reuses) `root` with a `softhsm2.conf` whose token directory is `root/tokens`.
    pub fn create(root: &Path) -> Result<SoftHsmDir, SoftHsmError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SoftHsmError::Io { path, source }
        };
        let tokens = root.join("tokens");
        std::fs::create_dir_all(&tokens).map_err(io(&tokens))?;
        let conf = root.join("softhsm2.conf");
        let text = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        );
        std::fs::write(&conf, text).map_err(io(&conf))?;
        Ok(SoftHsmDir {
            root: root.to_path_buf(),
        })
    }

    /// The `softhsm2.conf` to pass as `SOFTHSM2_CONF`.
    pub fn conf(&self) -> PathBuf {
        self.root.join("softhsm2.conf")
    }

    /// The folder holding the token files.
    pub fn token_dir(&self) -> PathBuf {
        self.root.join("tokens")
    }

    /// Initializes a new token `label` with the given user and SO PINs.
    pub fn init_token(
        &self,
        label: &str,
        user_pin: &str,
        so_pin: &str,
    ) -> Result<(), SoftHsmError> {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", self.conf())
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                user_pin,
                "--so-pin",
                so_pin,
            ])
            .output()
            .map_err(|e| SoftHsmError::Init(e.to_string()))?;
        if !out.status.success() {
            return Err(SoftHsmError::Init(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether a token with `label` exists here already.
    pub fn has_token(&self, label: &str) -> bool {
        Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", self.conf())
            .arg("--show-slots")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).lines().any(|l| {
                    l.trim()
                        .strip_prefix("Label:")
                        .is_some_and(|v| v.trim() == label)
                })
            })
            .unwrap_or(false)
    }

    /// A token URI for `label` in this folder, with the PIN read from `pin_file`.
    pub fn uri(&self, label: &str, pin_file: &Path) -> String {
        format!(
            "pkcs11:token={label}?module-path={SOFTHSM_MODULE}&pin-source=file:{}",
            pin_file.display()
        )
    }
}
