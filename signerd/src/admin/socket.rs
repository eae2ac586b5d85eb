//! The admin API's Unix socket: made mode 0660 (the peer's uid/gid is checked on every request
//! too, so the moment between bind and chmod gives nothing away), a stale socket file left by a
//! crash replaced, a live one (another signerd) refused, anything else at the path left alone.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// The socket file, removed when dropped.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
}

impl SocketFile {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the admin socket at `path`. Must run inside the tokio runtime.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), String> {
    let what = |e: std::io::Error| format!("admin socket {}: {e}", path.display());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            format!(
                "cannot create the folder of admin socket {}: {e}",
                path.display()
            )
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(format!(
                        "admin socket {} is in use by another process (another signerd?); stop it or set another admin.socket",
                        path.display()
                    ))
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    tracing::info!(socket = %path.display(), "replacing a stale admin socket");
                    std::fs::remove_file(path).map_err(what)?;
                }
                Err(e) => return Err(what(e)),
            }
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a socket; remove it or set another admin.socket",
                path.display()
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(what(e)),
    }
    let listener = UnixListener::bind(path).map_err(what)?;
    let file = SocketFile {
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(what)?;
    Ok((listener, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_sockets_are_replaced_live_ones_and_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/admin.sock");
        let (listener, file) = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let err = bind(&path).unwrap_err();
        assert!(err.contains("in use by another process"), "{err}");
        // A crash leaves the file behind with nobody listening.
        drop(listener);
        std::mem::forget(file);
        let (_listener, _file) = bind(&path).expect("a stale socket is replaced");

        let plain = dir.path().join("plain");
        std::fs::write(&plain, "keep me").unwrap();
        let err = bind(&plain).unwrap_err();
        assert!(err.contains("is not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&plain).unwrap(), "keep me");
    }
}
