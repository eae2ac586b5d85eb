//! `signerd status [--json]` (issue 11, Operations): the running daemon's own view through the
//! admin API: version, token, key count, sessions, workers, health, audit trail, uptime; exit
//! 0 while serving, 5 with the reason while the token is away.

use signerd_proto::notary::CreateKeyRequest;
use signerd_tests::admin::{start_signerd, AdminCli};
use signerd_tests::signerd::{Signerd, TestToken, TEST_TOKEN_LABEL};
use signerd_tests::{TestDir, TestPki};

/// Fields drop in order: signerd stops before its folder goes.
struct Setup {
    signerd: Signerd,
    cli: AdminCli,
    token: TestToken,
    dir: TestDir,
    _pki: TestPki,
}

fn setup(name: &str) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let token = TestToken::create(dir.path()).unwrap();
    let (signerd, socket) = start_signerd(dir.path(), &token, &pki, "").unwrap();
    let cli = AdminCli::new(&socket, &dir.subdir("cli").unwrap()).unwrap();
    Setup {
        signerd,
        cli,
        token,
        dir,
        _pki: pki,
    }
}

#[tokio::test]
async fn status_shows_the_running_daemon_and_a_pulled_token() {
    let s = setup("status");
    let mut c = s.signerd.clients().await;
    for role in ["timestamp", "snapshot"] {
        c.keys
            .create_key(CreateKeyRequest {
                algorithm: "ecdsa".into(),
                gun: "example.com/status".into(),
                role: role.into(),
            })
            .await
            .unwrap();
    }

    let screen = s.cli.run_ok(&["status"]);
    assert!(
        screen.starts_with(&format!("signerd    {}", env!("CARGO_PKG_VERSION"))),
        "{screen}"
    );
    assert!(screen.contains("health     SERVING\n"), "{screen}");
    assert!(
        screen.contains(&format!("token      '{TEST_TOKEN_LABEL}' slot ")),
        "{screen}"
    );
    assert!(screen.contains(": up, 2 key(s)\n"), "{screen}");
    assert!(screen.contains("sessions   "), "{screen}");
    assert!(
        screen.contains("audit      no audit file (records go to the operational log): writable"),
        "{screen}"
    );

    let json = s.cli.json(&["status"]);
    assert_eq!(json["serving"], true, "{json}");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"), "{json}");
    assert_eq!(json["token"]["label"], TEST_TOKEN_LABEL, "{json}");
    assert_eq!(json["token"]["up"], true, "{json}");
    assert_eq!(json["token"]["key_count"], 2, "{json}");
    assert!(
        json["token"]["sessions_open"].as_u64().unwrap() >= 1,
        "{json}"
    );
    assert!(json["workers"]["workers"].as_u64().unwrap() >= 1, "{json}");
    assert!(
        json["workers"]["queue_capacity"].as_u64().unwrap()
            >= json["workers"]["workers"].as_u64().unwrap(),
        "{json}"
    );
    assert!(json["uptime_secs"].is_u64(), "{json}");

    // The token goes away: status still answers, says so, and exits 5.
    let token_dir = s.token.softhsm.token_dir();
    let away = s.dir.path().join("token-away");
    std::fs::rename(&token_dir, &away).unwrap();
    std::fs::create_dir(&token_dir).unwrap();
    let down = s.cli.run_code(&["status"], 5);
    assert!(down.contains("health     NOT_SERVING\n"), "{down}");
    assert!(down.contains(": DOWN: "), "{down}");
    assert!(down.contains("signerd is not serving"), "{down}");
    let out = s.cli.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(5));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["serving"], false, "{json}");
    assert_eq!(json["token"]["up"], false, "{json}");
    assert!(
        !json["token"]["error"].as_str().unwrap().is_empty(),
        "{json}"
    );
    std::fs::remove_dir(&token_dir).unwrap();
    std::fs::rename(&away, &token_dir).unwrap();
}
