//! Processes that see a system path of the test's own: the notary CLI loads `libykcs11.so`
//! from fixed system folders only, so a test gives it one in a private mount namespace
//! (`unshare --mount`, util-linux) where a folder of the test's own is bind-mounted over
//! `/usr/local/lib` and every earlier place the CLI looks is masked. The real system is never
//! written, and tests need no lock between them.
//!
//! `unshare` makes the new namespace's mounts private, so nothing propagates back. As root
//! (the tests' normal case) plain `--mount` is used; otherwise `--map-root-user` adds a user
//! namespace that allows the bind mounts.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the notary CLI finds the shim inside the namespace (the last path it searches).
pub const YKCS11_LINK: &str = "/usr/local/lib/libykcs11.so";
/// The folder bind-mounted from the test's own.
pub const PRIVATE_FOLDER: &str = "/usr/local/lib";
/// The paths the notary CLI searches before [`YKCS11_LINK`]; any that exists is masked (by
/// `/dev/null`, which fails to load, so the CLI moves on) inside the namespace.
pub const EARLIER_YKCS11_PATHS: [&str; 5] = [
    "/usr/lib/libykcs11.so",
    "/usr/lib/libykcs11.so.1",
    "/usr/lib64/libykcs11.so",
    "/usr/lib64/libykcs11.so.1",
    "/usr/lib/x86_64-linux-gnu/libykcs11.so",
];

/// A folder of the test's own that stands in for `/usr/local/lib` in the processes started
/// through [`PrivateLib::command`].
#[derive(Debug, Clone)]
pub struct PrivateLib {
    folder: PathBuf,
    net: bool,
}

impl PrivateLib {
    /// Creates `dir/usr-local-lib` (empty) as the private `/usr/local/lib`.
    pub fn new(dir: &Path) -> io::Result<PrivateLib> {
        if !Path::new(PRIVATE_FOLDER).is_dir() {
            return Err(io::Error::other(format!(
                "{PRIVATE_FOLDER} does not exist: the private mount needs it as a mount point \
                 (mkdir -p {PRIVATE_FOLDER})"
            )));
        }
        let folder = dir.join("usr-local-lib");
        std::fs::create_dir_all(&folder)?;
        Ok(PrivateLib { folder, net: false })
    }

    /// Also gives the processes a network namespace of their own, with only loopback up: fixed
    /// ports (e.g. a document's `127.0.0.1:4443`) cannot meet another test's. A PID namespace
    /// comes with it, so that everything started inside dies with the process that
    /// [`Self::command`] starts.
    pub fn with_private_network(mut self) -> PrivateLib {
        self.net = true;
        self
    }

    /// The folder mounted over `/usr/local/lib` (what `signerd shim install` writes there
    /// lands here).
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// `program` run inside a fresh private namespace; add its arguments and environment as
    /// for a plain [`Command`]. The environment must keep `/usr/bin` (or `/bin`) in `PATH`,
    /// where `unshare` and `mount` are.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("unshare");
        // --kill-child: stopping `unshare` by its PID (e.g. on a timeout) stops the program too.
        command.args(["--mount", "--kill-child"]);
        if !nix::unistd::geteuid().is_root() {
            command.arg("--map-root-user");
        }
        if self.net {
            command.args(["--net", "--pid"]);
        }
        command
            .args(["--", "/bin/sh", "-c", &self.script(), "private-lib"])
            .arg(&self.folder)
            .arg(program);
        command
    }

    /// The shell run first inside the namespace: the mounts, then `exec` of the program.
    fn script(&self) -> String {
        let net = if self.net { "ip link set lo up\n" } else { "" };
        format!(
            "set -e\n\
             PATH=\"$PATH:/usr/sbin:/usr/bin:/sbin:/bin\"\n\
             mount --bind \"$1\" {PRIVATE_FOLDER}\n\
             for p in {earlier}; do\n\
             \x20 if [ -e \"$p\" ]; then mount --bind /dev/null \"$p\"; fi\n\
             done\n\
             {net}\
             shift\n\
             exec \"$@\"\n",
            earlier = EARLIER_YKCS11_PATHS.join(" "),
        )
    }
}
