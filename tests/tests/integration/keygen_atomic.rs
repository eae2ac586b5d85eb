//! The log under key operations, with the real daemon: a mechanism listing writes no ERROR
//! line (cryptoki's "Mechanism type N is not supported" is filtered), and with an audit trail
//! key operations write no log line at all.
//!
//! The daemon-level crash tests of key generation (the `fault-injection` build killed between
//! generating a pair and naming it) are not here yet; the token-level states a crash leaves are
//! tested in `token/tests/softhsm_keygen.rs`.

use signerd_proto::admin as pb;
use signerd_proto::notary::{CreateKeyRequest, SignatureRequest};
use signerd_tests::admin::{client, start_signerd};
use signerd_tests::signerd::{Signerd, TestToken};
use signerd_tests::{TestDir, TestPki};

struct Crash {
    dir: TestDir,
    pki: TestPki,
    token: TestToken,
}

impl Crash {
    fn new(name: &str) -> Crash {
        let dir = TestDir::new(name).unwrap();
        let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
        let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
        Crash { dir, pki, token }
    }

    fn start(&self, name: &str) -> (Signerd, std::path::PathBuf) {
        start_signerd(&self.dir.subdir(name).unwrap(), &self.token, &self.pki, "").unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mechanism_listing_writes_no_error_line() {
    let c = Crash::new("keygen-mechanism-log");
    let (mut signerd, socket) = c.start("quiet");
    let mechanisms = client(&socket)
        .await
        .list_mechanisms(pb::ListMechanismsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!mechanisms.mechanisms.is_empty());
    signerd.stop().unwrap();
    let logs = signerd.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
    assert!(!logs.contains("is not supported"), "{logs}");

    // The lines are there to filter: an operator who asks for them gets them.
    let (mut loud, socket) = start_signerd(
        &c.dir.subdir("loud").unwrap(),
        &c.token,
        &c.pki,
        "[log]\nlevel = \"info,cryptoki::mechanism=error\"",
    )
    .unwrap();
    client(&socket)
        .await
        .list_mechanisms(pb::ListMechanismsRequest {})
        .await
        .unwrap();
    loud.stop().unwrap();
    let logs = loud.logs();
    assert!(
        logs.contains("Mechanism type") && logs.contains("is not supported"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_an_audit_trail_key_operations_write_no_log_lines() {
    let c = Crash::new("keygen-quiet-keyops");
    let audit = c.dir.subdir("audit").unwrap().join("audit.jsonl");
    let (signerd, _socket) = start_signerd(
        &c.dir.subdir("signerd").unwrap(),
        &c.token,
        &c.pki,
        &format!("[audit]\npath = {:?}\n", audit.display().to_string()),
    )
    .unwrap();
    let lines_before = signerd.logs().lines().count();
    let mut clients = signerd.clients().await;
    let created = clients
        .keys
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "example.com/quiet".into(),
            role: "snapshot".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.key_info.unwrap().key_id.unwrap();
    for _ in 0..20 {
        clients
            .signer
            .sign(SignatureRequest {
                key_id: Some(id.clone()),
                content: b"content".to_vec(),
            })
            .await
            .unwrap();
        clients.keys.get_key_info(id.clone()).await.unwrap();
    }
    // The trail has every operation; the log has none of them.
    let records = signerd_tests::audit::records(&audit);
    assert!(records.len() >= 41, "{} audit records", records.len());
    let logs = signerd.logs();
    let new: Vec<&str> = logs.lines().skip(lines_before).collect();
    // 41 operations: a line per operation would be 41 lines. (A late start-up line may land
    // here; none of them is about a key.)
    assert!(
        new.len() < 5 && !new.iter().any(|l| l.contains("keyop")),
        "log lines for key operations:\n{}",
        new.join("\n")
    );
    assert!(!logs.contains(&id.id), "{logs}");
}
