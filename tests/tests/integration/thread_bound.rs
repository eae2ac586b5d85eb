//! signerd's thread count stays bounded under any load: 2,000 `Sign` requests in flight at
//! once (ten HTTP/2 connections of 200 streams) run on the fixed token workers, and what the
//! queue cannot hold is refused with RESOURCE_EXHAUSTED instead of growing threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signerd_proto::notary::signer_client::SignerClient;
use signerd_proto::notary::{CreateKeyRequest, KeyId, SignatureRequest};
use signerd_tests::signerd::{Signerd, TestToken};
use signerd_tests::{TestDir, TestPki};
use tonic::Code;

/// Token sessions (and so token workers) of signerd's default config: one per CPU, plus one
/// (signerd runs on the CPUs this test may run on).
fn sessions() -> usize {
    signerd_vocab::defaults::token_sessions()
}
/// Requests in flight at once.
const IN_FLIGHT: usize = 2_000;
/// Connections they are spread over (each well under HTTP/2's usual stream limit).
const CONNECTIONS: usize = 10;

/// `Threads:` of a process.
fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc readable");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads: in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_stay_bounded_with_2000_requests_in_flight() {
    let dir = TestDir::new("thread-bound").unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let token = TestToken::create(dir.path()).unwrap();
    let mut signerd = Signerd::start(dir.path(), "signerd", &token, &pki).unwrap();
    let pid = signerd.process().id();

    let clients = signerd.clients().await;
    let created = clients
        .keys
        .clone()
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "example.com/bound".into(),
            role: "timestamp".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.key_info.unwrap().key_id.unwrap().id;

    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(signerd.channel().await.expect("mTLS connection"));
    }

    // Sample the daemon's threads while the requests run.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        tokio::task::spawn_blocking(move || {
            let mut most = 0;
            while !done.load(Ordering::Relaxed) {
                most = most.max(threads_of(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            most.max(threads_of(pid))
        })
    };
    let requests: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let mut client = SignerClient::new(channels[i % CONNECTIONS].clone());
            let request = SignatureRequest {
                key_id: Some(KeyId { id: id.clone() }),
                content: vec![b'x'; 256],
            };
            tokio::spawn(async move { client.sign(request).await.map(|_| ()) })
        })
        .collect();
    let mut ok = 0;
    let mut shed = 0;
    for request in requests {
        match request.await.unwrap() {
            Ok(()) => ok += 1,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    status.message().contains("reduce load"),
                    "a refusal says what to do: {status:?}"
                );
                shed += 1;
            }
            Err(status) => panic!("only OK or RESOURCE_EXHAUSTED expected: {status:?}"),
        }
    }
    done.store(true, Ordering::Relaxed);
    let most = sampler.await.unwrap();

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Workers (one per session) + tokio's runtime workers (one per core) + a few others
    // (main, signal handling, the admin socket).
    let bound = sessions() + cores + 8;
    eprintln!("{ok} signed, {shed} refused; at most {most} threads (bound {bound})");
    assert!(ok > 0, "some requests must be signed");
    assert_eq!(ok + shed, IN_FLIGHT);
    assert!(
        most <= bound,
        "signerd grew to {most} threads under {IN_FLIGHT} requests in flight (bound {bound})"
    );
    assert!(
        signerd.process().try_exit_status().unwrap().is_none(),
        "signerd stays up"
    );
}
