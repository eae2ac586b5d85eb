//! Child processes owned by a test: logs to files, stopped by PID on drop, never left running.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a child gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How many log lines [`ChildGuard`] prints when a test panics while it is running.
const TAIL_LINES_ON_PANIC: usize = 40;

/// Only the last this-many bytes of a log are read for a tail (enough to find signerd's
/// operational lines under a storm of per-call lines: a failed fault test's log is tens of MB).
const TAIL_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// A spawned child process with stdout/stderr in log files; dropping it stops the child.
///
/// Drop sends SIGTERM to the child's PID, waits up to [`STOP_GRACE`], then sends SIGKILL. When
/// the drop happens while the test is panicking, the tail of both logs goes to stderr, which the
/// test harness shows with the failure.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    exit: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `command` with stdin closed and output appended to `<log_dir>/<name>.stdout.log`
    /// and `<log_dir>/<name>.stderr.log` (appended, so a restarted process keeps one history).
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> io::Result<Self> {
        let stdout_log = log_dir.join(format!("{name}.stdout.log"));
        let stderr_log = log_dir.join(format!("{name}.stderr.log"));
        command
            .stdin(Stdio::null())
            .stdout(open_log(&stdout_log)?)
            .stderr(open_log(&stderr_log)?);
        let child = command.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start {name} ({command:?}): {e}"))
        })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            stdout_log,
            stderr_log,
            exit: None,
        })
    }

    /// The name given at spawn, used in log file names and messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's process ID.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Path of the file receiving the child's stdout.
    pub fn stdout_log(&self) -> &Path {
        &self.stdout_log
    }

    /// Path of the file receiving the child's stderr.
    pub fn stderr_log(&self) -> &Path {
        &self.stderr_log
    }

    /// The exit status if the child has exited, without blocking.
    pub fn try_exit_status(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait()?;
        }
        Ok(self.exit)
    }

    /// Fails, with the log tail in the message, if the child has already exited.
    pub fn ensure_running(&mut self) -> io::Result<()> {
        match self.try_exit_status()? {
            None => Ok(()),
            Some(status) => Err(io::Error::other(format!(
                "{} exited early with {status}\n{}",
                self.name,
                self.log_tail(TAIL_LINES_ON_PANIC)
            ))),
        }
    }

    /// Waits until `addr` accepts TCP connections, failing early (with the log tail) if the
    /// child exits, or after `timeout`.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} did not listen on {addr} within {timeout:?}\n{}",
                        self.name,
                        self.log_tail(TAIL_LINES_ON_PANIC)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the child: SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL. Idempotent.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_exit_status()? {
            return Ok(status);
        }
        // The child is not reaped yet, so its PID cannot have been reused.
        self.signal(Signal::SIGTERM)?;
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit_status()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(status) = self.try_exit_status()? {
            return Ok(status);
        }
        self.signal(Signal::SIGKILL)?;
        let status = self.child.wait()?;
        self.exit = Some(status);
        Ok(status)
    }

    /// Kills the child at once with SIGKILL (a crash, for tests), and reaps it.
    pub fn kill_hard(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_exit_status()? {
            return Ok(status);
        }
        self.signal(Signal::SIGKILL)?;
        let status = self.child.wait()?;
        self.exit = Some(status);
        Ok(status)
    }

    /// Sends `signal` to the child's PID.
    fn signal(&self, signal: Signal) -> io::Result<()> {
        let pid = i32::try_from(self.child.id())
            .map_err(|_| io::Error::other(format!("PID {} out of range", self.child.id())))?;
        kill(Pid::from_raw(pid), signal).map_err(io::Error::from)
    }

    /// The last `lines` lines of the child's stdout and stderr logs, labelled, for messages.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "---- {name} stdout ({out}) ----\n{out_tail}\n---- {name} stderr ({err}) ----\n{err_tail}\n---- end of {name} logs ----",
            name = self.name,
            out = self.stdout_log.display(),
            out_tail = file_tail(&self.stdout_log, lines),
            err = self.stderr_log.display(),
            err_tail = file_tail(&self.stderr_log, lines),
        )
    }

    /// The full stdout and stderr logs, concatenated (e.g. to search for a message).
    pub fn logs(&self) -> String {
        let mut all = std::fs::read_to_string(&self.stdout_log).unwrap_or_default();
        all.push_str(&std::fs::read_to_string(&self.stderr_log).unwrap_or_default());
        all
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(TAIL_LINES_ON_PANIC));
        }
        if let Err(e) = self.stop() {
            eprintln!("stopping {} (pid {}): {e}", self.name, self.child.id());
        }
    }
}

/// Opens a log file for appending, creating it if needed.
fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))
}

/// The last `lines` lines of a file, or a note saying why it could not be read.
pub fn file_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    let read = File::open(path).and_then(|mut file| {
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(TAIL_MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(())
    });
    if let Err(e) = read {
        return format!("(cannot read {}: {e})", path.display());
    }
    let all: Vec<&str> = text.lines().collect();
    // signerd's per-call lines (`signerd::keyop`, on in the tests) would bury the operational
    // ones a failure is read for: those are shown, with the last per-call line and a count.
    let per_call = |l: &&str| l.contains(" signerd::keyop: ");
    let operational: Vec<&str> = all.iter().copied().filter(|l| !per_call(l)).collect();
    let left_out = all.len() - operational.len();
    let last = |v: &[&str]| v[v.len().saturating_sub(lines)..].join("\n");
    match all.iter().rev().find(|l| per_call(l)) {
        Some(last_call) if left_out > lines => format!(
            "{}\n({left_out} per-call signerd::keyop lines left out; the last one:)\n{last_call}",
            last(&operational)
        ),
        _ => last(&all),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it; it may be taken again
/// before use, which is rare enough for tests).
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `addr` accepts TCP connections, or fails after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing listened on {addr} within {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Like [`Command::output`], but kills the process (SIGKILL) if it runs longer than `timeout`.
///
/// Output goes through files `<out_base>.stdout` / `<out_base>.stderr`, which stay behind for
/// post-mortems; this also avoids pipe deadlocks without reader threads.
pub fn output_with_timeout(
    mut command: Command,
    stdin: Option<&Path>,
    out_base: &Path,
    timeout: Duration,
) -> io::Result<std::process::Output> {
    let stdout_path = out_base.with_extension("stdout");
    let stderr_path = out_base.with_extension("stderr");
    command
        .stdin(match stdin {
            Some(path) => Stdio::from(File::open(path)?),
            None => Stdio::null(),
        })
        .stdout(File::create(&stdout_path)?)
        .stderr(File::create(&stderr_path)?);
    let mut child = command
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {command:?}: {e}")))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            // Not reaped yet, so the PID is still this child's.
            child.kill()?;
            child.wait()?;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{command:?} ran longer than {timeout:?}; killed\nstdout:\n{}\nstderr:\n{}",
                    file_tail(&stdout_path, 40),
                    file_tail(&stderr_path, 40)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(std::process::Output {
        status,
        stdout: std::fs::read(&stdout_path)?,
        stderr: std::fs::read(&stderr_path)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_shows_the_operational_lines_under_a_storm_of_per_call_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signerd.stderr.log");
        let mut text = String::from("INFO signerd::server: started\n");
        text.push_str("WARN signerd_token::supervisor: token down\n");
        for i in 0..1000 {
            text.push_str(&format!("DEBUG signerd::keyop: method=\"Sign\" n={i}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let tail = file_tail(&path, 2);
        assert!(
            tail.starts_with(
                "INFO signerd::server: started\nWARN signerd_token::supervisor: token down\n"
            ),
            "{tail}"
        );
        assert!(
            tail.contains("(1000 per-call signerd::keyop lines left out"),
            "{tail}"
        );
        assert!(tail.ends_with("n=999"), "{tail}");
        // Without a storm the tail is the plain last lines.
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(file_tail(&path, 2), "b\nc");
    }
}
