//! The soak load generator `scripts/soak.sh` runs: a notary-server-like mix against one signerd
//! over one mutual-TLS HTTP/2 connection (as notary-server holds one), a fixed number of calls in
//! flight, and a report every interval: requests, errors by code, latency percentiles, and the
//! signerd process's RSS, open file descriptors and threads from `/proc`.
//!
//! The mix: mostly Sign (256-byte content) over a working set of keys, some GetKeyInfo, a health
//! check now and then, and once per second a CreateKey whose key is used for a while and then
//! deleted (DeleteKey), as notary-server rotates and removes keys.
//!
//! Settings come from the environment (the script sets them): `SOAK_ADDR` (host:port),
//! `SOAK_CA`, `SOAK_CERT`, `SOAK_KEY` (PEM files), `SOAK_PID` (signerd's PID), `SOAK_MINUTES`
//! [10], `SOAK_IN_FLIGHT` [32], `SOAK_REPORT_SECS` [60], `SOAK_ROTATE` [1; 0 leaves out the
//! per-second CreateKey/DeleteKey, to tell the token's own memory from signerd's: SoftHSM keeps
//! every object it made, deleted ones too, until `C_Finalize`]. Exit status 1 when any call failed or
//! the last interval's RSS, descriptors or threads grew past the first's (RSS by more than 10 %).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signerd_proto::health::health_client::HealthClient;
use signerd_proto::health::HealthCheckRequest;
use signerd_proto::notary::key_management_client::KeyManagementClient;
use signerd_proto::notary::signer_client::SignerClient;
use signerd_proto::notary::{CreateKeyRequest, KeyId, SignatureRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Keys signed with, made at start.
const WORKING_SET: usize = 16;
/// Keys made by the periodic CreateKey that stay alive before the oldest is deleted.
const ROTATING_KEYS: usize = 8;
/// Out of every 100 calls of a worker: GetKeyInfo this many, health this many, Sign the rest.
const GET_KEY_INFO_PER_100: u64 = 10;
const HEALTH_PER_100: u64 = 2;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env<T: std::str::FromStr>(name: &str, default: Option<T>) -> Result<T, BoxError> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid value").into()),
        Err(_) => {
            default.ok_or_else(|| format!("{name} is not set (scripts/soak.sh sets it)").into())
        }
    }
}

/// What one interval saw.
#[derive(Default)]
struct Interval {
    ok: u64,
    errors: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
}

/// Shared counters of the run.
struct Stats {
    current: Mutex<Interval>,
    calls: AtomicU64,
}

impl Stats {
    fn record(&self, method: &str, started: Instant, result: Result<(), tonic::Status>) {
        let us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.latencies_us.push(us);
        match result {
            Ok(()) => current.ok += 1,
            Err(status) => {
                *current
                    .errors
                    .entry(format!("{method} {:?}", status.code()))
                    .or_default() += 1;
            }
        }
    }

    fn take(&self) -> Interval {
        std::mem::take(&mut *self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The signerd process as `/proc` shows it.
#[derive(Debug, Clone, Copy)]
struct ProcessSample {
    rss_kib: u64,
    fds: usize,
    threads: u64,
}

fn sample(pid: u32) -> Result<ProcessSample, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("signerd (pid {pid}) is gone: {e}"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    Ok(ProcessSample {
        rss_kib: field("VmRSS:"),
        fds,
        threads: field("Threads:"),
    })
}

async fn connect() -> Result<Channel, BoxError> {
    let read = |var: &str| -> Result<Vec<u8>, BoxError> {
        let path: String = env(var, None)?;
        std::fs::read(&path).map_err(|e| format!("{var}: {path}: {e}").into())
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("SOAK_CA")?))
        .domain_name("localhost")
        .identity(Identity::from_pem(read("SOAK_CERT")?, read("SOAK_KEY")?));
    let addr: String = env("SOAK_ADDR", None)?;
    Ok(Channel::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .timeout(Duration::from_secs(30))
        .connect()
        .await?)
}

async fn create(
    keys: &mut KeyManagementClient<Channel>,
    gun: &str,
) -> Result<String, tonic::Status> {
    let created = keys
        .create_key(CreateKeyRequest {
            algorithm: "ecdsa".into(),
            gun: gun.into(),
            role: "timestamp".into(),
        })
        .await?
        .into_inner();
    created
        .key_info
        .and_then(|i| i.key_id)
        .map(|k| k.id)
        .ok_or_else(|| tonic::Status::internal("CreateKey answered without a key ID"))
}

/// One caller: calls back to back until `until`.
async fn worker(
    n: u64,
    channel: Channel,
    keys: Arc<Vec<String>>,
    stats: Arc<Stats>,
    until: Instant,
) {
    let mut signer = SignerClient::new(channel.clone());
    let mut key_mgmt = KeyManagementClient::new(channel.clone());
    let mut health = HealthClient::new(channel);
    let content = vec![0x5a_u8; 256];
    let mut i = n;
    while Instant::now() < until {
        i += 1;
        let key = KeyId {
            id: keys[(i as usize) % keys.len()].clone(),
        };
        let started = Instant::now();
        match i % 100 {
            k if k < GET_KEY_INFO_PER_100 => {
                let r = key_mgmt.get_key_info(key).await.map(drop);
                stats.record("GetKeyInfo", started, r);
            }
            k if k < GET_KEY_INFO_PER_100 + HEALTH_PER_100 => {
                let r = health
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map(drop);
                stats.record("Health", started, r);
            }
            _ => {
                let r = signer
                    .sign(SignatureRequest {
                        key_id: Some(key),
                        content: content.clone(),
                    })
                    .await
                    .map(drop);
                stats.record("Sign", started, r);
            }
        }
        stats.calls.fetch_add(1, Ordering::Relaxed);
    }
}

/// Once a second: CreateKey, a Sign with the new key, and DeleteKey of the oldest rotating key.
async fn rotator(channel: Channel, stats: Arc<Stats>, until: Instant) {
    let mut keys = KeyManagementClient::new(channel.clone());
    let mut signer = SignerClient::new(channel);
    let mut alive: std::collections::VecDeque<String> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        n += 1;
        let started = Instant::now();
        match create(&mut keys, &format!("soak.example.com/rotating/{n}")).await {
            Ok(id) => {
                stats.record("CreateKey", started, Ok(()));
                let started = Instant::now();
                let r = signer
                    .sign(SignatureRequest {
                        key_id: Some(KeyId { id: id.clone() }),
                        content: b"fresh key".to_vec(),
                    })
                    .await
                    .map(drop);
                stats.record("Sign", started, r);
                alive.push_back(id);
            }
            Err(e) => stats.record("CreateKey", started, Err(e)),
        }
        if alive.len() > ROTATING_KEYS {
            if let Some(old) = alive.pop_front() {
                let started = Instant::now();
                let r = keys.delete_key(KeyId { id: old }).await.map(drop);
                stats.record("DeleteKey", started, r);
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let pid: u32 = env("SOAK_PID", None)?;
    let minutes: u64 = env("SOAK_MINUTES", Some(10))?;
    let in_flight: u64 = env("SOAK_IN_FLIGHT", Some(32))?;
    let report = Duration::from_secs(env("SOAK_REPORT_SECS", Some(60))?);
    let rotate = env::<u8>("SOAK_ROTATE", Some(1))? != 0;
    let channel = connect().await?;

    let mut key_mgmt = KeyManagementClient::new(channel.clone());
    let mut keys = Vec::new();
    for i in 0..WORKING_SET {
        keys.push(create(&mut key_mgmt, &format!("soak.example.com/app{i}")).await?);
    }
    let keys = Arc::new(keys);
    let stats = Arc::new(Stats {
        current: Mutex::new(Interval::default()),
        calls: AtomicU64::new(0),
    });
    let started = Instant::now();
    let until = started + Duration::from_secs(minutes * 60);
    println!(
        "soak: {minutes} min, {in_flight} in flight over one connection, signerd pid {pid}, report every {}s",
        report.as_secs()
    );
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>8} {:>9} {:>5} {:>7}  errors",
        "min", "requests", "req/s", "p50 ms", "p99 ms", "RSS MiB", "fds", "threads"
    );
    let mut tasks = Vec::new();
    for n in 0..in_flight {
        tasks.push(tokio::spawn(worker(
            n,
            channel.clone(),
            Arc::clone(&keys),
            Arc::clone(&stats),
            until,
        )));
    }
    if rotate {
        tasks.push(tokio::spawn(rotator(
            channel.clone(),
            Arc::clone(&stats),
            until,
        )));
    }

    let mut samples = Vec::new();
    let mut total_errors = 0u64;
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(report.min(until.saturating_duration_since(Instant::now()))).await;
        let done = Instant::now() >= until;
        if done {
            // The calls in flight at the deadline belong to the last interval.
            for t in tasks.drain(..) {
                t.await?;
            }
        }
        let mut interval = stats.take();
        let elapsed = last.elapsed().as_secs_f64();
        last = Instant::now();
        let requests = interval.ok + interval.errors.values().sum::<u64>();
        if requests == 0 && done {
            break;
        }
        interval.latencies_us.sort_unstable();
        let s = sample(pid)?;
        samples.push(s);
        total_errors += interval.errors.values().sum::<u64>();
        let errors = if interval.errors.is_empty() {
            "0".to_owned()
        } else {
            interval
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{:>6.1} {:>9} {:>8.0} {:>8.2} {:>8.2} {:>9.1} {:>5} {:>7}  {}",
            started.elapsed().as_secs_f64() / 60.0,
            requests,
            requests as f64 / elapsed.max(0.001),
            percentile(&interval.latencies_us, 50.0),
            percentile(&interval.latencies_us, 99.0),
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads,
            errors
        );
        if done {
            break;
        }
    }

    let (Some(first), Some(final_)) = (samples.first(), samples.last()) else {
        return Err("no interval was measured".into());
    };
    let rss_growth = final_.rss_kib as f64 / first.rss_kib.max(1) as f64 - 1.0;
    println!(
        "soak: {} calls, {total_errors} errors; RSS {:+.1} % (first {:.1} MiB, last {:.1} MiB), fds {} -> {}, threads {} -> {}",
        stats.calls.load(Ordering::Relaxed),
        rss_growth * 100.0,
        first.rss_kib as f64 / 1024.0,
        final_.rss_kib as f64 / 1024.0,
        first.fds,
        final_.fds,
        first.threads,
        final_.threads
    );
    let flat = rss_growth <= 0.10 && final_.fds <= first.fds && final_.threads <= first.threads;
    if total_errors > 0 || !flat {
        println!("soak: FAILED (errors, or RSS/fds/threads grew)");
        std::process::exit(1);
    }
    println!("soak: passed");
    Ok(())
}
