//! Process hardening at start: no core dumps (with a software token such as SoftHSM the keys
//! are in signerd's own memory, and a core file would carry them to disk) and the open-files
//! limit raised to its hard limit, so many client connections cannot starve the token of the
//! descriptors it needs to open its files.

use std::fmt;

use nix::sys::prctl;
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// What [`harden_process`] set, for the startup log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hardened {
    /// The open-files soft limit before.
    pub nofile_before: u64,
    /// The open-files soft limit now.
    pub nofile: u64,
    /// The open-files hard limit (the most an unprivileged process may raise it to).
    pub nofile_hard: u64,
}

impl fmt::Display for Hardened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "core dumps off (PR_SET_DUMPABLE 0, RLIMIT_CORE 0); open files limit {} (was {}, hard limit {})",
            self.nofile, self.nofile_before, self.nofile_hard
        )
    }
}

/// Why the process could not be hardened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HardeningError {
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("cannot mark signerd not dumpable (prctl PR_SET_DUMPABLE): {0}; signerd needs a Linux kernel that allows it (check seccomp or container policy)")]
    Dumpable(nix::Error),
    /// `setrlimit(RLIMIT_CORE, 0)` failed.
    #[error("cannot turn core dumps off (setrlimit RLIMIT_CORE 0): {0}; check the service manager's limits (LimitCORE=0 in a systemd unit)")]
    CoreLimit(nix::Error),
    /// Reading or raising `RLIMIT_NOFILE` failed.
    #[error("cannot raise the open files limit (RLIMIT_NOFILE) to its hard limit {hard}: {source}; set LimitNOFILE in the systemd unit or ulimit -n before starting signerd")]
    FileLimit {
        /// The hard limit signerd tried to reach.
        hard: u64,
        /// The error.
        source: nix::Error,
    },
}

/// Turns core dumps off (`PR_SET_DUMPABLE` 0, `RLIMIT_CORE` 0 soft and hard, so nothing in
/// the process can turn them back on) and raises the `RLIMIT_NOFILE` soft limit to the hard
/// limit. Call it first thing in `serve`, before the token is opened. `PR_SET_DUMPABLE` 0 also
/// keeps other processes of the same user from attaching a debugger or reading
/// `/proc/<pid>/mem`, `fd/`, `environ`.
pub fn harden_process() -> Result<Hardened, HardeningError> {
    prctl::set_dumpable(false).map_err(HardeningError::Dumpable)?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(HardeningError::CoreLimit)?;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|source| HardeningError::FileLimit { hard: 0, source })?;
    // An unlimited hard limit cannot be the soft one: the kernel caps descriptors at nr_open.
    let target = if hard == RLIM_INFINITY {
        nr_open().unwrap_or(soft).max(soft)
    } else {
        hard
    };
    if target > soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)
            .map_err(|source| HardeningError::FileLimit { hard, source })?;
    }
    Ok(Hardened {
        nofile_before: soft,
        nofile: target.max(soft),
        nofile_hard: hard,
    })
}

/// The kernel's most descriptors per process (`/proc/sys/fs/nr_open`).
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (soft, hard) of a limit as the kernel reports it in `/proc/self/limits`.
    fn proc_limit(name: &str) -> (String, String) {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {limits}"));
        let mut values = line[name.len()..].split_whitespace();
        (
            values.next().unwrap().to_owned(),
            values.next().unwrap().to_owned(),
        )
    }

    // Changes this test process for good (nextest runs each test in its own process).
    #[test]
    fn core_dumps_are_off_and_the_file_limit_is_raised_to_the_hard_limit() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let lowered = hard.min(256);
        setrlimit(Resource::RLIMIT_NOFILE, lowered, hard).unwrap();
        prctl::set_dumpable(true).unwrap();
        assert!(prctl::get_dumpable().unwrap());

        let hardened = harden_process().unwrap();

        // `CoreDumping` in /proc/self/status is 1 only while a dump is being written; the
        // dumpable flag itself is what PR_GET_DUMPABLE answers.
        assert!(!prctl::get_dumpable().unwrap());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(status.contains("CoreDumping:\t0"), "{status}");
        assert_eq!(
            proc_limit("Max core file size"),
            ("0".to_owned(), "0".to_owned())
        );
        let (soft_now, hard_now) = proc_limit("Max open files");
        assert_eq!(soft_now, hard_now);
        assert_eq!(soft_now, hardened.nofile.to_string());
        assert_eq!(hardened.nofile_before, lowered);
        assert_eq!(hardened.nofile_hard, hard);
        if !is_root() {
            // Without CAP_SYS_RESOURCE nothing in the process can turn core dumps back on.
            assert!(setrlimit(Resource::RLIMIT_CORE, 1 << 20, 1 << 20).is_err());
        }
        let line = hardened.to_string();
        assert!(
            line.contains("core dumps off") && line.contains(&soft_now),
            "{line}"
        );
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }
}
