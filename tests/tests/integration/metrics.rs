//! Metrics (issue 11, acceptance 5): `/metrics` scraped over plain HTTP from a real signerd;
//! the request counters match the calls made, per method and code (a PERMISSION_DENIED from a
//! policy rule and a NOT_FOUND among them), and `signerd_token_up` follows a token pulled away
//! (its SoftHSM folder moved) and put back.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use signerd_proto::health::health_check_response::ServingStatus;
use signerd_proto::health::HealthCheckRequest;
use signerd_proto::notary::{CreateKeyRequest, KeyId, SignatureRequest};
use signerd_tests::signerd::{Clients, Signerd, TestToken};
use signerd_tests::{free_port, TestDir, TestPki};
use tonic::Code;

/// notary-server's certificate may make, read and use keys, not delete them.
const RULES: &str = r#"
[[policy]]
name = "no-delete"
port = "notary"
subjects = ["CN=notary-server-client"]
operations = ["create", "info", "sign"]
"#;

/// Fields drop in order: signerd stops before its folder goes.
struct Setup {
    signerd: Signerd,
    metrics: SocketAddr,
    token: TestToken,
    dir: TestDir,
    _pki: TestPki,
}

fn setup(name: &str) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let token = TestToken::create(dir.path()).unwrap();
    let config = dir.path().join("signerd.toml");
    std::fs::write(&config, RULES).unwrap();
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let signerd = Signerd::start_with(
        dir.path(),
        "signerd",
        &token,
        &pki,
        &[
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen",
            &metrics.to_string(),
        ],
    )
    .unwrap();
    Setup {
        signerd,
        metrics,
        token,
        dir,
        _pki: pki,
    }
}

/// `GET path` over HTTP/1.1; the status line and the body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("metrics at {addr}: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// One scrape of `/metrics`.
fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}\n{body}");
    body
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn requests(text: &str, method: &str, code: &str) -> f64 {
    sample(
        text,
        &format!(r#"signerd_requests_total{{port="notary",method="{method}",code="{code}"}}"#),
    )
    .unwrap_or(0.0)
}

async fn health(c: &mut Clients) -> i32 {
    c.health
        .check(HealthCheckRequest {
            service: "grpc.health.v1.Health.Signer".into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(ServingStatus::Unknown as i32)
}

fn key_id(id: &str) -> Option<KeyId> {
    Some(KeyId { id: id.into() })
}

#[tokio::test]
async fn counters_match_the_calls_and_token_up_follows_a_pulled_token() {
    let s = setup("metrics-scrape");
    let mut c = s.signerd.clients().await;
    let before = scrape(s.metrics);
    assert_eq!(sample(&before, "signerd_token_up"), Some(1.0), "{before}");
    assert!(
        before.contains(r#"signerd_build_info{version=""#),
        "{before}"
    );

    let mut ids = Vec::new();
    for role in ["timestamp", "snapshot"] {
        let key = c
            .keys
            .create_key(CreateKeyRequest {
                algorithm: "ecdsa".into(),
                gun: "example.com/metrics".into(),
                role: role.into(),
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(key.key_info.unwrap().key_id.unwrap().id);
    }
    for n in 0..3u8 {
        c.signer
            .sign(SignatureRequest {
                key_id: key_id(&ids[0]),
                content: vec![n; 32],
            })
            .await
            .unwrap();
    }
    let missing = c
        .keys
        .get_key_info(KeyId {
            id: "ab".repeat(32),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let refused = c
        .keys
        .delete_key(KeyId { id: ids[1].clone() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(health(&mut c).await, ServingStatus::Serving as i32);

    let after = scrape(s.metrics);
    assert_eq!(requests(&after, "CreateKey", "OK"), 2.0, "{after}");
    assert_eq!(requests(&after, "Sign", "OK"), 3.0, "{after}");
    assert_eq!(requests(&after, "GetKeyInfo", "NotFound"), 1.0, "{after}");
    assert_eq!(
        requests(&after, "DeleteKey", "PermissionDenied"),
        1.0,
        "{after}"
    );
    assert_eq!(requests(&after, "Check", "OK"), 1.0, "{after}");
    assert_eq!(requests(&after, "Sign", "Unavailable"), 0.0, "{after}");
    assert_eq!(
        sample(
            &after,
            r#"signerd_request_duration_seconds_count{port="notary",method="Sign"}"#
        ),
        Some(3.0),
        "{after}"
    );
    // Every key operation (refused ones too) wrote an audit record; health does not.
    assert_eq!(
        sample(&after, "signerd_audit_write_duration_seconds_count"),
        Some(7.0),
        "{after}"
    );
    assert!(
        sample(&after, "signerd_token_workers").is_some_and(|n| n >= 1.0),
        "{after}"
    );
    assert!(
        sample(&after, "signerd_token_queue_capacity").is_some_and(|n| n >= 64.0),
        "{after}"
    );
    let reconnects_before = sample(&after, "signerd_token_reconnects_total").unwrap_or(-1.0);
    assert!(reconnects_before >= 0.0, "{after}");

    // Pull the token: its files go away under the running daemon.
    let token_dir = s.token.softhsm.token_dir();
    let away = s.dir.path().join("token-away");
    std::fs::rename(&token_dir, &away).unwrap();
    std::fs::create_dir(&token_dir).unwrap();
    assert_eq!(health(&mut c).await, ServingStatus::NotServing as i32);
    let pulled = scrape(s.metrics);
    assert_eq!(sample(&pulled, "signerd_token_up"), Some(0.0), "{pulled}");
    assert_eq!(
        sample(
            &pulled,
            r#"signerd_requests_total{port="notary",method="Check",code="OK"}"#
        ),
        Some(2.0),
        "health answered NOT_SERVING with status OK:\n{pulled}"
    );

    // Put it back: signerd reconnects by itself, and the gauge follows.
    put_back(&token_dir, &away);
    let deadline = Instant::now() + Duration::from_secs(15);
    while health(&mut c).await != ServingStatus::Serving as i32 {
        assert!(
            Instant::now() < deadline,
            "signerd did not reconnect to the token\n{}",
            s.signerd.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let back = scrape(s.metrics);
    assert_eq!(sample(&back, "signerd_token_up"), Some(1.0), "{back}");
    let reconnects = sample(&back, "signerd_token_reconnects_total").unwrap_or(-1.0);
    assert!(
        reconnects > reconnects_before,
        "the reconnect is counted: {reconnects_before} -> {reconnects}\n{back}"
    );
}

fn put_back(token_dir: &Path, away: &Path) {
    std::fs::remove_dir(token_dir).unwrap();
    std::fs::rename(away, token_dir).unwrap();
}

#[tokio::test]
async fn only_metrics_are_served_there() {
    let s = setup("metrics-paths");
    let (status, _) = get(s.metrics, "/");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    let (status, _) = get(s.metrics, "/metrics/../admin");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    assert!(scrape(s.metrics).contains("# TYPE signerd_token_up gauge"));
}
