//! Where the token's user PIN comes from: a file or an environment variable.
//!
//! The PIN is read each time signerd logs in (so a corrected PIN file is picked up without a
//! restart) and only ever held in a [`SecretString`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use secrecy::SecretString;

/// A source of the user PIN.
#[derive(Clone)]
pub enum PinSource {
    /// A file holding the PIN (one trailing newline is ignored).
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
    /// A PIN given inline (`pin-value` in a URI): for tests and demos only.
    Value(SecretString),
}

/// The PIN could not be read from its source.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the token PIN from {source_desc}: {reason}; {hint}")]
pub struct PinReadError {
    source_desc: String,
    reason: String,
    hint: &'static str,
    /// The file could not be opened for want of a file descriptor: passes by itself.
    transient: bool,
}

impl PinReadError {
    /// True when the read failed for a passing reason (signerd out of file descriptors), not
    /// one an operator has to fix.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl PinSource {
    /// Reads the PIN.
    pub fn read(&self) -> Result<SecretString, PinReadError> {
        match self {
            PinSource::File(path) => {
                let mut text = std::fs::read_to_string(path).map_err(|e| {
                    // EMFILE, ENFILE: the file is fine, signerd has no descriptor to open it.
                    let transient = matches!(e.raw_os_error(), Some(23 | 24));
                    PinReadError {
                        source_desc: format!("file {}", path.display()),
                        reason: e.to_string(),
                        hint: if transient {
                            "signerd is out of file descriptors and retries by itself; raise its open files limit (LimitNOFILE=, ulimit -n) or lower server.max_connections"
                        } else {
                            "create it (mode 0600) or point pin-source / --pin-file at the right file"
                        },
                        transient,
                    }
                })?;
                let pin = SecretString::from(text.trim_end_matches(['\r', '\n']).to_owned());
                zeroize::Zeroize::zeroize(&mut text);
                Ok(pin)
            }
            PinSource::Env(var) => {
                std::env::var(var)
                    .map(SecretString::from)
                    .map_err(|e| PinReadError {
                        source_desc: format!("environment variable {var}"),
                        reason: e.to_string(),
                        hint: "export it before starting signerd, or use pin-source=file:PATH",
                        transient: false,
                    })
            }
            PinSource::Value(pin) => Ok(pin.clone()),
        }
    }

    /// A description that names the source but never the PIN.
    pub fn describe(&self) -> String {
        match self {
            PinSource::File(p) => format!("file:{}", p.display()),
            PinSource::Env(v) => format!("env:{v}"),
            PinSource::Value(_) => "pin-value (inline)".to_owned(),
        }
    }
}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PartialEq for PinSource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PinSource::File(a), PinSource::File(b)) => a == b,
            (PinSource::Env(a), PinSource::Env(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for PinSource {}

/// Parses `file:/path`, `file:///path`, `env:VAR` or a bare absolute path.
impl FromStr for PinSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(var) = s.strip_prefix("env:") {
            if var.is_empty() {
                return Err("env: needs a variable name, e.g. env:SIGNERD_PIN".into());
            }
            return Ok(PinSource::Env(var.to_owned()));
        }
        let path = s
            .strip_prefix("file://")
            .or_else(|| s.strip_prefix("file:"))
            .unwrap_or(s);
        if path.is_empty() || s.contains("://") && !s.starts_with("file://") {
            return Err(format!(
                "'{s}' is not a PIN source; use file:/path/to/pin or env:VARIABLE"
            ));
        }
        Ok(PinSource::File(PathBuf::from(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn reads_file_without_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "1234\n").unwrap();
        let pin = PinSource::File(path).read().unwrap();
        assert_eq!(pin.expose_secret(), "1234");
    }

    #[test]
    fn missing_file_says_what_to_do() {
        let err = PinSource::File("/nonexistent/pin".into())
            .read()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/pin") && err.contains("--pin-file"),
            "{err}"
        );
    }

    #[test]
    fn parses_sources() {
        assert_eq!(
            "file:///a/b".parse::<PinSource>().unwrap(),
            PinSource::File("/a/b".into())
        );
        assert_eq!(
            "/a/b".parse::<PinSource>().unwrap(),
            PinSource::File("/a/b".into())
        );
        assert_eq!(
            "env:X".parse::<PinSource>().unwrap(),
            PinSource::Env("X".into())
        );
        assert!("env:".parse::<PinSource>().is_err());
        assert!("https://x".parse::<PinSource>().is_err());
    }

    #[test]
    fn debug_hides_inline_pin() {
        let s = PinSource::Value("987654".to_owned().into());
        assert!(!format!("{s:?}").contains("987654"));
    }
}
