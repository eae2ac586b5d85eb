//! Per-identity policy through the real edge (issue 9, acceptance 2): `[[policy]]` rules decide
//! per client certificate (tenants held to their GUNs, operations granted one by one) and per
//! admin-socket peer (a release engineer's uid/groups may sign only `targets/releases` under
//! `example.com/acme/*`, run as another uid with `setpriv`); SIGHUP swaps the rules while a
//! slow RSA-4096 CreateKey in flight completes.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use signerd_proto::notary::key_management_client::KeyManagementClient;
use signerd_proto::notary::signer_client::SignerClient;
use signerd_proto::notary::{CreateKeyRequest, KeyId, SignatureRequest};
use signerd_tests::admin::{wait_for_socket, AdminCli};
use signerd_tests::signerd::{signerd_bin, Signerd, TestToken};
use signerd_tests::{IssuedCert, TestDir, TestPki};
use tonic::transport::Channel;
use tonic::Code;

/// The rules under test: two notary-servers (one a tenant of `registry-a.example.com`) and a
/// release engineer on the admin socket.
const RULES: &str = r#"
[[policy]]
name = "registry-a"
port = "notary"
subjects = ["CN=notary-a"]
operations = ["create", "info", "sign"]
guns = ["registry-a.example.com/*"]

[[policy]]
name = "notary-server"
port = "notary"
subjects = ["CN=notary-server-client"]
operations = ["create", "info", "sign", "delete"]

[[policy]]
name = "release-engineer"
port = "admin"
groups = [2001]
operations = ["list", "sign"]
guns = ["example.com/acme/*"]
roles = ["targets/releases"]
"#;

/// Fields drop in order: signerd stops before its folder goes.
struct Setup {
    signerd: Signerd,
    socket: PathBuf,
    config: PathBuf,
    pki: TestPki,
    _token: TestToken,
    dir: TestDir,
}

fn config_text(socket: &Path, rules: &str) -> String {
    format!(
        "[token]\nrsa_bits = 4096\n\n[admin]\nsocket = {:?}\n{rules}",
        socket.display().to_string()
    )
}

fn setup(name: &str) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let run = dir.subdir("signerd").unwrap();
    let socket = run.join("admin.sock");
    let config = run.join("signerd.toml");
    std::fs::write(&config, config_text(&socket, RULES)).unwrap();
    let signerd = Signerd::start_with(
        &run,
        "signerd",
        &token,
        &pki,
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    wait_for_socket(&socket, &signerd).unwrap();
    Setup {
        signerd,
        socket,
        config,
        pki,
        _token: token,
        dir,
    }
}

async fn channel(s: &Setup, cert: &IssuedCert) -> Channel {
    s.signerd
        .channel_as(Some(cert), s.pki.ca.cert_path())
        .await
        .unwrap()
}

fn create(gun: &str, role: &str, algorithm: &str) -> CreateKeyRequest {
    CreateKeyRequest {
        algorithm: algorithm.into(),
        gun: gun.into(),
        role: role.into(),
    }
}

fn sign(id: &str) -> SignatureRequest {
    SignatureRequest {
        key_id: Some(KeyId { id: id.into() }),
        content: b"timestamp.json".to_vec(),
    }
}

fn denied(err: &tonic::Status, operation: &str) {
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .starts_with(&format!("{operation} refused by signerd's policy: ")),
        "the refusal names the operation and the policy: {}",
        err.message()
    );
}

#[tokio::test]
async fn certificates_are_held_to_their_rules() {
    let s = setup("policy-certificates");
    let tenant = s.pki.ca.issue_client("notary-a").unwrap();
    let intruder = s.pki.ca.issue_client("intruder").unwrap();
    let mut a = KeyManagementClient::new(channel(&s, &tenant).await);
    let mut a_signer = SignerClient::new(channel(&s, &tenant).await);
    let mut server = KeyManagementClient::new(s.signerd.channel().await.unwrap());

    // The tenant works inside its GUNs.
    let own = a
        .create_key(create("registry-a.example.com/app", "timestamp", "ecdsa"))
        .await
        .unwrap()
        .into_inner()
        .key_info
        .unwrap()
        .key_id
        .unwrap()
        .id;
    a_signer.sign(sign(&own)).await.unwrap();
    a.get_key_info(KeyId { id: own.clone() }).await.unwrap();

    // Not outside them (GUN glob), neither to make nor to use another tenant's key.
    let err = a
        .create_key(create("registry-b.example.com/app", "timestamp", "ecdsa"))
        .await
        .unwrap_err();
    denied(&err, "create");
    assert!(
        err.message().contains("registry-b.example.com/app"),
        "{err:?}"
    );
    let other = server
        .create_key(create("registry-b.example.com/app", "snapshot", "ecdsa"))
        .await
        .unwrap()
        .into_inner()
        .key_info
        .unwrap()
        .key_id
        .unwrap()
        .id;
    denied(&a_signer.sign(sign(&other)).await.unwrap_err(), "sign");
    denied(
        &a.get_key_info(KeyId { id: other.clone() })
            .await
            .unwrap_err(),
        "info",
    );
    // An operation its rule does not grant, even on its own key.
    denied(
        &a.delete_key(KeyId { id: own.clone() }).await.unwrap_err(),
        "delete",
    );
    // A role the Notary port does not make, for anybody.
    denied(
        &a.create_key(create("registry-a.example.com/app", "root", "ecdsa"))
            .await
            .unwrap_err(),
        "create",
    );

    // A certificate of the same CA that no rule names: nothing at all (the built-in
    // notary-server rule is replaced by the configured ones).
    let mut x = SignerClient::new(channel(&s, &intruder).await);
    let err = x.sign(sign(&own)).await.unwrap_err();
    denied(&err, "sign");
    assert!(
        err.message()
            .contains("no [[policy]] rule names 'CN=intruder'")
            && err.message().contains("subjects = [\"CN=intruder\"]"),
        "{}",
        err.message()
    );

    // notary-server's own rule: every GUN, delete included.
    server.delete_key(KeyId { id: other }).await.unwrap();

    // The log names the rule that allowed a call, and the refusals.
    let logs = s.signerd.logs();
    assert!(
        logs.lines().any(|l| l.contains("method=\"Sign\"")
            && l.contains("client=\"CN=notary-a sha256:")
            && l.contains("rule=\"registry-a\"")
            && l.contains("outcome=\"ok\"")),
        "{logs}"
    );
    assert!(
        logs.lines().any(|l| l.contains("method=\"DeleteKey\"")
            && l.contains("CN=notary-a")
            && l.contains("outcome=\"PermissionDenied\"")),
        "{logs}"
    );
}

/// Runs `signerd <args>` on the admin socket as uid 65534 with the given supplementary groups.
fn run_as_nobody(socket: &Path, groups: &str, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            &format!("--groups={groups}"),
        ])
        .arg(signerd_bin())
        .args(args)
        .env("SIGNERD_SOCKET", socket)
        .env_remove("SIGNERD_ADDR")
        .current_dir("/")
        .output()
        .unwrap()
}

/// Lets other uids reach `path` (the test's own folders, made 0700 by tempfile).
fn open_up(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn socket_peers_by_group_gun_and_role() {
    let s = setup("policy-socket-peers");
    // The socket is 0660 root:root: group 0 lets a peer connect, the policy decides the rest.
    for dir in [s.dir.path(), s.socket.parent().unwrap()] {
        open_up(dir, 0o755);
    }
    let cli = AdminCli::new(&s.socket, &s.dir.subdir("admin").unwrap()).unwrap();
    let key = |gun: &str, role: &str| {
        cli.json(&["key", "generate", "--gun", gun, "--role", role])["key_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let release = key("example.com/acme/app", "targets/releases");
    let other_gun = key("example.com/other/app", "targets/releases");
    let root = key("example.com/acme/app", "root");
    let content = s.dir.path().join("targets.json");
    std::fs::write(&content, b"{\"signed\":{}}").unwrap();
    open_up(&content, 0o644);
    let content = content.to_str().unwrap();

    let engineer = run_as_nobody(
        &s.socket,
        "0,2001",
        &["sign", "--key", &release, "--in", content],
    );
    assert!(
        engineer.status.success(),
        "the release engineer signs targets/releases under example.com/acme/*: {}",
        signerd_tests::admin::text(&engineer)
    );
    for refused in [&other_gun, &root] {
        let out = run_as_nobody(
            &s.socket,
            "0,2001",
            &["sign", "--key", refused, "--in", content],
        );
        let text = signerd_tests::admin::text(&out);
        assert_eq!(out.status.code(), Some(4), "{text}");
        assert!(text.contains("sign refused by signerd's policy"), "{text}");
    }
    // Not an operation the rule grants.
    let out = run_as_nobody(
        &s.socket,
        "0,2001",
        &[
            "key",
            "generate",
            "--gun",
            "example.com/acme/app",
            "--role",
            "targets/releases",
        ],
    );
    let text = signerd_tests::admin::text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains("generate refused by signerd's policy"),
        "{text}"
    );
    // The same uid without the group: no rule names it.
    let out = run_as_nobody(&s.socket, "0", &["key", "list"]);
    let text = signerd_tests::admin::text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains("uid 65534 (gid 65534) may not use signerd's admin API"),
        "{text}"
    );
}

#[tokio::test]
async fn sighup_swaps_the_rules_while_a_call_in_flight_completes() {
    let mut s = setup("policy-sighup");
    let channel = s.signerd.channel().await.unwrap();
    let mut keys = KeyManagementClient::new(channel.clone());
    // A slow call admitted under the old rules (RSA-4096 generation takes seconds in SoftHSM).
    let slow = tokio::spawn({
        let mut keys = keys.clone();
        async move {
            keys.create_key(create("example.com/app", "timestamp", "rsa"))
                .await
        }
    });
    // Give the call time to reach signerd; the ordering is checked from the log below.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let new_rules = RULES.replace(
        "subjects = [\"CN=notary-server-client\"]\noperations = [\"create\", \"info\", \"sign\", \"delete\"]",
        "subjects = [\"CN=notary-server-client\"]\noperations = [\"info\", \"sign\"]",
    );
    assert_ne!(new_rules, RULES);
    std::fs::write(&s.config, config_text(&s.socket, &new_rules)).unwrap();
    let pid = s.signerd.process().id();
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let made = slow.await.unwrap().expect("the call in flight completes");
    assert_eq!(
        made.into_inner()
            .key_info
            .unwrap()
            .algorithm
            .unwrap()
            .algorithm,
        "rsa"
    );
    // Wait for the reload to be logged, then a new call on the same connection is refused.
    let mut logs = s.signerd.logs();
    for _ in 0..200 {
        if logs.contains("SIGHUP: policy reloaded") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        logs = s.signerd.logs();
    }
    let reloaded = logs.find("SIGHUP: policy reloaded").expect("reload logged");
    let completed = logs
        .lines()
        .position(|l| l.contains("method=\"CreateKey\"") && l.contains("outcome=\"ok\""))
        .expect("the CreateKey is logged");
    let reload_line = logs[..reloaded].lines().count() - 1;
    assert!(
        reload_line < completed,
        "the policy changed while the CreateKey was in flight:\n{logs}"
    );
    denied(
        &keys
            .create_key(create("example.com/app", "snapshot", "ecdsa"))
            .await
            .unwrap_err(),
        "create",
    );

    // A broken new file is refused with a log line; the rules in force stay.
    std::fs::write(
        &s.config,
        config_text(
            &s.socket,
            "[[policy]]\nname = \"bad\"\nport = \"notary\"\noperations = [\"sgn\"]\n",
        ),
    )
    .unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let mut logs = s.signerd.logs();
    for _ in 0..200 {
        if logs.contains("the new config is refused") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        logs = s.signerd.logs();
    }
    assert!(
        logs.contains("operation \\\"sgn\\\" is not one of")
            || logs.contains("operation \"sgn\" is not one of"),
        "{logs}"
    );
    let info = KeyManagementClient::new(channel)
        .get_key_info(KeyId {
            id: "ab".repeat(32),
        })
        .await
        .unwrap_err();
    assert_eq!(
        info.code(),
        Code::NotFound,
        "info is still granted: {info:?}"
    );
}
