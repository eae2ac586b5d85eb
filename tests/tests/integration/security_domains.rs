//! Key domains (issue 9, acceptance 1): with notary-server's client certificate, the Notary
//! port reaches only the keys notary-server manages. The trust-pinning CA's key and a root key
//! made through the admin API (`signerd ca init`, `signerd root new`) answer exactly as absent
//! keys for Sign, GetKeyInfo and DeleteKey, and stay in the token; keys made by the Notary
//! port's CreateKey carry the Notary mark on the token objects, seen again after a restart.

use signerd_proto::admin as pb;
use signerd_proto::notary::{CreateKeyRequest, KeyId, SignatureRequest};
use signerd_tests::admin::{client, start_signerd, AdminCli};
use signerd_tests::signerd::{Signerd, TestToken};
use signerd_tests::{TestDir, TestPki};
use tonic::Code;

/// Fields drop in order: signerd stops before its folder goes.
struct Setup {
    signerd: Signerd,
    socket: std::path::PathBuf,
    _token: TestToken,
    _pki: TestPki,
    dir: TestDir,
}

fn setup(name: &str) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let (signerd, socket) =
        start_signerd(&dir.subdir("signerd").unwrap(), &token, &pki, "").unwrap();
    Setup {
        signerd,
        socket,
        _token: token,
        _pki: pki,
        dir,
    }
}

fn key_id(id: &str) -> KeyId {
    KeyId { id: id.to_owned() }
}

/// The private key objects the admin API lists for TUF key ID `id`.
async fn private_keys(socket: &std::path::Path, id: &str) -> Vec<pb::Object> {
    client(socket)
        .await
        .find_objects(pb::FindObjectsRequest {
            tuf_key_id: id.to_owned(),
            class: pb::ObjectClass::PrivateKey as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .objects
}

/// Sign, GetKeyInfo and DeleteKey of `id` on the Notary port: each (code, message) with the
/// key ID replaced by `<id>`, so answers about different keys compare.
async fn notary_answers(s: &Setup, id: &str) -> Vec<(Code, String)> {
    let mut c = s.signerd.clients().await;
    let mut answers = Vec::new();
    let sign = c
        .signer
        .sign(SignatureRequest {
            key_id: Some(key_id(id)),
            content: b"a root.json an attacker wrote".to_vec(),
        })
        .await;
    let info = c.keys.get_key_info(key_id(id)).await;
    let delete = c.keys.delete_key(key_id(id)).await;
    for (code, message) in [sign.map(|_| ()), info.map(|_| ()), delete.map(|_| ())]
        .into_iter()
        .map(|r| match r {
            Ok(()) => (Code::Ok, String::new()),
            Err(e) => (e.code(), e.message().to_owned()),
        })
    {
        answers.push((code, message.replace(id, "<id>")));
    }
    answers
}

#[tokio::test]
async fn notary_server_cannot_reach_the_ca_or_root_keys() {
    let s = setup("domains-ca-root");
    let cli = AdminCli::new(&s.socket, &s.dir.subdir("admin-cli").unwrap()).unwrap();
    cli.run_ok(&["ca", "init", "--subject", "CN=Acme Notary CA,O=Acme"]);
    let root = cli.json(&["root", "new", "example.com/app"]);
    let root_id = root["key_id"].as_str().unwrap().to_owned();
    let ca = client(&s.socket)
        .await
        .find_objects(pb::FindObjectsRequest {
            role: "ca".into(),
            class: pb::ObjectClass::PrivateKey as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .objects;
    assert_eq!(ca.len(), 1, "{ca:?}");
    let ca_id = ca[0].tuf_key_id.clone();
    assert_eq!(ca_id.len(), 64, "the CA key has a TUF key ID: {:?}", ca[0]);
    // The admin API marks what it makes.
    assert_eq!(ca[0].r#ref.as_ref().unwrap().label, "admin:ca@");
    assert_eq!(
        private_keys(&s.socket, &root_id).await[0]
            .r#ref
            .as_ref()
            .unwrap()
            .label,
        "admin:root@example.com/app"
    );

    // A key that does not exist, for comparison: NOT_FOUND for Sign and GetKeyInfo, OK for
    // DeleteKey (idempotent, as the Go signer).
    let absent = "ab".repeat(32);
    let absent_answers = notary_answers(&s, &absent).await;
    assert_eq!(absent_answers[0].0, Code::NotFound, "{absent_answers:?}");
    assert_eq!(absent_answers[1].0, Code::NotFound, "{absent_answers:?}");
    assert_eq!(absent_answers[2].0, Code::Ok, "{absent_answers:?}");

    for id in [&root_id, &ca_id] {
        let answers = notary_answers(&s, id).await;
        assert_eq!(
            answers, absent_answers,
            "key {id} answers exactly as an absent key on the Notary port"
        );
        assert_eq!(
            private_keys(&s.socket, id).await.len(),
            1,
            "key {id} is still in the token after DeleteKey"
        );
    }

    // The keys still work where they belong: the admin CLI issues from the CA and lists both.
    let listed = cli.run_ok(&["key", "list"]);
    assert!(
        listed.contains(&root_id) && listed.contains(&ca_id),
        "{listed}"
    );
    cli.run_ok(&["root", "new", "example.com/other"]);

    // And the refusals are in the operational log, naming why.
    let logs = s.signerd.logs();
    assert!(
        logs.lines().any(|l| l.contains("method=\"Sign\"")
            && l.contains(&root_id)
            && l.contains("outcome=\"NotFound\"")
            && l.contains("out of the notary port's reach")),
        "{logs}"
    );
}

/// A key labelled `label` as keys were before domains: its TUF key ID.
async fn legacy_key(socket: &std::path::Path, label: &str) -> String {
    client(socket)
        .await
        .generate_key_pair(pb::GenerateKeyPairRequest {
            key_type: pb::KeyType::EcP256 as i32,
            label: label.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .private_key
        .unwrap()
        .tuf_key_id
}

#[tokio::test]
async fn notary_keys_are_marked_on_the_token_and_other_roles_refused() {
    let mut s = setup("domains-notary-marks");
    let mut c = s.signerd.clients().await;
    let made = c
        .keys
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "localhost:5000/org/app".into(),
            role: "timestamp".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let id = made.key_info.unwrap().key_id.unwrap().id;
    let objects = private_keys(&s.socket, &id).await;
    assert_eq!(
        objects[0].r#ref.as_ref().unwrap().label,
        "notary:timestamp@localhost:5000/org/app"
    );
    assert_eq!(objects[0].gun, "localhost:5000/org/app");
    assert_eq!(objects[0].role, "timestamp");

    for role in ["root", "targets", "targets/releases", "ca"] {
        let err = c
            .keys
            .create_key(CreateKeyRequest {
                algorithm: "ecdsa".into(),
                gun: "example.com/app".into(),
                role: role.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{role}: {err:?}");
        assert!(
            err.message()
                .starts_with("create refused by signerd's policy: the Notary port makes only timestamp and snapshot keys")
                && err.message().contains("signerd root new"),
            "{}",
            err.message()
        );
    }

    // Keys from before the marks: usable on the Notary port only when the label says timestamp
    // or snapshot.
    let legacy_snapshot = legacy_key(&s.socket, "snapshot@example.com/old").await;
    let legacy_targets = legacy_key(&s.socket, "targets@example.com/old").await;

    // A restarted signerd reads the marks from the token.
    s.signerd.restart().unwrap();
    let mut c = s.signerd.clients().await;
    for ok in [&id, &legacy_snapshot] {
        c.signer
            .sign(SignatureRequest {
                key_id: Some(key_id(ok)),
                content: b"snapshot.json".to_vec(),
            })
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        let info = c.keys.get_key_info(key_id(ok)).await.unwrap().into_inner();
        assert!(["timestamp", "snapshot"].contains(&info.role.as_str()));
    }
    let err = c
        .signer
        .sign(SignatureRequest {
            key_id: Some(key_id(&legacy_targets)),
            content: b"targets.json".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    c.keys.delete_key(key_id(&legacy_targets)).await.unwrap();
    assert_eq!(private_keys(&s.socket, &legacy_targets).await.len(), 1);
    // A key of the Notary domain is deleted as before.
    c.keys.delete_key(key_id(&id)).await.unwrap();
    assert!(private_keys(&s.socket, &id).await.is_empty());
}

/// Relabels both halves of key `id` with `p11tool`, as the README tells operators to.
fn p11tool_relabel(token: &TestToken, id: &str, label: &str) {
    let pct: String = hex::decode(id)
        .unwrap()
        .iter()
        .map(|b| format!("%{b:02x}"))
        .collect();
    for kind in ["private", "public"] {
        let uri = format!(
            "pkcs11:token={};id={pct};type={kind}",
            signerd_tests::signerd::TEST_TOKEN_LABEL
        );
        let out = std::process::Command::new("p11tool")
            .args([
                "--provider",
                signerd_token::softhsm::SOFTHSM_MODULE,
                "--login",
                &format!("--set-pin={}", signerd_tests::signerd::TEST_PIN),
                "--set-label",
                label,
                &uri,
            ])
            .env("SOFTHSM2_CONF", token.softhsm.conf())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", signerd_tests::admin::text(&out));
    }
}

#[tokio::test]
async fn a_legacy_key_is_brought_under_the_marks_with_p11tool() {
    let mut s = setup("domains-relabel");
    let old = legacy_key(&s.socket, "timestamp@example.com/old").await;
    let objects = private_keys(&s.socket, &old).await;
    assert_eq!(
        objects[0].r#ref.as_ref().unwrap().label,
        "timestamp@example.com/old"
    );
    // Stopped while relabelling, as the README says, so no cached handle outlives the label.
    s.signerd.stop().unwrap();
    p11tool_relabel(&s._token, &old, "notary:timestamp@example.com/old");
    s.signerd.restart().unwrap();
    signerd_tests::admin::wait_for_socket(&s.socket, &s.signerd).unwrap();
    let objects = private_keys(&s.socket, &old).await;
    assert_eq!(
        objects[0].r#ref.as_ref().unwrap().label,
        "notary:timestamp@example.com/old"
    );
    assert_eq!(objects[0].role, "timestamp");
    assert_eq!(objects[0].gun, "example.com/old");
    let mut c = s.signerd.clients().await;
    c.signer
        .sign(SignatureRequest {
            key_id: Some(key_id(&old)),
            content: b"timestamp.json".to_vec(),
        })
        .await
        .unwrap();
    // A key relabelled into the admin domain leaves the Notary port's reach.
    s.signerd.stop().unwrap();
    p11tool_relabel(&s._token, &old, "admin:timestamp@example.com/old");
    s.signerd.restart().unwrap();
    signerd_tests::admin::wait_for_socket(&s.socket, &s.signerd).unwrap();
    let mut c = s.signerd.clients().await;
    let err = c.keys.get_key_info(key_id(&old)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}
