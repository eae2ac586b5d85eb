//! signerd's runtime threads run under `SCHED_BATCH` while one connection signs on the Notary
//! port (notary-server's one connection: answers are sent in batches, docs/performance.md),
//! and under `SCHED_OTHER` as soon as a lighter connection signs beside it (a light client's
//! calls then preempt a busy token worker, so it keeps its share; `hostile_input`), and back
//! once the second one is quiet. Connections that each keep more calls in flight than their
//! share of signerd's places, evenly (a signer behind a load balancer), batch too. Read from
//! `/proc/PID/task/*/stat` (the policy field).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signerd_proto::notary::signer_client::SignerClient;
use signerd_proto::notary::{CreateKeyRequest, KeyId, SignatureRequest};
use signerd_tests::signerd::{Signerd, TestToken};
use signerd_tests::{TestDir, TestPki};
use tonic::transport::Channel;

/// `SCHED_OTHER` and `SCHED_BATCH` as `/proc/PID/task/TID/stat` reports them (field 41).
const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// The scheduling policy of each of signerd's runtime threads (named `signerd-rt`).
fn runtime_policies(pid: u32) -> Vec<u32> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim() != "signerd-rt" {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.join("stat")) else {
            continue;
        };
        let policy = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(38))
            .and_then(|p| p.parse().ok())
            .expect("a policy field in /proc/PID/task/TID/stat");
        policies.push(policy);
    }
    policies
}

/// Waits (up to 20 s) until every runtime thread runs under `policy`: a thread follows the
/// count of clients when it next wakes.
async fn until_all(pid: u32, policy: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let policies = runtime_policies(pid);
        assert!(
            !policies.is_empty(),
            "signerd has runtime threads named signerd-rt"
        );
        if policies.iter().all(|p| *p == policy) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the runtime threads' policies are {policies:?}, not all {policy}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection that signs, a number of calls in flight, until stopped.
struct Signing {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    calls: tokio::task::JoinSet<()>,
}

impl Signing {
    fn start(channel: Channel, id: &str, in_flight: usize) -> Signing {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..in_flight {
            let mut client = SignerClient::new(channel.clone());
            let id = id.to_owned();
            let stop = Arc::clone(&stop);
            let done = Arc::clone(&done);
            calls.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    client
                        .sign(SignatureRequest {
                            key_id: Some(KeyId { id: id.clone() }),
                            content: b"scheduling".to_vec(),
                        })
                        .await
                        .expect("Sign answers");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        Signing { stop, done, calls }
    }

    /// Waits (up to 20 s) until this connection has had `count` Signs answered.
    async fn until_signed(&self, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.done.load(Ordering::Relaxed) < count {
            assert!(
                Instant::now() < deadline,
                "Signs answered on the connection"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(call) = self.calls.join_next().await {
            call.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_threads_batch_with_one_client_or_even_heavy_ones_and_not_beside_a_light_one() {
    let dir = TestDir::new("scheduling").unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    let token = TestToken::create(dir.path()).unwrap();
    let mut signerd = Signerd::start(dir.path(), "signerd", &token, &pki).unwrap();
    let pid = signerd.process().id();
    let created = signerd
        .clients()
        .await
        .keys
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: "example.com/scheduling".into(),
            role: "timestamp".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.key_info.unwrap().key_id.unwrap().id;

    let first = Signing::start(signerd.channel().await.unwrap(), &id, LIGHT);
    first.until_signed(10).await;
    until_all(pid, SCHED_BATCH, "one connection signing").await;

    let second = Signing::start(signerd.channel().await.unwrap(), &id, LIGHT);
    second.until_signed(10).await;
    until_all(pid, SCHED_OTHER, "two connections signing").await;

    second.stop().await;
    until_all(pid, SCHED_BATCH, "the second connection quiet again").await;

    // Two connections that each keep more calls in flight than their share, beside the light
    // one: it still has the runtime threads under SCHED_OTHER; once it is quiet, the two
    // batch.
    let heavy = [
        Signing::start(signerd.channel().await.unwrap(), &id, HEAVY),
        Signing::start(signerd.channel().await.unwrap(), &id, HEAVY),
    ];
    for connection in &heavy {
        connection.until_signed(10).await;
    }
    until_all(pid, SCHED_OTHER, "a light connection beside two heavy ones").await;
    first.stop().await;
    until_all(pid, SCHED_BATCH, "two heavy connections, evenly").await;
    for connection in heavy {
        connection.stop().await;
    }
}

/// Calls in flight on a light connection: within its share of signerd's places with two
/// connections active (8 per token worker plus one per core while they batch: 17 on one core,
/// 26 on two).
const LIGHT: usize = 4;

/// Calls in flight on a heavy connection: over its share of signerd's places with two
/// connections active on any machine this runs on (44 places on 4 cores, 22 each).
const HEAVY: usize = 48;
