//! The workspace's built files the tests run: the `signerd` binary, the shim's
//! `libpkcs11_shim.so`, and `signerd-fault-injection` (signerd built with its test-only pause
//! points, for the crash tests).
//!
//! Tests never build: `scripts/test.sh` runs `cargo build --workspace` first and passes the
//! paths in ([`SIGNERD_BIN_ENV`], [`SHIM_SO_ENV`]). Without those variables the files are taken
//! from `target/<profile>/`, beside the test binary; a missing one fails the test with the
//! command that builds it. Nothing here compares file times: a stale build is the caller's to
//! avoid, by building before testing as the script does.

use std::path::{Path, PathBuf};

/// Environment variable naming the `signerd` binary to test.
pub const SIGNERD_BIN_ENV: &str = "SIGNERD_BIN";
/// Environment variable naming the PKCS#11 shim library to test.
pub const SHIM_SO_ENV: &str = "PKCS11_SHIM_SO";
/// Environment variable naming the `signerd` binary built with `--features fault-injection`.
pub const SIGNERD_FAULT_BIN_ENV: &str = "SIGNERD_FAULT_BIN";

/// The command that builds every file the tests need.
const BUILD_COMMAND: &str = "cargo build --workspace";
/// The commands that build the fault-injection signerd, as `scripts/test.sh` runs them: built
/// apart and copied, so `target/<profile>/signerd` stays the normal build.
const FAULT_BUILD_COMMAND: &str = "cargo build -p signerd --features fault-injection && cp \
    target/debug/signerd target/debug/signerd-fault-injection";

/// The `signerd` binary: `$SIGNERD_BIN`, or `target/<profile>/signerd`.
///
/// # Panics
/// When the file is missing, saying how to build it.
pub fn signerd_bin() -> PathBuf {
    artifact(SIGNERD_BIN_ENV, "signerd", BUILD_COMMAND)
}

/// The `signerd` binary with the `fault-injection` feature (pause points in key generation):
/// `$SIGNERD_FAULT_BIN`, or `target/<profile>/signerd-fault-injection`.
///
/// # Panics
/// When the file is missing, saying how to build it.
pub fn signerd_fault_bin() -> PathBuf {
    artifact(
        SIGNERD_FAULT_BIN_ENV,
        "signerd-fault-injection",
        FAULT_BUILD_COMMAND,
    )
}

/// The shim library: `$PKCS11_SHIM_SO`, or `target/<profile>/libpkcs11_shim.so`.
///
/// # Panics
/// When the file is missing, saying how to build it. (A test build makes only the shim's
/// `rlib`; the `.so` comes from `cargo build --workspace`.)
pub fn shim_module() -> PathBuf {
    artifact(SHIM_SO_ENV, "libpkcs11_shim.so", BUILD_COMMAND)
}

/// The file `env_var` names, or `file_name` in the test binary's `target/<profile>/`;
/// `build` is the command that makes it.
fn artifact(env_var: &str, file_name: &str, build: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env_var}={} is not a file: build it with `{build}` or fix the variable",
            path.display()
        );
        return path;
    }
    let path = profile_dir().join(file_name);
    assert!(
        path.is_file(),
        "{} is missing: run `{build}` before the tests (scripts/test.sh does), or set \
         {env_var} to the file to test",
        path.display()
    );
    path
}

/// `target/<profile>/`: test binaries live in `target/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "no-such-artifact is missing: run `cargo build --workspace`")]
    fn a_missing_build_says_how_to_build_and_never_builds() {
        artifact(
            "SIGNERD_TESTS_UNSET_VARIABLE",
            "no-such-artifact",
            BUILD_COMMAND,
        );
    }

    #[test]
    fn a_file_named_by_its_variable_wins() {
        let file = tempfile::NamedTempFile::new().unwrap();
        // One process per test (nextest), so the variable is this test's own.
        std::env::set_var("SIGNERD_TESTS_ARTIFACT", file.path());
        assert_eq!(
            artifact("SIGNERD_TESTS_ARTIFACT", "signerd", BUILD_COMMAND),
            file.path()
        );
    }
}
