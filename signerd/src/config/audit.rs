//! `[audit]`: where the audit trail is written, how durable each line is, how often the chain
//! head is signed, and when the file is rotated.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[audit]` section as written in the config file; no `path` means no audit file (records go
/// to the operational log only).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSection {
    /// The append-only audit file, e.g. `/var/lib/signerd/audit.jsonl`.
    pub path: Option<PathBuf>,
    /// When a line counts as written: `always` (fsync before the reply), `never` (the OS
    /// decides), or an interval such as `200ms` (fsync at most that often).
    pub fsync: Option<String>,
    /// A signed checkpoint after this many lines [default: 1000].
    pub checkpoint_every_lines: Option<u64>,
    /// A signed checkpoint at least this often while lines are written [default: 60].
    pub checkpoint_every_secs: Option<u64>,
    /// Rotate the file once it is this large [default: 104857600 (100 MiB); 0 = never].
    pub rotate_bytes: Option<u64>,
}

impl AuditSection {
    /// The fields the environment can set (`SIGNERD_AUDIT_*`).
    pub const ENV: super::EnvSection = super::EnvSection {
        name: "audit",
        fields: &[
            ("path", super::FieldKind::Text),
            ("fsync", super::FieldKind::Text),
            ("checkpoint_every_lines", super::FieldKind::Number),
            ("checkpoint_every_secs", super::FieldKind::Number),
            ("rotate_bytes", super::FieldKind::Number),
        ],
    };
}

/// When a written line is flushed to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fsync` after every group of lines, before any of their callers get an answer.
    Always,
    /// `fsync` at most once per interval; answers wait for the write only.
    Interval(Duration),
    /// Never `fsync`; the kernel writes back when it likes.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => other
                .strip_suffix("ms")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(|ms| FsyncPolicy::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| {
                    format!(
                        "audit.fsync = {other:?}: use always, never, or an interval such as 200ms"
                    )
                }),
        }
    }
}

/// The audit trail as configured and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditSettings {
    /// The live audit file; rotated files sit beside it.
    pub path: PathBuf,
    /// Durability of each line.
    pub fsync: FsyncPolicy,
    /// A checkpoint after this many lines.
    pub checkpoint_every_lines: u64,
    /// A checkpoint at least this often while lines are written.
    pub checkpoint_every: Duration,
    /// Rotate once the file is this large; `None`: never.
    pub rotate_bytes: Option<u64>,
}

impl AuditSettings {
    /// Defaults for an audit file at `path`.
    pub fn new(path: PathBuf) -> AuditSettings {
        AuditSettings {
            path,
            fsync: FsyncPolicy::Always,
            checkpoint_every_lines: 1000,
            checkpoint_every: Duration::from_secs(60),
            rotate_bytes: Some(100 * 1024 * 1024),
        }
    }
}

impl AuditSection {
    /// The checked settings (`None` without a path), or every problem, each said so a user can
    /// fix it.
    pub fn resolve(&self) -> Result<Option<AuditSettings>, Vec<String>> {
        let mut errors = Vec::new();
        let Some(path) = &self.path else {
            let set: Vec<&str> = [
                ("fsync", self.fsync.is_some()),
                (
                    "checkpoint_every_lines",
                    self.checkpoint_every_lines.is_some(),
                ),
                (
                    "checkpoint_every_secs",
                    self.checkpoint_every_secs.is_some(),
                ),
                ("rotate_bytes", self.rotate_bytes.is_some()),
            ]
            .iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| *name)
            .collect();
            if set.is_empty() {
                return Ok(None);
            }
            return Err(vec![format!(
                "audit.{} set but audit.path is not: give the audit file's path, e.g. /var/lib/signerd/audit.jsonl",
                set.join(", audit.")
            )]);
        };
        let mut settings = AuditSettings::new(path.clone());
        if path.as_os_str().is_empty() || path.file_name().is_none() {
            errors.push(format!(
                "audit.path = {:?} is not a file path; e.g. /var/lib/signerd/audit.jsonl",
                path.display()
            ));
        }
        if let Some(text) = &self.fsync {
            match text.parse() {
                Ok(policy) => settings.fsync = policy,
                Err(e) => errors.push(e),
            }
        }
        match self.checkpoint_every_lines {
            Some(0) => {
                errors.push("audit.checkpoint_every_lines = 0: use 1 or more (e.g. 1000)".into())
            }
            Some(n) => settings.checkpoint_every_lines = n,
            None => {}
        }
        match self.checkpoint_every_secs {
            Some(0) => {
                errors.push("audit.checkpoint_every_secs = 0: use 1 or more (e.g. 60)".into())
            }
            Some(n) => settings.checkpoint_every = Duration::from_secs(n),
            None => {}
        }
        match self.rotate_bytes {
            Some(0) => settings.rotate_bytes = None,
            Some(n) if n < 4096 => errors.push(format!(
                "audit.rotate_bytes = {n}: use 4096 or more, or 0 to never rotate"
            )),
            Some(n) => settings.rotate_bytes = Some(n),
            None => {}
        }
        if errors.is_empty() {
            Ok(Some(settings))
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> AuditSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_and_every_field() {
        assert_eq!(AuditSection::default().resolve(), Ok(None));
        let s = section(
            r#"path = "/tmp/a.jsonl"
fsync = "250ms"
checkpoint_every_lines = 10
checkpoint_every_secs = 5
rotate_bytes = 0"#,
        )
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(s.fsync, FsyncPolicy::Interval(Duration::from_millis(250)));
        assert_eq!(s.checkpoint_every_lines, 10);
        assert_eq!(s.checkpoint_every, Duration::from_secs(5));
        assert_eq!(s.rotate_bytes, None);
        let d = section(r#"path = "a.jsonl""#).resolve().unwrap().unwrap();
        assert_eq!(d, AuditSettings::new("a.jsonl".into()));
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            section(r#"fsync = "always""#).resolve().unwrap_err(),
            vec!["audit.fsync set but audit.path is not: give the audit file's path, e.g. /var/lib/signerd/audit.jsonl"]
        );
        assert_eq!(
            section("path = \"a\"\nfsync = \"sometimes\"\ncheckpoint_every_lines = 0\nrotate_bytes = 10")
                .resolve()
                .unwrap_err(),
            vec![
                "audit.fsync = \"sometimes\": use always, never, or an interval such as 200ms",
                "audit.checkpoint_every_lines = 0: use 1 or more (e.g. 1000)",
                "audit.rotate_bytes = 10: use 4096 or more, or 0 to never rotate",
            ]
        );
        assert!(toml::from_str::<AuditSection>("paht = \"x\"").is_err());
    }
}
