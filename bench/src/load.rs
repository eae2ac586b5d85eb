//! The gRPC load generator: ONE mutual-TLS HTTP/2 connection, as notary-server keeps to its
//! signer (or several, `--connections`, the streams spread over them in turn), with a fixed
//! number of `Sign` requests in flight on it (closed loop: each stream sends its next request
//! when its answer arrives), for a fixed time after a warm-up.

use std::path::Path;
use std::time::{Duration, Instant};

use signerd_proto::notary::key_management_client::KeyManagementClient;
use signerd_proto::notary::signer_client::SignerClient;
use signerd_proto::notary::{CreateKeyRequest, KeyId, SignatureRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::procstat::{self, Footprint};
use crate::stats::Latency;
use crate::verify::Sample;

/// No request may take longer than this: a stuck server fails the run instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Each stream keeps its first signature and then one in this many for the local check.
const SAMPLE_EVERY: u64 = 509;

/// At most this many signatures are kept per stream.
const SAMPLES_PER_STREAM: usize = 4;

/// At most this many latencies are kept per stream (bounds memory on any machine).
const LATENCIES_PER_STREAM: usize = 4_000_000;

/// What the client presents and trusts.
#[derive(Clone, Debug)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl ClientTls {
    /// Reads the CA the server certificate chains to, and the client certificate and key.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> std::io::Result<ClientTls> {
        Ok(ClientTls {
            ca_pem: std::fs::read(ca)?,
            cert_pem: std::fs::read(cert)?,
            key_pem: std::fs::read(key)?,
        })
    }
}

/// Opens one HTTP/2 connection to `addr` (the server certificate names `localhost`).
pub async fn connect(addr: std::net::SocketAddr, tls: &ClientTls) -> Result<Channel, String> {
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&tls.ca_pem))
        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
        .domain_name("localhost");
    Channel::from_shared(format!("https://{addr}"))
        .map_err(|e| e.to_string())?
        .tls_config(config)
        .map_err(|e| format!("client TLS: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e:?}"))
}

/// A key made for the benchmark through `CreateKey`.
#[derive(Clone, Debug)]
pub struct BenchKey {
    /// The TUF key ID the server returned.
    pub id: String,
    /// The public key in Notary's encoding.
    pub public_key: Vec<u8>,
}

/// Creates a `timestamp` key of `algorithm` on the server, as notary-server would.
pub async fn create_key(channel: &Channel, algorithm: &str) -> Result<BenchKey, String> {
    let mut keys = KeyManagementClient::new(channel.clone());
    let created = keys
        .create_key(CreateKeyRequest {
            algorithm: algorithm.to_owned(),
            gun: "bench.example/signerd".to_owned(),
            role: "timestamp".to_owned(),
        })
        .await
        .map_err(|s| format!("CreateKey({algorithm}): {:?}: {}", s.code(), s.message()))?
        .into_inner();
    let id = created
        .key_info
        .and_then(|info| info.key_id)
        .map(|id| id.id)
        .ok_or_else(|| format!("CreateKey({algorithm}) returned no key ID"))?;
    Ok(BenchKey {
        id,
        public_key: created.public_key,
    })
}

/// How one run loads the server.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Requests in flight, on all connections together.
    pub in_flight: usize,
    /// Connections the requests in flight are spread over.
    pub connections: usize,
    /// Load before the measured window (connections warm, caches filled).
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Bytes of content per request.
    pub content_len: usize,
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// Requests answered within the window.
    pub ops: u64,
    /// Requests that failed (any time).
    pub errors: u64,
    /// The first failure's words.
    pub first_error: Option<String>,
    /// The window's actual length.
    pub window: Duration,
    /// The server's CPU ticks in the window.
    pub server_cpu_ticks: u64,
    /// The load generator's own CPU ticks in the window.
    pub client_cpu_ticks: u64,
    /// Ticks per second of the two above.
    pub ticks_per_second: u64,
    /// The server's threads and memory at the end of the window.
    pub footprint: Footprint,
    /// Latency percentiles of the requests in the window.
    pub latency: Latency,
    /// Signatures kept for the local check.
    pub samples: Vec<Sample>,
}

impl RunResult {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The server's CPU time per request, in microseconds.
    pub fn server_cpu_us_per_op(&self) -> f64 {
        ticks_us(self.server_cpu_ticks, self.ticks_per_second) / self.ops.max(1) as f64
    }

    /// Share of one core the server used in the window (well below 1.0 when pinned and loaded:
    /// something else ran on its core, or it waited).
    pub fn server_busy(&self) -> f64 {
        ticks_us(self.server_cpu_ticks, self.ticks_per_second)
            / (self.window.as_secs_f64() * 1e6).max(1.0)
    }

    /// Share of one core the load generator used in the window (near 1.0: it was the limit).
    pub fn client_busy(&self) -> f64 {
        ticks_us(self.client_cpu_ticks, self.ticks_per_second)
            / (self.window.as_secs_f64() * 1e6).max(1.0)
    }
}

/// Clock ticks in microseconds.
pub fn ticks_us(ticks: u64, per_second: u64) -> f64 {
    ticks as f64 * 1e6 / per_second.max(1) as f64
}

/// What one stream saw.
#[derive(Default)]
struct StreamResult {
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Vec<Duration>,
    samples: Vec<Sample>,
}

/// Runs `load` against `key` on the server behind `channels` (stream `i` on channel `i` modulo
/// their number), whose process is `server_pid`.
pub async fn run(
    channels: &[Channel],
    server_pid: u32,
    key: &BenchKey,
    load: Load,
) -> Result<RunResult, String> {
    let start = Instant::now() + load.warmup;
    let end = start + load.duration;
    let streams: Vec<_> = (0..load.in_flight)
        .map(|stream| {
            let client = SignerClient::new(channels[stream % channels.len()].clone());
            let key_id = key.id.clone();
            tokio::spawn(stream_loop(
                client,
                key_id,
                content_for(stream, load.content_len),
                start,
                end,
            ))
        })
        .collect();

    let proc_err = |e: std::io::Error| format!("cannot read /proc for the server: {e}");
    let own_pid = std::process::id();
    tokio::time::sleep_until(start.into()).await;
    let (server0, client0, t0) = (
        procstat::cpu_ticks(server_pid).map_err(proc_err)?,
        procstat::cpu_ticks(own_pid).map_err(proc_err)?,
        Instant::now(),
    );
    tokio::time::sleep_until(end.into()).await;
    let (server1, client1, t1) = (
        procstat::cpu_ticks(server_pid).map_err(proc_err)?,
        procstat::cpu_ticks(own_pid).map_err(proc_err)?,
        Instant::now(),
    );
    let footprint = procstat::footprint(server_pid).map_err(proc_err)?;

    let mut result = RunResult {
        window: t1 - t0,
        server_cpu_ticks: server1.saturating_sub(server0),
        client_cpu_ticks: client1.saturating_sub(client0),
        ticks_per_second: procstat::ticks_per_second(),
        footprint,
        ..RunResult::default()
    };
    let mut latencies = Vec::new();
    for stream in streams {
        let s = stream
            .await
            .map_err(|e| format!("load stream failed: {e}"))?;
        result.ops += s.ops;
        result.errors += s.errors;
        if result.first_error.is_none() {
            result.first_error = s.first_error;
        }
        latencies.extend(s.latencies);
        result.samples.extend(s.samples);
    }
    result.latency = Latency::of(&mut latencies);
    Ok(result)
}

/// 256 bytes (or `len`) that differ per stream, like the canonical JSON notary-server signs.
fn content_for(stream: usize, len: usize) -> Vec<u8> {
    let text = format!(
        r#"{{"_type":"Timestamp","expires":"2030-01-01T00:00:00Z","meta":{{"snapshot.json":{{"stream":{stream}}}}},"version":1}}"#
    );
    text.bytes()
        .chain(std::iter::repeat(b' '))
        .take(len)
        .collect()
}

/// One stream: request, await the answer, repeat until `end`. Counts only requests that
/// started and finished inside [`start`, `end`].
async fn stream_loop(
    mut client: SignerClient<Channel>,
    key_id: String,
    content: Vec<u8>,
    start: Instant,
    end: Instant,
) -> StreamResult {
    let mut result = StreamResult::default();
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let request = SignatureRequest {
            key_id: Some(KeyId { id: key_id.clone() }),
            content: content.clone(),
        };
        let answer = client.sign(request).await;
        let done = Instant::now();
        match answer {
            Ok(response) => {
                if sent < start || done > end {
                    continue;
                }
                result.ops += 1;
                if result.latencies.len() < LATENCIES_PER_STREAM {
                    result.latencies.push(done - sent);
                }
                if result.samples.len() < SAMPLES_PER_STREAM && result.ops % SAMPLE_EVERY == 1 {
                    result.samples.push(Sample {
                        content: content.clone(),
                        signature: response.into_inner().content,
                    });
                }
            }
            Err(status) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| {
                    format!("Sign: {:?}: {}", status.code(), status.message())
                });
                // A server that fails every request must not turn the loop into a busy spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    result
}
