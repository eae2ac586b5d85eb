//! A short life cycle under `valgrind --leak-check=full`.

use super::*;
use crate::exports::call_everything;

/// A short life cycle, run alone under valgrind by the next test.
#[test]
fn short_run_for_valgrind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    signerd_down(dir.path(), &dir.path().join("shim.log"));
    for _ in 0..2 {
        let m = Module::load();
        let f = m.list;
        // SAFETY: null pointers, or pointers to live locals.
        unsafe {
            assert_eq!(f.C_Initialize.unwrap()(null_mut()), CKR_OK);
            let mut count: CK_ULONG = 0;
            assert_eq!(
                f.C_GetSlotList.unwrap()(CK_FALSE, null_mut(), &mut count),
                CKR_OK
            );
            let mut token = CK_TOKEN_INFO::default();
            assert_eq!(
                f.C_GetTokenInfo.unwrap()(0, &mut token),
                CKR_TOKEN_NOT_PRESENT
            );
            let _ = call_everything(f, 3);
            assert_eq!(f.C_Finalize.unwrap()(null_mut()), CKR_OK);
        }
    }
}

#[test]
fn no_leaks_or_memory_errors_under_valgrind() {
    if std::env::var_os("SHIM_UNDER_VALGRIND").is_some() {
        return;
    }
    let valgrind = Path::new("/usr/bin/valgrind");
    assert!(
        valgrind.exists(),
        "valgrind is needed for this test: apt-get install -y valgrind"
    );
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("valgrind.log");
    let out = std::process::Command::new(valgrind)
        .current_dir(dir.path())
        .arg("--leak-check=full")
        .arg("--errors-for-leak-kinds=definite,indirect")
        .arg("--error-exitcode=99")
        .arg(format!("--log-file={}", report.display()))
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "valgrind::short_run_for_valgrind",
            "--test-threads=1",
        ])
        .env("SHIM_UNDER_VALGRIND", "1")
        .env("PKCS11_SHIM_SO", shim_path())
        .output()
        .expect("run valgrind");
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("definitely lost")
                || l.contains("indirectly lost")
                || l.contains("possibly lost")
                || l.contains("ERROR SUMMARY")
        })
        .collect();
    eprintln!("valgrind summary:\n{}", summary.join("\n"));
    assert!(
        out.status.success(),
        "valgrind found errors ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        text.contains("ERROR SUMMARY: 0 errors"),
        "valgrind report:\n{text}"
    );
}
