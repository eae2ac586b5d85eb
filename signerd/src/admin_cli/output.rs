//! How the admin CLI prints: aligned tables for people, `--json` for scripts, files written
//! atomically.

use std::io::Write as _;
use std::path::Path;

use signerd_proto::admin as pb;

use super::{CliError, Exit};

/// A table with a header row, printed with aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        text.trim_end().to_owned()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

/// Prints a JSON value, pretty.
pub fn print_json(value: &serde_json::Value) {
    // Serializing a serde_json::Value cannot fail.
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// The TUF key algorithm name of an object's key type.
pub fn algorithm(key_type: i32) -> &'static str {
    match pb::KeyType::try_from(key_type) {
        Ok(pb::KeyType::EcP256) => "ecdsa",
        Ok(pb::KeyType::Ed25519) => "ed25519",
        Ok(pb::KeyType::Rsa) => "rsa",
        _ => "-",
    }
}

/// Writes `contents` to `path` through a temporary file in the same folder, so a reader never
/// sees half a file; `mode` applies to a new file, an existing file keeps its mode.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let fail = |e: std::io::Error| {
        CliError::new(
            Exit::BadInput,
            format!("cannot write {}: {e}", path.display()),
        )
    };
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(mode);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.signerd-tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

/// A file name for `gun` (slashes and colons made safe).
pub fn file_stem(gun: &str) -> String {
    gun.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(
            file_stem("localhost:5000/org/app"),
            "localhost_5000_org_app"
        );
    }

    #[test]
    fn atomic_write_keeps_an_existing_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        write_atomically(&path, b"{}", 0o600).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, b"{\"a\":1}", 0o600).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}");
    }
}
