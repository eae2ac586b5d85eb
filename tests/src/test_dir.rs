//! A per-test temporary directory, kept for inspection when a test fails and
//! `SIGNERD_KEEP_TEST_DIRS` asks for it.

use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Environment variable: `1` keeps the directories of failed tests, `always` keeps them all.
///
/// "Failed" means panicking while the [`TestDir`] is dropped; a test that fails by returning
/// `Err` does not panic there, so use `always` to keep its directory.
pub const KEEP_ENV: &str = "SIGNERD_KEEP_TEST_DIRS";

/// A temporary directory owned by one test, removed on drop unless [`KEEP_ENV`] says otherwise.
///
/// Declare it before the processes that write into it, so that they are stopped (dropped) first.
#[derive(Debug)]
pub struct TestDir {
    dir: Option<TempDir>,
}

impl TestDir {
    /// Creates a fresh directory whose name starts with `signerd-<name>-`.
    pub fn new(name: &str) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("signerd-{name}-"))
            .tempdir()?;
        Ok(Self { dir: Some(dir) })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        match &self.dir {
            Some(dir) => dir.path(),
            // `dir` is only taken in `drop`, after which no method can be called.
            None => unreachable!("TestDir used after drop"),
        }
    }

    /// Creates (if needed) and returns the subdirectory `name`.
    pub fn subdir(&self, name: &str) -> io::Result<PathBuf> {
        let path = self.path().join(name);
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let keep = match std::env::var(KEEP_ENV).as_deref() {
            Ok("always") => true,
            Ok("1") => std::thread::panicking(),
            _ => false,
        };
        if let Some(dir) = self.dir.take() {
            if keep {
                let path = dir.keep();
                eprintln!("{KEEP_ENV}: kept test directory {}", path.display());
            }
            // Otherwise TempDir's own drop removes it.
        }
    }
}
