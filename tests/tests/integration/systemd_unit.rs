//! The shipped systemd unit, `config/signerd.service`, passes `systemd-analyze verify` (package
//! `systemd`) with its binary path pointed at the signerd the tests built, and keeps the
//! hardening the README promises.

use std::path::{Path, PathBuf};
use std::process::Command;

use signerd_tests::signerd::signerd_bin;
use signerd_tests::TestDir;

/// The unit's `ExecStart` binary, replaced by the built one for the check.
const INSTALLED_BIN: &str = "/usr/local/bin/signerd";

fn shipped_unit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/signerd.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes `text` as `<dir>/signerd.service` and runs `systemd-analyze verify` on it; returns
/// whether it passed and everything it printed (it reports unknown keys and bad values on
/// stderr but still exits 0, so a clean unit is one with nothing to say).
fn verify(dir: &Path, text: &str) -> (bool, String) {
    let unit: PathBuf = dir.join("signerd.service");
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        // Units it pulls in (network-online.target) come from the system; nothing is written.
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("systemd-analyze runs (Debian package systemd; scripts/test.sh installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn unit_for_this_build() -> String {
    let unit = shipped_unit();
    assert!(
        unit.contains(INSTALLED_BIN),
        "ExecStart runs {INSTALLED_BIN}"
    );
    unit.replace(INSTALLED_BIN, &signerd_bin().display().to_string())
}

#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    let dir = TestDir::new("systemd-unit").unwrap();
    let (ok, said) = verify(dir.path(), &unit_for_this_build());
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}

/// The check above can fail: a misspelt key and a binary that is not there are both reported.
#[test]
fn systemd_analyze_verify_reports_a_broken_unit() {
    let dir = TestDir::new("systemd-unit-broken").unwrap();
    let unit = unit_for_this_build().replace("NoNewPrivileges=", "NoNewPrivilege=");
    let (_, said) = verify(dir.path(), &unit);
    assert!(said.contains("NoNewPrivilege"), "{said}");

    let missing = dir.path().join("no-such-signerd");
    let unit = shipped_unit().replace(INSTALLED_BIN, &missing.display().to_string());
    let (ok, said) = verify(dir.path(), &unit);
    assert!(!ok && said.contains("no-such-signerd"), "{said}");
}

#[test]
fn the_unit_keeps_its_hardening() {
    let unit = shipped_unit();
    let settings: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for wanted in [
        "User=signerd",
        "LimitCORE=0",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RuntimeDirectory=signerd",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(settings.contains(&wanted), "{wanted} missing from the unit");
    }
}

/// `systemctl reload` sends SIGHUP (ExecReload): signerd keeps serving and says so.
#[tokio::test]
async fn sighup_from_systemctl_reload_leaves_signerd_serving() {
    use signerd_proto::health::HealthCheckRequest;
    use signerd_tests::signerd::{Signerd, TestToken};
    use signerd_tests::TestPki;

    let dir = TestDir::new("systemd-reload").unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let token = TestToken::create(dir.path()).unwrap();
    let mut signerd = Signerd::start(dir.path(), "signerd", &token, &pki).unwrap();
    let mut c = signerd.clients().await;
    let health = HealthCheckRequest {
        service: String::new(),
    };
    // Once a call is answered the server loop, and the signal watch with it, is running.
    c.health
        .check(health.clone())
        .await
        .expect("health answers");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(signerd.process().id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();

    // Ask after the signal has surely been handled: a signal is delivered before kill returns
    // for a process that is not blocking it, and the answer needs the process alive.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    c.health
        .check(health)
        .await
        .expect("signerd answers after SIGHUP");
    signerd.process().ensure_running().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !signerd.logs().contains("SIGHUP: policy reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no SIGHUP line:\n{}",
            signerd.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
