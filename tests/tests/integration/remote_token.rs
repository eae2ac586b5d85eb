//! signerd on a remote token: Debian's `p11-kit server` exporting a SoftHSM token on a Unix
//! socket and signerd loading `p11-kit-client.so`, the stand-in for a network HSM.

use std::time::Duration;

use nix::sys::signal::Signal;
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::DecodePublicKey as _;
use signerd_proto::notary::{CreateKeyRequest, KeyId, SignatureRequest};
use signerd_tests::p11kit::{P11KitServer, ProcessId};
use signerd_tests::signerd::{Clients, Signerd, TestToken};
use signerd_tests::{TestDir, TestPki};

/// How long a client's `p11-kit-remote` may take to appear after signerd started.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Fields drop in order: the daemons first, then the server they talk to, then the folder.
struct Remote {
    signerds: Vec<Signerd>,
    server: P11KitServer,
    remote: TestToken,
    pki: TestPki,
    dir: TestDir,
}

/// Token sessions of each signerd on the remote HSM.
const SESSIONS: u64 = 8;

fn remote(name: &str, replicas: usize) -> Remote {
    let dir = TestDir::new(name).unwrap();
    let pki = TestPki::generate(&dir.subdir("pki").unwrap()).unwrap();
    let token = TestToken::create(&dir.subdir("token").unwrap()).unwrap();
    let server = P11KitServer::start(&dir.subdir("hsm").unwrap(), &token).unwrap();
    let mut remote = server.remote_token(&token).unwrap();
    // Configured as a network HSM is (`config/network-hsm.toml`): more sessions than cores,
    // since calls wait on the wire. Eight calls in flight on the connection are also what
    // p11-kit-client's lost wakeup needs (threads waiting behind another's reply).
    remote
        .env
        .push(("SIGNERD_TOKEN_SESSIONS".into(), SESSIONS.to_string()));
    let signerds = (1..=replicas)
        .map(|i| {
            Signerd::start(
                &dir.subdir("signerd").unwrap(),
                &format!("signerd-{i}"),
                &remote,
                &pki,
            )
            .unwrap()
        })
        .collect();
    Remote {
        signerds,
        server,
        remote,
        pki,
        dir,
    }
}

async fn create_ecdsa(c: &mut Clients, gun: &str) -> (String, Vec<u8>) {
    let created = c
        .keys
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: gun.into(),
            role: "timestamp".into(),
        })
        .await
        .expect("CreateKey on the remote token")
        .into_inner();
    let id = created.key_info.unwrap().key_id.unwrap().id;
    (id, created.public_key)
}

/// Signs `content` with `id` and checks the signature against `public` (DER SPKI, P-256).
async fn sign_and_verify(c: &mut Clients, id: &str, public: &[u8], content: &[u8]) {
    let sig = c
        .signer
        .sign(SignatureRequest {
            key_id: Some(KeyId { id: id.into() }),
            content: content.to_vec(),
        })
        .await
        .expect("Sign on the remote token")
        .into_inner();
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(public).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&sig.content).expect("raw r||s");
    vk.verify(content, &sig)
        .expect("the signature verifies with the key's public key");
}

/// Waits until `process`'s state letter satisfies `wanted` (a signal takes effect when the
/// kernel next handles the process, not when `kill` returns).
async fn wait_state(process: &ProcessId, what: &str, wanted: impl Fn(Option<char>) -> bool) {
    let deadline = std::time::Instant::now() + REMOTE_TIMEOUT;
    while !wanted(process.state()) {
        assert!(
            std::time::Instant::now() < deadline,
            "process {} not {what}: {:?}",
            process.pid,
            process.state()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn signerd_signs_on_a_token_behind_p11_kit_server() {
    let r = remote("remote-sign", 1);
    let mut c = r.signerds[0].clients().await;
    let (id, public) = create_ecdsa(&mut c, "example.com/remote").await;
    sign_and_verify(&mut c, &id, &public, b"through p11-kit").await;

    // The key lives in the exported SoftHSM token, not in the client: the server's module has it.
    let remotes = r.server.wait_for_remotes(1, REMOTE_TIMEOUT).unwrap();
    assert!(
        remotes.iter().all(|p| p.is_alive()),
        "signerd's connection is served by a live p11-kit-remote: {remotes:?}"
    );
    assert!(
        r.remote.uri.contains("p11-kit-client.so"),
        "signerd loaded p11-kit-client.so: {}",
        r.remote.uri
    );
    let out = std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", r.remote.softhsm.conf())
        .args([
            "--module",
            signerd_token::softhsm::SOFTHSM_MODULE,
            "--list-objects",
            "--type",
            "pubkey",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains(&id),
        "the key's CKA_ID / label is in the exported SoftHSM token:\n{listing}"
    );
    drop(r.pki);
}

#[tokio::test]
async fn a_key_made_through_one_signerd_is_found_by_another_on_the_remote_token() {
    let r = remote("remote-shared", 2);
    let mut one = r.signerds[0].clients().await;
    let mut two = r.signerds[1].clients().await;
    let (id, public) = create_ecdsa(&mut one, "example.com/shared").await;

    let info = two
        .keys
        .get_key_info(KeyId { id: id.clone() })
        .await
        .expect("the other signerd finds the key at once")
        .into_inner();
    assert_eq!(info.public_key, public);
    sign_and_verify(&mut two, &id, &public, b"made by one, signed by two").await;

    let (id2, public2) = create_ecdsa(&mut two, "example.com/shared").await;
    sign_and_verify(&mut one, &id2, &public2, b"and the other way round").await;

    // Each signerd has its own connection, so its own p11-kit-remote.
    let remotes = r.server.wait_for_remotes(2, REMOTE_TIMEOUT).unwrap();
    let server = r.server.server().unwrap();
    assert!(remotes.iter().all(|p| p.pid != server.pid));
    drop(r.dir);
}

/// Threads and resident memory of a process, from `/proc/<pid>/status`.
fn threads_and_rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("Threads:"), field("VmRSS:"))
}

/// Issue 11, acceptance 2: the remote HSM hangs (SIGSTOP to the server and its
/// `p11-kit-remote`) under 32 requests in flight: a new Sign fails UNAVAILABLE within the bound,
/// health says NOT_SERVING, nothing piles up; SIGCONT and signing resumes. Then it dies
/// (SIGKILL) and a new server comes up on the same socket: signing resumes, no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signerd_rides_through_a_remote_hsm_that_hangs_and_one_that_dies() {
    use crate::token_faults::{health, Load, PATIENCE};
    use signerd_proto::health::health_check_response::ServingStatus;

    let mut r = remote("remote-faults", 1);
    let mut c = r.signerds[0].clients().await;
    let (id, public) = create_ecdsa(&mut c, "example.com/faults").await;
    r.server.wait_for_remotes(1, REMOTE_TIMEOUT).unwrap();
    let load = Load::start(&c, &id);
    load.wait_ok(50, PATIENCE, "before the hang").await;
    let pid = r.signerds[0].process().id();
    let (threads_before, rss_before) = threads_and_rss_kib(pid);

    // The HSM hangs.
    let frozen_at = std::time::Instant::now();
    r.server.freeze().unwrap();
    for p in r.server.remotes().unwrap() {
        wait_state(&p, "stopped", |s| s == Some('T')).await;
    }
    loop {
        if health(&mut c).await == ServingStatus::NotServing {
            break;
        }
        assert!(
            frozen_at.elapsed() < PATIENCE,
            "health still SERVING with the HSM stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let not_serving_after = frozen_at.elapsed();
    let asked = std::time::Instant::now();
    let refused = c
        .signer
        .sign(SignatureRequest {
            key_id: Some(KeyId { id: id.clone() }),
            content: b"while hung".to_vec(),
        })
        .await
        .expect_err("no signature from a hung HSM");
    let refused_after = asked.elapsed();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    // Let the load pile against the hung HSM for a while: nothing may grow with it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (threads_hung, rss_hung) = threads_and_rss_kib(pid);
    eprintln!(
        "hung: health NOT_SERVING after {not_serving_after:?}, a new Sign refused after {refused_after:?}; threads {threads_before} -> {threads_hung}, RSS {rss_before} -> {rss_hung} KiB"
    );
    // Issue 11's bounds: NOT_SERVING within 1 s (a probe every 200 ms, a hang after 600 ms),
    // a new Sign refused within `token.unavailable_after_ms` (2 s) and the call's own trip.
    assert!(
        not_serving_after <= Duration::from_secs(1),
        "health NOT_SERVING only {not_serving_after:?} after the HSM hung"
    );
    assert!(
        refused_after <= Duration::from_millis(2_500),
        "a new Sign refused only after {refused_after:?}"
    );
    assert!(
        threads_hung <= threads_before + 2,
        "threads {threads_before} -> {threads_hung}"
    );
    assert!(
        rss_hung <= rss_before + rss_before / 2,
        "RSS {rss_before} -> {rss_hung} KiB"
    );

    // It answers again.
    r.server.thaw().unwrap();
    load.wait_ok(50, PATIENCE, "after SIGCONT").await;
    sign_and_verify(&mut c, &id, &public, b"after SIGCONT").await;

    // It dies, and a new one comes up on the same socket.
    r.server.kill_all().unwrap();
    let seen = load.unavailable();
    let killed_at = std::time::Instant::now();
    while load.unavailable() == seen {
        assert!(
            killed_at.elapsed() < PATIENCE,
            "no request noticed the dead HSM"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r.server.restart().unwrap();
    // Issue 11's bound: signing resumes within 5 s of the new server (about 1.2 s measured; this
    // test runs alone, see .config/nextest.toml).
    let back = load
        .wait_ok(
            1,
            crate::token_faults::BACK_WITHIN,
            "after the new server started",
        )
        .await;
    let codes = load.finish().await;
    eprintln!("dead: signing back {back:?} after the new server; errors {codes:?}");
    let wrong: Vec<_> = codes
        .keys()
        .filter(|k| !k.starts_with("Unavailable"))
        .collect();
    assert!(
        wrong.is_empty(),
        "only UNAVAILABLE through the faults: {codes:?}"
    );
    sign_and_verify(&mut c, &id, &public, b"after the new server").await;
    // p11-kit-client can leave calls waiting forever on the dead server (a lost wakeup in its
    // RPC reader): signerd gives up on them after 2 s and replaces those worker threads, so at
    // most the workers (one per session) and the prober stay behind, stuck, beside their
    // replacements.
    let (threads_after, _) = threads_and_rss_kib(pid);
    eprintln!("dead: threads {threads_before} -> {threads_after}");
    assert!(
        threads_after <= threads_before + SESSIONS + 1,
        "threads {threads_before} -> {threads_after} after the HSM died"
    );
    r.signerds[0]
        .process()
        .ensure_running()
        .expect("signerd was not restarted and did not crash");
}

/// The harness's handle on the remote HSM: stopping and continuing reaches the server and every
/// `p11-kit-remote`, and a killed server with its children leaves nothing running; a new
/// server on the same socket serves the same token. (How signerd rides through these faults
/// is the token layer's part, tested there.)
#[tokio::test]
async fn the_harness_stops_kills_and_restarts_the_remote_hsm_by_pid() {
    let mut r = remote("remote-harness", 1);
    let mut c = r.signerds[0].clients().await;
    let (id, public) = create_ecdsa(&mut c, "example.com/harness").await;
    let remotes = r.server.wait_for_remotes(1, REMOTE_TIMEOUT).unwrap();
    let server = r.server.server().unwrap();

    r.server.freeze().unwrap();
    for p in remotes.iter().chain([&server]) {
        wait_state(p, "stopped", |s| s == Some('T')).await;
    }
    r.server.thaw().unwrap();
    for p in remotes.iter().chain([&server]) {
        wait_state(p, "running again", |s| s.is_some() && s != Some('T')).await;
    }
    sign_and_verify(&mut c, &id, &public, b"after SIGCONT").await;

    r.server.kill_all().unwrap();
    for p in remotes.iter().chain([&server]) {
        assert!(!p.is_alive(), "process {} was killed", p.pid);
    }
    assert!(r.server.remotes().unwrap().is_empty());

    r.server.restart().unwrap();
    let restarted = r.server.server().unwrap();
    assert_ne!(restarted, server);
    // A fresh client process sees the token (and the key) through the new server at once.
    let out = std::process::Command::new("pkcs11-tool")
        .env("P11_KIT_SERVER_ADDRESS", r.server.address())
        .args([
            "--module",
            signerd_tests::p11kit::client_module()
                .unwrap()
                .to_str()
                .unwrap(),
            "--list-objects",
            "--type",
            "pubkey",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listing.contains(&id),
        "pkcs11-tool through the new server lists the key:\n{listing}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r.server.signal_all(Signal::SIGTERM).unwrap();
    restarted.wait_gone(REMOTE_TIMEOUT).unwrap();
}
