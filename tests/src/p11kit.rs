//! A network HSM stand-in: Debian's `p11-kit server` exports a test's SoftHSM token on a Unix
//! socket, and signerd loads `p11-kit-client.so` (package `p11-kit-modules`) as its module, with
//! `P11_KIT_SERVER_ADDRESS` naming the socket.
//!
//! The server forks one `p11-kit-remote` per client connection; those children hold the real
//! module and the sessions, so a test that wants the HSM to hang or die stops or kills them as
//! well as the server. [`P11KitServer`] finds them by parent PID and remembers them (with their
//! start time, so a reused PID is never signalled), and stops everything by PID.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signerd_token::softhsm::SOFTHSM_MODULE;

use crate::process::ChildGuard;
use crate::signerd::{TestToken, TEST_TOKEN_LABEL};

/// The `p11-kit` command (Debian package `p11-kit`).
pub const P11_KIT_BIN: &str = "/usr/bin/p11-kit";

/// The variable `p11-kit-client.so` reads the server's address from (`unix:path=<socket>`).
pub const SERVER_ADDRESS_ENV: &str = "P11_KIT_SERVER_ADDRESS";

/// How long the server gets to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long killed processes get to disappear.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// `p11-kit-client.so` in Debian's multiarch module folder (package `p11-kit-modules`).
pub fn client_module() -> io::Result<PathBuf> {
    let path = PathBuf::from(format!(
        "/usr/lib/{}-linux-gnu/pkcs11/p11-kit-client.so",
        std::env::consts::ARCH
    ));
    if path.exists() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is missing: install p11-kit-modules (scripts/test.sh does)",
                path.display()
            ),
        ))
    }
}

/// A process named by PID and start time, so that a PID the kernel has reused for another
/// process is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// The PID.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot when it started.
    start_time: u64,
}

/// The parts of `/proc/<pid>/stat` the harness needs.
struct Stat {
    state: char,
    ppid: u32,
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')': fields 3 on
    // follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

impl ProcessId {
    /// The process now running as `pid`.
    pub fn of(pid: u32) -> io::Result<Self> {
        let stat =
            read_stat(pid).ok_or_else(|| io::Error::other(format!("no process {pid} in /proc")))?;
        Ok(Self {
            pid,
            start_time: stat.start_time,
        })
    }

    /// The process's state letter (`S`, `R`, `T` when stopped, ...), or `None` once it has
    /// exited (gone, a zombie, or the PID now belongs to another process).
    pub fn state(&self) -> Option<char> {
        read_stat(self.pid)
            .filter(|s| s.start_time == self.start_time)
            .map(|s| s.state)
            .filter(|s| !matches!(s, 'Z' | 'X' | 'x'))
    }

    /// Whether the process still runs (or is stopped).
    pub fn is_alive(&self) -> bool {
        self.state().is_some()
    }

    /// Sends `signal` if the process is still this one; a process that has exited is skipped.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        if !self.is_alive() {
            return Ok(());
        }
        let pid = i32::try_from(self.pid)
            .map_err(|_| io::Error::other(format!("PID {} out of range", self.pid)))?;
        match kill(Pid::from_raw(pid), signal) {
            // It exited between the check and the signal.
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Waits until the process has exited, or fails after `timeout`.
    pub fn wait_gone(&self, timeout: Duration) -> io::Result<()> {
        self.wait_state(timeout, "still there", |state| state.is_none())
    }

    /// Waits until `done` holds for the process's state letter (`None` once it has exited),
    /// or fails after `timeout` with "process PID <failure> after <timeout>".
    fn wait_state(
        &self,
        timeout: Duration,
        failure: &str,
        done: impl Fn(Option<char>) -> bool,
    ) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while !done(self.state()) {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("process {} {failure} after {timeout:?}", self.pid),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

/// The live children of `parent`, found by their parent PID in `/proc`.
fn children_of(parent: u32) -> io::Result<Vec<ProcessId>> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(stat) = read_stat(pid) {
            if stat.ppid == parent && !matches!(stat.state, 'Z' | 'X' | 'x') {
                children.push(ProcessId {
                    pid,
                    start_time: stat.start_time,
                });
            }
        }
    }
    Ok(children)
}

/// `p11-kit server` exporting one SoftHSM token on `<dir>/p11-kit.sock`, stopped (with every
/// `p11-kit-remote` it forked) on drop.
#[derive(Debug)]
pub struct P11KitServer {
    server: Option<ChildGuard>,
    server_id: Option<ProcessId>,
    dir: PathBuf,
    socket: PathBuf,
    softhsm_conf: PathBuf,
    label: String,
    /// Every `p11-kit-remote` seen so far: after the server dies they are no longer its
    /// children, but they may still run and must still be stopped.
    remotes: Mutex<Vec<ProcessId>>,
}

impl P11KitServer {
    /// Starts `p11-kit server` in `dir` exporting `token` (made by [`TestToken::create`]), with
    /// the token's own `SOFTHSM2_CONF`.
    pub fn start(dir: &Path, token: &TestToken) -> io::Result<Self> {
        let mut server = Self {
            server: None,
            server_id: None,
            dir: dir.to_owned(),
            socket: dir.join("p11-kit.sock"),
            softhsm_conf: token.softhsm.conf(),
            label: TEST_TOKEN_LABEL.to_owned(),
            remotes: Mutex::new(Vec::new()),
        };
        server.launch()?;
        Ok(server)
    }

    fn launch(&mut self) -> io::Result<()> {
        let mut command = Command::new(P11_KIT_BIN);
        command
            .arg("server")
            .arg("--foreground")
            .arg("--name")
            .arg(&self.socket)
            .arg("--provider")
            .arg(SOFTHSM_MODULE)
            .arg(format!("pkcs11:token={}", self.label))
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env_remove(SERVER_ADDRESS_ENV);
        let mut process = ChildGuard::spawn("p11-kit-server", command, &self.dir)?;
        let id = ProcessId::of(process.id())?;
        // The server prints its address and PID once the socket listens (it replaces a stale
        // socket file); the log is appended to across restarts, so look for this PID.
        let announcement = format!("P11_KIT_SERVER_PID={};", process.id());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            process.ensure_running()?;
            let announced = std::fs::read_to_string(process.stdout_log())
                .is_ok_and(|out| out.contains(&announcement));
            if announced && self.socket.exists() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "p11-kit server did not listen on {} within {START_TIMEOUT:?}\n{}",
                        self.socket.display(),
                        process.log_tail(20)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.server = Some(process);
        self.server_id = Some(id);
        Ok(())
    }

    /// The address `p11-kit-client.so` connects to: `unix:path=<socket>`.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }

    /// The server's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `token` as signerd reaches it through this server: the same label and PIN file, with
    /// `p11-kit-client.so` as the module and [`SERVER_ADDRESS_ENV`] set for signerd.
    pub fn remote_token(&self, token: &TestToken) -> io::Result<TestToken> {
        let module = client_module()?;
        Ok(TestToken {
            softhsm: token.softhsm.clone(),
            pin_file: token.pin_file.clone(),
            uri: format!(
                "pkcs11:token={}?module-path={}&pin-source=file:{}",
                self.label,
                module.display(),
                token.pin_file.display()
            ),
            env: vec![(SERVER_ADDRESS_ENV.to_owned(), self.address())],
        })
    }

    /// The running server process.
    pub fn server(&self) -> io::Result<ProcessId> {
        self.server_id
            .filter(ProcessId::is_alive)
            .ok_or_else(|| io::Error::other("p11-kit server is not running"))
    }

    /// The `p11-kit-remote` processes still alive: the server's children now, and those seen
    /// before that outlived it.
    pub fn remotes(&self) -> io::Result<Vec<ProcessId>> {
        let mut known = self.remotes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(server) = self.server_id.filter(ProcessId::is_alive) {
            for child in children_of(server.pid)? {
                if !known.contains(&child) {
                    known.push(child);
                }
            }
        }
        known.retain(ProcessId::is_alive);
        Ok(known.clone())
    }

    /// Waits until at least `count` `p11-kit-remote` processes run (one per connected client),
    /// and returns them.
    pub fn wait_for_remotes(&self, count: usize, timeout: Duration) -> io::Result<Vec<ProcessId>> {
        let deadline = Instant::now() + timeout;
        loop {
            let remotes = self.remotes()?;
            if remotes.len() >= count {
                return Ok(remotes);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} p11-kit-remote processes after {timeout:?}, wanted {count}",
                        remotes.len()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGSTOP) and waits until it is stopped, so it forks no new
    /// `p11-kit-remote` while its children are listed: a client that connects at that moment
    /// would otherwise get a child the listing missed.
    fn hold_server(&self) -> io::Result<()> {
        let Some(server) = self.server_id.filter(ProcessId::is_alive) else {
            return Ok(());
        };
        server.signal(Signal::SIGSTOP)?;
        server.wait_state(
            EXIT_TIMEOUT,
            "(the p11-kit server) not stopped by SIGSTOP",
            |s| matches!(s, Some('T') | None),
        )
    }

    /// Sends `signal` to the server and every live `p11-kit-remote` (the server held stopped
    /// while its children are listed, so none is missed).
    pub fn signal_all(&self, signal: Signal) -> io::Result<()> {
        self.hold_server()?;
        for remote in self.remotes()? {
            remote.signal(signal)?;
        }
        if let Some(server) = self.server_id {
            server.signal(signal)?;
            if signal != Signal::SIGSTOP {
                // Let go of the hold, so the server acts on the signal.
                server.signal(Signal::SIGCONT)?;
            }
        }
        Ok(())
    }

    /// The HSM hangs: SIGSTOP to the server and every `p11-kit-remote`.
    pub fn freeze(&self) -> io::Result<()> {
        self.signal_all(Signal::SIGSTOP)
    }

    /// The HSM answers again: SIGCONT to the server and every `p11-kit-remote`.
    pub fn thaw(&self) -> io::Result<()> {
        self.signal_all(Signal::SIGCONT)
    }

    /// The HSM dies: SIGKILL to every `p11-kit-remote` and the server, waiting until all have
    /// exited (the socket file stays behind, as after a crash).
    pub fn kill_all(&mut self) -> io::Result<()> {
        self.hold_server()?;
        let remotes = self.remotes()?;
        for remote in &remotes {
            remote.signal(Signal::SIGKILL)?;
        }
        if let Some(mut server) = self.server.take() {
            server.kill_hard()?;
        }
        for remote in &remotes {
            remote.wait_gone(EXIT_TIMEOUT)?;
        }
        Ok(())
    }

    /// A new server on the same socket and token (after [`Self::kill_all`], or killing the
    /// running one first): the HSM is back.
    pub fn restart(&mut self) -> io::Result<()> {
        if self.server.is_some() {
            self.kill_all()?;
        }
        self.launch()
    }

    /// Everything the current server logged.
    pub fn logs(&self) -> String {
        self.server
            .as_ref()
            .map(ChildGuard::logs)
            .unwrap_or_default()
    }
}

impl Drop for P11KitServer {
    fn drop(&mut self) {
        // A stopped process would sit on SIGTERM: wake everything, then end the proxies (they
        // hold no state of their own) and stop the server by its guard.
        let _ = self.thaw();
        if let Ok(remotes) = self.remotes() {
            for remote in remotes {
                if let Err(e) = remote.signal(Signal::SIGKILL) {
                    eprintln!("stopping p11-kit-remote {}: {e}", remote.pid);
                }
            }
        }
        // The ChildGuard's own drop stops the server.
        self.server.take();
    }
}
