//! The audit trail on a real signerd over SoftHSM (issue 9, acceptance 3): key operations on
//! the Notary port and through the admin CLI leave a chain that `signerd audit verify` accepts,
//! checkpoints signed by the audit key in the token; editing, deleting, reordering or
//! truncating a line, or rewriting the whole file with a fresh chain, is found and located; an
//! audit file that cannot be written makes key operations answer UNAVAILABLE and health say
//! why, until it is back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use signerd_proto::health::health_check_response::ServingStatus;
use signerd_proto::health::HealthCheckRequest;
use signerd_proto::notary::{CreateKeyRequest, KeyId as KeyIdMsg, SignatureRequest};
use signerd_tests::admin::{start_signerd, text, AdminCli};
use signerd_tests::audit::{audit_cli, fresh_chain, lines, records, write_lines};
use signerd_tests::signerd::{Signerd, TestToken};
use signerd_tests::{TestDir, TestPki};
use tonic::Code;

/// Fields drop in order: signerd stops before its folder goes.
struct Setup {
    signerd: Signerd,
    cli: AdminCli,
    audit: PathBuf,
    _token: TestToken,
    dir: TestDir,
}

fn setup(name: &str) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let audit = dir.subdir("audit").unwrap().join("audit.jsonl");
    let section = format!(
        "[audit]\npath = {:?}\nfsync = \"always\"\ncheckpoint_every_lines = 4\n",
        audit.display().to_string()
    );
    let (signerd, socket) =
        start_signerd(&dir.subdir("signerd").unwrap(), &token, &pki, &section).unwrap();
    let cli = AdminCli::new(&socket, &dir.subdir("work").unwrap()).unwrap();
    Setup {
        signerd,
        cli,
        audit,
        _token: token,
        dir,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `signerd audit <args>`: exit code and stdout + stderr.
fn audit(s: &Setup, args: &[&str]) -> (i32, String) {
    let out = audit_cli(args, &s.dir.subdir("runs").unwrap());
    (out.status.code().unwrap_or(-1), text(&out))
}

/// The audit key's ID and public key PEM, as an auditor gets them from `signerd key`.
fn audit_key(cli: &AdminCli) -> (String, String) {
    let keys = cli.json(&["key", "list"]);
    let key = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == "admin:audit@signerd")
        .unwrap_or_else(|| panic!("the audit key is in the token: {keys}"))
        .clone();
    let id = key["key_id"].as_str().unwrap().to_owned();
    let shown = cli.json(&["key", "show", &id]);
    assert_eq!(shown["sensitive"], true);
    assert_eq!(shown["extractable"], false);
    (id, shown["public_key_pem"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn key_operations_leave_a_chain_that_verifies_and_tampering_is_located() {
    let mut s = setup("audit-trail");
    let mut c = s.signerd.clients().await;
    let created = c
        .keys
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "example.com/app".into(),
            role: "timestamp".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.key_info.unwrap().key_id.unwrap().id;
    c.signer
        .sign(SignatureRequest {
            key_id: Some(KeyIdMsg { id: id.clone() }),
            content: b"snapshot.json".to_vec(),
        })
        .await
        .unwrap();
    let missing = c
        .signer
        .sign(SignatureRequest {
            key_id: Some(KeyIdMsg {
                id: "ab".repeat(32),
            }),
            content: b"x".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    c.keys
        .delete_key(KeyIdMsg { id: id.clone() })
        .await
        .unwrap();
    s.cli.run_ok(&[
        "key",
        "generate",
        "--gun",
        "example.com/app",
        "--role",
        "targets",
    ]);
    let (key_id, pem) = audit_key(&s.cli);
    // A clean stop closes the file with a checkpoint over every line.
    assert!(s.signerd.stop().unwrap().success());

    let all = records(&s.audit);
    let notary: Vec<(&str, &str)> = all
        .iter()
        .filter(|l| l["port"] == "notary")
        .map(|l| {
            (
                l["method"].as_str().unwrap(),
                l["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        notary,
        vec![
            ("CreateKey", "ok"),
            ("Sign", "ok"),
            ("Sign", "NotFound"),
            ("DeleteKey", "ok")
        ],
        "{all:#?}"
    );
    let notary_caller = all.iter().find(|l| l["port"] == "notary").unwrap();
    assert!(
        notary_caller["identity"].as_str().unwrap().contains("CN="),
        "{notary_caller}"
    );
    assert!(
        all.iter()
            .any(|l| l["port"] == "admin" && l["identity"].as_str().unwrap().starts_with("uid=")),
        "the admin CLI's calls are recorded with their socket peer: {all:#?}"
    );
    let checkpoints: Vec<&serde_json::Value> =
        all.iter().filter(|l| l["type"] == "checkpoint").collect();
    assert!(checkpoints.len() >= 3, "{all:#?}");
    assert!(checkpoints.iter().all(|c| c["key_id"] == key_id.as_str()));
    assert_eq!(all.last().unwrap()["type"], "checkpoint");

    let file = path(&s.audit).to_owned();
    let (code, out) = audit(&s, &["verify", "--key-id", &key_id, &file]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok: ") && out.contains("the key you gave"),
        "{out}"
    );
    let pem_file = s.dir.path().join("audit-key.pem");
    std::fs::write(&pem_file, &pem).unwrap();
    let (code, out) = audit(&s, &["verify", "--public-key", path(&pem_file), &file]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = audit(&s, &["verify", &file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NOT independently trusted"), "{out}");

    // Tampering, each on a copy, each found at its line.
    let original = lines(&s.audit);
    let target = s.dir.path().join("tampered.jsonl");
    let tampered = path(&target).to_owned();
    let sign_line = original
        .iter()
        .position(|l| l.contains("\"method\":\"Sign\"") && l.contains("\"outcome\":\"ok\""))
        .unwrap();
    let n = sign_line + 1;
    let verify_bad = |lines: &[String], at: usize, says: &str| {
        write_lines(&target, lines);
        let (code, out) = audit(&s, &["verify", "--key-id", &key_id, &tampered]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!("{tampered}:{at}: ")) && out.contains(says),
            "expected {tampered}:{at} ({says}):\n{out}"
        );
    };
    let mut edited = original.clone();
    edited[sign_line] =
        edited[sign_line].replace("\"method\":\"Sign\"", "\"method\":\"GetKeyInfo\"");
    verify_bad(&edited, n, "edited");
    let mut deleted = original.clone();
    deleted.remove(sign_line);
    verify_bad(&deleted, n, "deleted");
    let mut reordered = original.clone();
    reordered.swap(sign_line, sign_line + 1);
    verify_bad(&reordered, n, "reordered");
    let mut truncated = original[..=sign_line].to_vec();
    truncated[sign_line].truncate(40);
    write_lines(&target, &truncated);
    // Cut mid-line: no newline after the last fragment.
    let mut cut = std::fs::read(&target).unwrap();
    cut.pop();
    std::fs::write(&target, cut).unwrap();
    let (code, out) = audit(&s, &["verify", "--key-id", &key_id, &tampered]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{tampered}:{n}: ")) && out.contains("incomplete"),
        "{out}"
    );

    // The whole file rewritten with a fresh chain that hides the Sign: without checkpoints...
    let mut hidden = original.clone();
    hidden.remove(sign_line);
    verify_bad(&fresh_chain(&hidden, None), 1, "no checkpoint");
    // ...or with checkpoints signed by a key of the attacker's: the first one is refused
    // against the audit key in the token.
    let attacker = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
    let rewritten = fresh_chain(&hidden, Some(&attacker));
    let first_checkpoint = rewritten
        .iter()
        .position(|l| l.contains("\"type\":\"checkpoint\""))
        .unwrap();
    verify_bad(
        &rewritten,
        first_checkpoint + 1,
        "not the trusted audit key",
    );
    // Without a pinned key the rewrite verifies, and the verifier says the key is unvouched.
    write_lines(&target, &rewritten);
    let (code, out) = audit(&s, &["verify", &tampered]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NOT independently trusted"), "{out}");

    // Usage errors.
    assert_eq!(audit(&s, &["verify"]).0, 2);
    assert_eq!(audit(&s, &["verify", "--key-id", "nothex", &file]).0, 2);
    let (code, out) = audit(&s, &["verify", path(&s.dir.path().join("absent.jsonl"))]);
    assert_eq!(code, 2, "{out}");

    // tail prints the lines as text, caller text escaped.
    let (code, out) = audit(&s, &["tail", "-n", "0", &file]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), original.len(), "{out}");
    assert!(out.contains("method=Sign outcome=NotFound"), "{out}");
}

/// Polls health until it answers `want` (the trail notices a file put back within its tick).
async fn wait_health(s: &Setup, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = s.signerd.clients().await;
        let status = c
            .health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == want as i32 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {status}, not {want:?}\n{}",
            s.signerd.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_unwritable_audit_file_fails_closed_and_health_says_why() {
    let mut s = setup("audit-unwritable");
    let mut c = s.signerd.clients().await;
    let create = CreateKeyRequest {
        algorithm: "ecdsa".into(),
        gun: "example.com/app".into(),
        role: "snapshot".into(),
    };
    c.keys.create_key(create.clone()).await.unwrap();
    let keys_before = s.cli.json(&["key", "list"]).as_array().unwrap().len();

    // The file replaced by a directory: signerd (root or not) cannot write it.
    let aside = s.audit.with_extension("aside");
    std::fs::rename(&s.audit, &aside).unwrap();
    std::fs::create_dir(&s.audit).unwrap();
    wait_health(&s, ServingStatus::NotServing).await;
    let refused = c.keys.create_key(create.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("audit trail") && refused.message().contains(path(&s.audit)),
        "{refused:?}"
    );
    let refused = c
        .signer
        .sign(SignatureRequest {
            key_id: Some(KeyIdMsg {
                id: "ab".repeat(32),
            }),
            content: b"x".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let out = s.cli.run(&["key", "list"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("audit trail"), "{}", text(&out));
    let logs = s.signerd.logs();
    assert!(
        logs.contains("NOT_SERVING")
            && logs.contains("audit trail")
            && logs.contains(path(&s.audit)),
        "health says why in the log:\n{logs}"
    );

    // The file back: key operations resume on the same chain; the refused ones never ran.
    std::fs::remove_dir(&s.audit).unwrap();
    std::fs::rename(&aside, &s.audit).unwrap();
    wait_health(&s, ServingStatus::Serving).await;
    c.keys.create_key(create.clone()).await.unwrap();
    let keys_after = s.cli.json(&["key", "list"]).as_array().unwrap().len();
    assert_eq!(keys_after, keys_before + 1);
    assert!(s.signerd.stop().unwrap().success());
    let (code, out) = audit(&s, &["verify", path(&s.audit)]);
    assert_eq!(code, 0, "{out}");
    let created: usize = records(&s.audit)
        .iter()
        .filter(|l| l["method"] == "CreateKey")
        .count();
    assert_eq!(created, 2);
}

#[tokio::test]
async fn a_call_whose_client_hangs_up_is_recorded_as_cancelled() {
    let dir = TestDir::new("audit-cancelled").unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let audit = dir.subdir("audit").unwrap().join("audit.jsonl");
    // RSA-4096 generation in SoftHSM takes far longer than the client waits.
    let section = format!(
        "[audit]\npath = {:?}\n[token]\nrsa_bits = 4096\n",
        audit.display().to_string()
    );
    let (signerd, _socket) =
        start_signerd(&dir.subdir("signerd").unwrap(), &token, &pki, &section).unwrap();
    let mut c = signerd.clients().await;
    let call = c.keys.create_key(CreateKeyRequest {
        algorithm: "rsa".into(),
        gun: "example.com/app".into(),
        role: "timestamp".into(),
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err(),
        "the client gives up before the key is made"
    );
    drop(c);
    // The record is written when signerd notices the stream reset.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Read as text: a line being written may be seen half done.
        let cancelled = lines(&audit).iter().any(|l| {
            l.contains("\"method\":\"CreateKey\"") && l.contains("\"outcome\":\"cancelled\"")
        });
        if cancelled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no cancelled CreateKey in the trail:\n{}\n{}",
            lines(&audit).join("\n"),
            signerd.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(signerd);
    drop(token);
    drop(dir);
}

#[tokio::test]
async fn tail_follows_the_trail_across_rotations() {
    let dir = TestDir::new("audit-tail").unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let folder = dir.subdir("audit").unwrap();
    let audit = folder.join("audit.jsonl");
    let section = format!(
        "[audit]\npath = {:?}\nrotate_bytes = 4096\ncheckpoint_every_lines = 3\n",
        audit.display().to_string()
    );
    let (mut signerd, _socket) =
        start_signerd(&dir.subdir("signerd").unwrap(), &token, &pki, &section).unwrap();
    let mut command = std::process::Command::new(signerd_tests::signerd::signerd_bin());
    command.args(["audit", "tail", "-f", "--json", "-n", "0", path(&audit)]);
    let tail = signerd_tests::ChildGuard::spawn("tail", command, dir.path()).unwrap();

    let mut c = signerd.clients().await;
    for n in 0..30 {
        // Each NOT_FOUND answer is a line with a long key ID and error.
        let err = c
            .signer
            .sign(SignatureRequest {
                key_id: Some(KeyIdMsg {
                    id: format!("{n:064x}"),
                }),
                content: b"x".to_vec(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    assert!(signerd.stop().unwrap().success());

    // Every line of every file, in chain order.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.rotate_left(1);
    assert!(files.len() >= 3, "rotated at least twice: {files:?}");
    let all: Vec<String> = files.iter().flat_map(|f| lines(f)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown: Vec<String> = std::fs::read_to_string(tail.stdout_log())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        if shown.len() >= all.len() {
            assert_eq!(shown, all, "tail -f printed the whole chain, in order");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tail -f printed {} of {} lines\n{}",
            shown.len(),
            all.len(),
            tail.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(tail);
}
