//! What a process costs, read from `/proc`: CPU time (utime + stime of all its threads, from
//! `/proc/PID/stat`), thread count and resident memory (from `/proc/PID/status`).

use std::io;

use nix::unistd::{sysconf, SysconfVar};

/// CPU time a process has used so far, in clock ticks (`utime + stime`).
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat)
        .ok_or_else(|| io::Error::other(format!("unexpected /proc/{pid}/stat: {stat}")))
}

/// `utime + stime` from the text of `/proc/PID/stat`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), counted from 1 over the whole line; field 3 is first here.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`USER_HZ`), the unit of [`cpu_ticks`].
pub fn ticks_per_second() -> u64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as u64,
        // Linux has reported 100 on every architecture for decades.
        _ => 100,
    }
}

/// Threads and memory of a process at one moment.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Footprint {
    /// `Threads:`.
    pub threads: u64,
    /// `VmRSS:` in KiB.
    pub rss_kib: u64,
    /// `VmHWM:` (peak resident set) in KiB.
    pub peak_rss_kib: u64,
}

/// Reads `/proc/PID/status`.
pub fn footprint(pid: u32) -> io::Result<Footprint> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(parse_footprint(&status))
}

fn parse_footprint(status: &str) -> Footprint {
    let mut footprint = Footprint::default();
    for line in status.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let number = || {
            value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        match name {
            "Threads" => footprint.threads = number(),
            "VmRSS" => footprint.rss_kib = number(),
            "VmHWM" => footprint.peak_rss_kib = number(),
            _ => {}
        }
    }
    footprint
}

/// The CPUs a process may run on (`Cpus_allowed_list:`), to show the pinning in the report.
pub fn cpus_allowed(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_spaces_in_the_name() {
        let stat = "4242 (tokio runtime w) S 1 4242 4242 0 -1 4194560 1523 0 0 0 \
                    170 35 0 0 20 0 9 0 12345 123456789 4000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(205));
    }

    #[test]
    fn footprint_reads_threads_and_memory() {
        let status = "Name:\tsignerd\nVmHWM:\t   30000 kB\nVmRSS:\t   25000 kB\nThreads:\t12\n";
        let f = parse_footprint(status);
        assert_eq!((f.threads, f.rss_kib, f.peak_rss_kib), (12, 25000, 30000));
    }
}
