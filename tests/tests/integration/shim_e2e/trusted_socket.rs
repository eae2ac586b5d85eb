//! The shim trusts only the real signerd: before it sends anything on the admin socket it
//! checks the uid of the process serving it (SO_PEERCRED), so a socket someone else serves is
//! refused with a clear error, and not one byte (no PIN, no key) reaches it.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use signerd_tests::ChildGuard;

use super::*;

/// A Unix socket server run as `nobody` (util-linux `setpriv`) that records every byte it is
/// sent in `received`.
const FAKE_SERVER: &str = r#"
import os, socket, sys
path, received = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(16)
open(path + ".ready", "w").close()
while True:
    conn, _ = server.accept()
    while True:
        data = conn.recv(65536)
        if not data:
            break
        with open(received, "ab") as f:
            f.write(data)
    conn.close()
"#;

fn fake_signerd(dir: &Path) -> io::Result<(ChildGuard, PathBuf, PathBuf)> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    let socket = dir.join("admin.sock");
    let received = dir.join("received");
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["/usr/bin/python3", "-c", FAKE_SERVER])
        .arg(&socket)
        .arg(&received)
        .current_dir("/");
    let child = ChildGuard::spawn("fake-signerd", command, dir)?;
    let ready = dir.join("admin.sock.ready");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        if std::time::Instant::now() > deadline {
            return Err(io::Error::other("the fake signerd did not start"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, socket, received))
}

/// The token the shim shows, or the code it answers.
fn token_rv(pkcs11: &Pkcs11) -> Result<String, CkError> {
    let slot = pkcs11.get_all_slots()?[0];
    pkcs11.get_token_info(slot).map(|t| t.label().to_owned())
}

#[test]
fn a_socket_served_by_another_uid_is_refused_before_anything_is_sent() -> io::Result<()> {
    let dir = TestDir::new("shim-trusted-socket")?;
    // nobody must reach its folder (tempfile makes the test's own 0700).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
    let (mut fake, socket, received) = fake_signerd(&dir.subdir("fake")?)?;
    // Owned by root, served by nobody: the default (root or the socket's owner) refuses it.
    std::os::unix::fs::chown(&socket, Some(0), Some(0))?;
    let log = dir.path().join("shim.log");
    std::env::set_var("SIGNERD_SOCKET", &socket);
    std::env::set_var("SIGNERD_SHIM_LOG", &log);
    std::env::set_var("SIGNERD_SHIM_TIMEOUT_SECS", "3");
    std::env::remove_var("SIGNERD_SERVER_UID");
    let pkcs11 = Pkcs11::new(shim_module()).expect("load the shim");
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    assert!(
        pkcs11.get_slots_with_token().expect("slots").is_empty(),
        "no token behind an untrusted socket"
    );
    match token_rv(&pkcs11) {
        Err(CkError::Pkcs11(RvError::TokenNotPresent, _)) => {}
        other => panic!("an untrusted socket must show no token: {other:?}"),
    }
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("is served by uid 65534, not root or the socket's owner (uid 0)")
            && text.contains("not the real signerd"),
        "the log says why:\n{text}"
    );
    pkcs11.finalize().expect("C_Finalize");

    // Its own socket file, but the config names the uid signerd runs as: refused too.
    std::os::unix::fs::chown(&socket, Some(65534), Some(65534))?;
    std::env::set_var("SIGNERD_SERVER_UID", "0");
    let pkcs11 = Pkcs11::new(shim_module()).expect("load the shim");
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    assert!(pkcs11.get_slots_with_token().expect("slots").is_empty());
    pkcs11.finalize().expect("C_Finalize");
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("is served by uid 65534, not uid 0"),
        "the log says why:\n{text}"
    );

    // The fake server was reached (a connection was made) but read nothing at all.
    let sent = std::fs::read(&received).unwrap_or_default();
    assert!(
        sent.is_empty(),
        "{} bytes reached the untrusted socket",
        sent.len()
    );
    fake.stop()?;
    Ok(())
}
