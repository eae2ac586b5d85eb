//! Whether signerd is out of file descriptors. A software token (SoftHSM) that cannot open its
//! object files finds no objects, and a handle it loaded before goes stale: without this check
//! an empty search under descriptor exhaustion would answer "key not found" for a key that is
//! there (issue 9: 63,342 such NOT_FOUNDs beside 1,100 silent connections).

/// Descriptors still free below the soft limit that count as exhausted: the token needed one a
/// moment ago and the accept loop races for the rest.
const HEADROOM: usize = 4;

/// Where the kernel lists this process's open descriptors.
const OPEN_FDS: &str = "/proc/self/fd";

/// `EMFILE` (this process's limit) and `ENFILE` (the system's).
const OUT_OF_DESCRIPTORS: [i32; 2] = [24, 23];

/// True when the process is at (or within [`HEADROOM`] of) its open files limit.
pub(crate) fn exhausted() -> bool {
    let open = match std::fs::read_dir(OPEN_FDS) {
        // The directory itself takes a descriptor: counting it errs towards "exhausted".
        Ok(dir) => dir.count(),
        Err(e) => {
            return e
                .raw_os_error()
                .is_some_and(|c| OUT_OF_DESCRIPTORS.contains(&c))
        }
    };
    soft_limit().is_some_and(|limit| open + HEADROOM >= limit)
}

/// The soft `RLIMIT_NOFILE`, from `/proc/self/limits` (the crate has no unsafe code for
/// `getrlimit`): `Max open files  1024  4096  files`. `None` for "unlimited" or unreadable.
fn soft_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_soft_limit(&limits)
}

fn parse_soft_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_soft_limit(limits), Some(1024));
        assert_eq!(
            parse_soft_limit(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
        assert_eq!(parse_soft_limit("nothing here"), None);
    }

    #[test]
    fn a_test_process_with_room_is_not_exhausted() {
        assert!(soft_limit().is_some_and(|l| l > 64), "{:?}", soft_limit());
        assert!(!exhausted());
    }
}
