//! The notary CLI with its own trust dir, config and HOME, so nothing touches `~/.notary`.

use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;

use super::NOTARY_BIN;
use crate::namespace::PrivateLib;
use crate::process::output_with_timeout;

/// Passphrase for every key the test clients make or import (given through the
/// `NOTARY_*_PASSPHRASE` variables).
pub const CLIENT_PASSPHRASE: &str = "signerd-test-passphrase";

/// Longest one notary CLI command may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// One notary CLI user: a trust dir, a `config.json` naming the server and its CA, and a HOME,
/// all under its own directory.
///
/// Every invocation's stdout/stderr stay in `<dir>/runs/NNN-<command>.{stdout,stderr}`.
#[derive(Debug)]
pub struct NotaryClient {
    dir: PathBuf,
    trust_dir: PathBuf,
    home: PathBuf,
    config: PathBuf,
    runs: PathBuf,
    run_count: Cell<u32>,
    extra_env: Vec<(String, String)>,
    namespace: Option<PrivateLib>,
}

impl NotaryClient {
    /// Sets up a client in `dir` for the server at `server_url`, trusting `server_ca` for it.
    pub fn new(dir: &Path, server_url: &str, server_ca: &Path) -> io::Result<Self> {
        let trust_dir = dir.join("trust");
        let home = dir.join("home");
        let runs = dir.join("runs");
        for path in [&trust_dir, &home, &runs] {
            std::fs::create_dir_all(path)?;
        }
        let config = dir.join("config.json");
        let document = json!({
            "trust_dir": trust_dir,
            "remote_server": { "url": server_url, "root_ca": server_ca },
        });
        std::fs::write(&config, serde_json::to_vec_pretty(&document)?)?;
        Ok(Self {
            dir: dir.to_owned(),
            trust_dir,
            home,
            config,
            runs,
            run_count: Cell::new(0),
            extra_env: Vec::new(),
            namespace: None,
        })
    }

    /// Adds environment variables to every notary command of this client (e.g. the PKCS#11
    /// shim's `SIGNERD_SOCKET` and `SIGNERD_SHIM_DISABLE=0`).
    pub fn with_env(mut self, vars: &[(String, String)]) -> Self {
        self.extra_env.extend(vars.iter().cloned());
        self
    }

    /// Runs every notary command of this client in `namespace`, e.g. a
    /// [`crate::shim::YkcsLink`]'s, where `/usr/local/lib/libykcs11.so` is signerd's shim.
    pub fn in_namespace(mut self, namespace: &PrivateLib) -> Self {
        self.namespace = Some(namespace.clone());
        self
    }

    /// The client's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trust dir (keys under `private/`, cached metadata under `tuf/<gun>/metadata/`).
    pub fn trust_dir(&self) -> &Path {
        &self.trust_dir
    }

    /// The `config.json` passed with `-c`.
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// A `notary -c <config>` command with a clean environment (HOME in the client's dir, the
    /// passphrases set), ready for arguments.
    ///
    /// `SIGNERD_SHIM_DISABLE=1` keeps this client off signerd's PKCS#11 shim should one be
    /// linked as `libykcs11.so`: the notary CLI then finds no YubiKey and uses its file store.
    /// [`Self::with_env`] turns the shim on for one client.
    pub fn command(&self) -> Command {
        let mut command = match &self.namespace {
            Some(namespace) => namespace.command(NOTARY_BIN),
            None => Command::new(NOTARY_BIN),
        };
        command
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/bin:/bin")
            .env("NOTARY_ROOT_PASSPHRASE", CLIENT_PASSPHRASE)
            .env("NOTARY_TARGETS_PASSPHRASE", CLIENT_PASSPHRASE)
            .env("NOTARY_SNAPSHOT_PASSPHRASE", CLIENT_PASSPHRASE)
            .env("NOTARY_DELEGATION_PASSPHRASE", CLIENT_PASSPHRASE)
            .env("SIGNERD_SHIM_DISABLE", "1")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .arg("-c")
            .arg(&self.config);
        command
    }

    /// Runs `notary <args>` with stdin closed and returns its output, whatever the exit status.
    ///
    /// # Panics
    /// When notary cannot be started or runs longer than two minutes: the test cannot go on.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_inner(args, None)
    }

    /// Runs `notary <args>` with stdin read from `stdin` (for `verify`).
    ///
    /// # Panics
    /// As [`Self::run`].
    pub fn run_with_stdin(&self, args: &[&str], stdin: &Path) -> Output {
        self.run_inner(args, Some(stdin))
    }

    /// Runs `notary <args>` and returns stdout.
    ///
    /// # Panics
    /// When the exit status is not 0, with the command, stdout and stderr in the message.
    pub fn run_ok(&self, args: &[&str]) -> String {
        expect_success(args, &self.run(args))
    }

    /// Runs `notary <args>` with stdin from `stdin` and returns stdout.
    ///
    /// # Panics
    /// As [`Self::run_ok`].
    pub fn run_ok_with_stdin(&self, args: &[&str], stdin: &Path) -> String {
        expect_success(args, &self.run_with_stdin(args, stdin))
    }

    /// Runs `notary <args>`, expecting it to fail, and returns stdout followed by stderr.
    ///
    /// # Panics
    /// When the exit status is 0.
    pub fn run_err(&self, args: &[&str]) -> String {
        expect_failure(args, &self.run(args))
    }

    /// Runs `notary <args>` with stdin from `stdin`, expecting it to fail; returns stdout then
    /// stderr.
    ///
    /// # Panics
    /// When the exit status is 0.
    pub fn run_err_with_stdin(&self, args: &[&str], stdin: &Path) -> String {
        expect_failure(args, &self.run_with_stdin(args, stdin))
    }

    /// Runs `notary <args>`, keeping its output under `runs/`.
    fn run_inner(&self, args: &[&str], stdin: Option<&Path>) -> Output {
        let n = self.run_count.get() + 1;
        self.run_count.set(n);
        let label: String = args
            .iter()
            .take(2)
            .flat_map(|a| a.chars())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        let out_base = self.runs.join(format!("{n:03}-{label}"));
        let mut command = self.command();
        command.args(args);
        match output_with_timeout(command, stdin, &out_base, COMMAND_TIMEOUT) {
            Ok(output) => output,
            Err(e) => panic!("notary {args:?} in {}: {e}", self.dir.display()),
        }
    }
}

/// Stdout of a successful command, or a panic showing everything.
fn expect_success(args: &[&str], output: &Output) -> String {
    if !output.status.success() {
        panic!(
            "notary {args:?} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stdout then stderr of a failed command, or a panic if it succeeded.
fn expect_failure(args: &[&str], output: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        panic!("notary {args:?} succeeded but was expected to fail\n{text}");
    }
    text
}

/// One row of `notary list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTarget {
    /// Target name.
    pub name: String,
    /// Hex SHA-256 of the target.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Role that signed it (`targets`, `targets/releases`).
    pub role: String,
}

/// Parses the table `notary list` prints (`NAME DIGEST SIZE (BYTES) ROLE`); an empty repository
/// ("No targets present ...") gives no rows.
pub fn parse_target_list(stdout: &str) -> Vec<ListedTarget> {
    table_rows(stdout)
        .into_iter()
        .filter_map(|fields| match fields.as_slice() {
            [name, digest, size, role] => Some(ListedTarget {
                name: (*name).to_owned(),
                digest: (*digest).to_owned(),
                size: size.parse().ok()?,
                role: (*role).to_owned(),
            }),
            _ => None,
        })
        .collect()
}

/// One row of `notary key list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedKey {
    /// Role (`root`, `targets`, `targets/releases`, ...).
    pub role: String,
    /// GUN, empty for root and delegation keys.
    pub gun: String,
    /// Key ID.
    pub key_id: String,
    /// Where it is stored (a directory, or `yubikey`).
    pub location: String,
}

/// Parses the table `notary key list` prints (`ROLE GUN KEY ID LOCATION`; GUN may be blank).
pub fn parse_key_list(stdout: &str) -> Vec<ListedKey> {
    table_rows(stdout)
        .into_iter()
        .filter_map(|fields| {
            let (role, gun, key_id, location) = match fields.as_slice() {
                [role, gun, key_id, location] => (*role, *gun, *key_id, *location),
                [role, key_id, location] => (*role, "", *key_id, *location),
                _ => return None,
            };
            Some(ListedKey {
                role: role.to_owned(),
                gun: gun.to_owned(),
                key_id: key_id.to_owned(),
                location: location.to_owned(),
            })
        })
        .collect()
}

/// Whitespace-split rows after the `----` underline of a notary table.
fn table_rows(stdout: &str) -> Vec<Vec<&str>> {
    stdout
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("----"))
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| !fields.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_lists() {
        let out = "NAME    DIGEST                                                              SIZE (BYTES)    ROLE\n\
                   ----    ------                                                              ------------    ----\n\
                   v1      5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03    6               targets\n\
                   v3      6aeaf1d3040af2056b57b00a74ad5cb426309aa94010a82881bd583c92b1f6ed    10              targets/releases\n";
        let rows = parse_target_list(out);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "v1");
        assert_eq!(rows[0].size, 6);
        assert_eq!(rows[1].role, "targets/releases");
        assert!(parse_target_list("\nNo targets present in this repository.\n\n").is_empty());
    }

    #[test]
    fn parses_key_lists() {
        let out = "\nROLE       GUN                     KEY ID                                                              LOCATION\n\
                   ----       ---                     ------                                                              --------\n\
                   root                               c0a1e879e0aa32bf98b60e628fa73689e2a57bb1f6902aec907d09a7fb5c85e6    /tmp/x/private\n\
                   targets    example.com/test/app    a8b46c1cb4c9978df6330a70be41cb035eb7a539794c33046abc70750ca0bd64    /tmp/x/private\n\n";
        let keys = parse_key_list(out);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].role, "root");
        assert_eq!(keys[0].gun, "");
        assert_eq!(keys[1].gun, "example.com/test/app");
        assert_eq!(keys[1].location, "/tmp/x/private");
    }
}
