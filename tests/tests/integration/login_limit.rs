//! The admin API's `Login` (what the PKCS#11 shim's `C_Login` asks): checked against signerd's
//! own PIN file, never the token's PIN, and rate-limited per caller: a few wrong PINs are free,
//! then the caller must wait, longer after each further failure, and attempts in the wait are
//! refused unchecked with the time to wait. Asserted by codes and messages, not by timing.

use std::time::Duration;

use signerd_proto::admin as pb;
use signerd_tests::admin::{client, start_signerd};
use signerd_tests::signerd::{TestToken, TEST_PIN};
use signerd_tests::{TestDir, TestPki};
use tonic::Code;

const LOGIN_PIN: &str = "login-pin-4711";

fn login(user: pb::UserType, pin: &str) -> pb::LoginRequest {
    pb::LoginRequest {
        user_type: user as i32,
        pin: pin.as_bytes().to_vec(),
    }
}

/// The seconds a refusal tells the caller to wait: `... try again in N s ...`.
fn retry_after(status: &tonic::Status) -> u64 {
    let message = status.message();
    let rest = message
        .split_once("try again in ")
        .unwrap_or_else(|| panic!("no retry-after in {status:?}"))
        .1;
    rest.split_once(" s")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in {status:?}"))
}

fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").unwrap().uid()
}

#[tokio::test]
async fn login_slows_down_after_failed_attempts() {
    let dir = TestDir::new("login-limit").unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let pin_file = dir.path().join("login-pin");
    std::fs::write(&pin_file, LOGIN_PIN).unwrap();
    let (signerd, socket) = start_signerd(
        &dir.subdir("signerd").unwrap(),
        &token,
        &pki,
        &format!("user_pin_file = {:?}", pin_file.display().to_string()),
    )
    .unwrap();
    let mut first = client(&socket).await;
    let mut second = client(&socket).await;

    // The right PIN works, and a success leaves nothing to wait for.
    first
        .login(login(pb::UserType::User, LOGIN_PIN))
        .await
        .unwrap();

    // The token's own PIN is not the login PIN: Login is no oracle for it. Three failures.
    let mut statuses = Vec::new();
    for pin in [TEST_PIN, "000000", "1234"] {
        statuses.push(
            first
                .login(login(pb::UserType::User, pin))
                .await
                .unwrap_err(),
        );
    }
    for status in &statuses {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().starts_with("incorrect PIN"), "{status:?}");
    }
    assert!(
        !statuses[1].message().contains("checked in"),
        "typos are free: {:?}",
        statuses[1]
    );
    let uid = my_uid();
    assert!(
        statuses[2].message().ends_with(&format!(
            "too many failed logins from uid={uid}: the next is checked in 5 s"
        )),
        "{:?}",
        statuses[2]
    );

    // Now even the right PIN is refused unchecked, on another connection of the same uid too,
    // and for the SO as for the user.
    let wait = second
        .login(login(pb::UserType::User, LOGIN_PIN))
        .await
        .unwrap_err();
    assert_eq!(wait.code(), Code::ResourceExhausted, "{wait:?}");
    assert!(
        wait.message().starts_with(&format!(
            "too many failed logins from uid={uid}: try again in "
        )),
        "{wait:?}"
    );
    let seconds = retry_after(&wait);
    assert!((1..=5).contains(&seconds), "{wait:?}");
    let so = first
        .login(login(pb::UserType::So, "anything"))
        .await
        .unwrap_err();
    assert_eq!(so.code(), Code::ResourceExhausted, "{so:?}");

    // Once the wait is over the next attempt is checked again; one more failure doubles it.
    tokio::time::sleep(Duration::from_secs(seconds) + Duration::from_millis(200)).await;
    let fourth = second
        .login(login(pb::UserType::User, "still wrong"))
        .await
        .unwrap_err();
    assert_eq!(fourth.code(), Code::PermissionDenied, "{fourth:?}");
    assert!(
        fourth.message().ends_with("the next is checked in 10 s"),
        "{fourth:?}"
    );
    let longer = first
        .login(login(pb::UserType::User, LOGIN_PIN))
        .await
        .unwrap_err();
    assert_eq!(longer.code(), Code::ResourceExhausted, "{longer:?}");
    assert!(retry_after(&longer) <= 10, "{longer:?}");

    let logs = signerd.logs();
    assert!(logs.contains("method=\"Login\""), "{logs}");
    for pin in [LOGIN_PIN, TEST_PIN, "still wrong"] {
        assert!(!logs.contains(pin), "PIN {pin} in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn without_a_login_pin_file_user_logins_are_refused_not_checked_against_the_token() {
    let dir = TestDir::new("login-no-file").unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let (_signerd, socket) =
        start_signerd(&dir.subdir("signerd").unwrap(), &token, &pki, "").unwrap();
    let mut c = client(&socket).await;
    let status = c
        .login(login(pb::UserType::User, TEST_PIN))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("set admin.user_pin_file"),
        "{status:?}"
    );
}
