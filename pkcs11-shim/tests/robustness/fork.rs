//! `fork` after `C_Initialize`.

use super::*;

/// A forked child inherits an initialized shim without its I/O thread: it gets
/// `CKR_CRYPTOKI_NOT_INITIALIZED` until it calls `C_Initialize` itself, which then works.
#[test]
fn a_forked_child_initializes_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    signerd_down(dir.path(), &dir.path().join("shim.log"));
    let m = Module::load();
    let f = m.list;
    // SAFETY: null arguments, pointers to live locals; the child only calls the shim and
    // `_exit`s (nothing else runs in this process meanwhile: SERIAL is held).
    unsafe {
        assert_eq!(f.C_Initialize.unwrap()(null_mut()), CKR_OK);
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut info = CK_INFO::default();
            let ok = f.C_GetInfo.unwrap()(&mut info) == CKR_CRYPTOKI_NOT_INITIALIZED
                && f.C_Initialize.unwrap()(null_mut()) == CKR_OK
                && f.C_GetInfo.unwrap()(&mut info) == CKR_OK
                && f.C_Finalize.unwrap()(null_mut()) == CKR_OK;
            libc::_exit(if ok { 0 } else { 1 });
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child's PKCS#11 calls went wrong (status {status})"
        );
        let mut info = CK_INFO::default();
        assert_eq!(
            f.C_GetInfo.unwrap()(&mut info),
            CKR_OK,
            "the parent is untouched"
        );
        assert_eq!(f.C_Finalize.unwrap()(null_mut()), CKR_OK);
    }
}
