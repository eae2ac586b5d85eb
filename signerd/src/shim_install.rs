//! `signerd shim install|uninstall`: puts the PKCS#11 shim (`libpkcs11_shim.so`) where the
//! notary CLI looks for a YubiKey library, as `libykcs11.so`, so `notary` keeps its root keys in
//! signerd's token.
//!
//! The Debian notary CLI (0.7.0) loads the first of [`NOTARY_SEARCH_PATHS`] that exists. The
//! default target, `/usr/local/lib/libykcs11.so`, is the last of them, so an earlier one (a real
//! ykcs11) would win: install says so.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Where the notary CLI looks for `libykcs11.so`, in the order it looks.
pub const NOTARY_SEARCH_PATHS: [&str; 6] = [
    "/usr/lib/libykcs11.so",
    "/usr/lib/libykcs11.so.1",
    "/usr/lib64/libykcs11.so",
    "/usr/lib64/libykcs11.so.1",
    "/usr/lib/x86_64-linux-gnu/libykcs11.so",
    "/usr/local/lib/libykcs11.so",
];

/// The link `signerd shim install` makes without `--prefix`.
pub const DEFAULT_LINK: &str = "/usr/local/lib/libykcs11.so";

/// The file name of the built shim.
pub const SHIM_FILE: &str = "libpkcs11_shim.so";

/// `signerd shim ...`.
#[derive(Debug, Subcommand)]
pub enum ShimCommand {
    /// Link the PKCS#11 shim as libykcs11.so where the notary CLI loads it.
    Install(InstallArgs),
    /// Remove that link.
    Uninstall(UninstallArgs),
}

/// `signerd shim install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Put the link in DIR (DIR/libykcs11.so) instead of /usr/local/lib.
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
    /// The shim to link [default: libpkcs11_shim.so beside the signerd binary].
    #[arg(long, value_name = "FILE")]
    module: Option<PathBuf>,
    /// Replace a libykcs11.so that is not a link to signerd's shim.
    #[arg(long)]
    force: bool,
}

/// `signerd shim uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Remove DIR/libykcs11.so instead of /usr/local/lib/libykcs11.so.
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
    /// Remove it even if it is not a link to signerd's shim.
    #[arg(long)]
    force: bool,
}

/// Runs `signerd shim ...`, printing what it did.
pub fn run(command: ShimCommand) -> ExitCode {
    let result = match command {
        ShimCommand::Install(a) => find_module(a.module.as_deref())
            .and_then(|module| install(&module, a.prefix.as_deref(), a.force)),
        ShimCommand::Uninstall(a) => uninstall(a.prefix.as_deref(), a.force),
    };
    match result {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("signerd shim: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The shim to link: `explicit`, or `libpkcs11_shim.so` beside the running binary.
pub fn find_module(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let candidate = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot tell where signerd runs from: {e}"))?
            .parent()
            .map(|d| d.join(SHIM_FILE))
            .ok_or("signerd's binary has no folder")?,
    };
    let absolute = std::fs::canonicalize(&candidate).map_err(|e| {
        format!(
            "the shim {} is not there ({e}); build it (cargo build -p pkcs11-shim) or pass --module",
            candidate.display()
        )
    })?;
    Ok(absolute)
}

/// Where the link goes.
fn link_path(prefix: Option<&Path>) -> PathBuf {
    match prefix {
        Some(dir) => dir.join("libykcs11.so"),
        None => PathBuf::from(DEFAULT_LINK),
    }
}

/// Whether `link` is a symbolic link to a file named like the shim.
fn links_to_a_shim(link: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(link).ok()?;
    (target.file_name()? == SHIM_FILE).then_some(target)
}

/// Links `module` as `libykcs11.so` (in `prefix`, or [`DEFAULT_LINK`]); returns what to print.
pub fn install(module: &Path, prefix: Option<&Path>, force: bool) -> Result<Vec<String>, String> {
    let link = link_path(prefix);
    let mut said = Vec::new();
    if std::fs::symlink_metadata(&link).is_ok() {
        match links_to_a_shim(&link) {
            Some(target) if target == module => {
                said.push(format!(
                    "{} already links to {}",
                    link.display(),
                    module.display()
                ));
                return Ok(said);
            }
            Some(_) => {}
            None if !force => {
                return Err(format!(
                    "{} exists and is not a link to signerd's shim; move it away or pass --force",
                    link.display()
                ))
            }
            None => {}
        }
        std::fs::remove_file(&link)
            .map_err(|e| format!("cannot replace {}: {e}", link.display()))?;
        said.push(format!("removed the old {}", link.display()));
    }
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::os::unix::fs::symlink(module, &link).map_err(|e| {
        format!(
            "cannot link {} -> {}: {e} (run as root for system folders, or use --prefix)",
            link.display(),
            module.display()
        )
    })?;
    said.push(format!("linked {} -> {}", link.display(), module.display()));
    if prefix.is_none() {
        for earlier in NOTARY_SEARCH_PATHS
            .iter()
            .take_while(|p| **p != DEFAULT_LINK)
            .filter(|p| std::fs::symlink_metadata(p).is_ok())
        {
            said.push(format!(
                "warning: {earlier} exists and the notary CLI loads it first; remove it to use signerd"
            ));
        }
        said.push(format!(
            "the notary CLI now keeps root keys in signerd's token (set SIGNERD_SOCKET for its admin socket; default {}, the dev setup's is $PWD/{})",
            signerd_vocab::DEFAULT_ADMIN_SOCKET,
            signerd_vocab::DEV_ADMIN_SOCKET
        ));
    } else {
        said.push(format!(
            "the notary CLI looks only in {}: link {} there yourself if {} is not one of them",
            NOTARY_SEARCH_PATHS.join(", "),
            link.display(),
            link.parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        ));
    }
    Ok(said)
}

/// Removes the link made by [`install`].
pub fn uninstall(prefix: Option<&Path>, force: bool) -> Result<Vec<String>, String> {
    let link = link_path(prefix);
    if std::fs::symlink_metadata(&link).is_err() {
        return Ok(vec![format!(
            "{} is not there; nothing to do",
            link.display()
        )]);
    }
    if links_to_a_shim(&link).is_none() && !force {
        return Err(format!(
            "{} is not a link to signerd's shim; left alone (pass --force to remove it anyway)",
            link.display()
        ));
    }
    std::fs::remove_file(&link).map_err(|e| format!("cannot remove {}: {e}", link.display()))?;
    Ok(vec![format!("removed {}", link.display())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_into_a_prefix_idempotently_and_uninstalls() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join(SHIM_FILE);
        std::fs::write(&module, b"not really a library").unwrap();
        let prefix = dir.path().join("lib");
        let said = install(&module, Some(&prefix), false).unwrap();
        assert!(said[0].starts_with("linked "), "{said:?}");
        let link = prefix.join("libykcs11.so");
        assert_eq!(std::fs::read_link(&link).unwrap(), module);
        let again = install(&module, Some(&prefix), false).unwrap();
        assert!(again[0].contains("already links"), "{again:?}");
        assert_eq!(
            uninstall(Some(&prefix), false).unwrap(),
            vec![format!("removed {}", link.display())]
        );
        assert!(std::fs::symlink_metadata(&link).is_err());
    }

    #[test]
    fn leaves_a_foreign_library_alone_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join(SHIM_FILE);
        std::fs::write(&module, b"shim").unwrap();
        let link = dir.path().join("libykcs11.so");
        std::fs::write(&link, b"a real ykcs11").unwrap();
        let err = install(&module, Some(dir.path()), false).unwrap_err();
        assert!(err.contains("is not a link to signerd's shim"), "{err}");
        assert!(uninstall(Some(dir.path()), false).is_err());
        assert_eq!(std::fs::read(&link).unwrap(), b"a real ykcs11");
        install(&module, Some(dir.path()), true).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), module);
    }

    #[test]
    fn a_missing_module_says_how_to_build_it() {
        let err = find_module(Some(Path::new("/nonexistent/libpkcs11_shim.so"))).unwrap_err();
        assert!(err.contains("cargo build -p pkcs11-shim"), "{err}");
    }
}
