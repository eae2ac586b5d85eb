//! The token alone: `C_Sign` in a loop through cryptoki, one logged-in session per thread, on a
//! SoftHSM token of the same kind signerd uses and with a key made the way signerd makes it. This
//! is the ceiling: a signer over this token can at best match it.
//!
//! It runs as a child process of the benchmark (`signerd-bench token-loop`, pinned with
//! `taskset` like the servers) so that its CPU time is read from `/proc` the same way, and
//! prints one JSON report on stdout.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use sha2::{Digest, Sha256};
use signerd_token::{KeyAlgorithm, KeyId, KeyUsage, Pkcs11Uri, Token, TokenConfig};

use crate::procstat::{self, Footprint};
use crate::stats::Latency;
use crate::verify::Sample;

/// Arguments of the `token-loop` child.
#[derive(Clone, Debug, clap::Args)]
pub struct TokenLoopArgs {
    /// Token URI (module-path and pin-source included).
    #[arg(long)]
    pub token: String,
    /// ecdsa, ed25519 or rsa.
    #[arg(long)]
    pub algorithm: String,
    /// A key made by an earlier run (hex TUF key ID); without it a new key is generated.
    #[arg(long)]
    pub key_id: Option<String>,
    /// Threads, each with its own session.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Milliseconds of signing before the measured window.
    #[arg(long)]
    pub warmup_ms: u64,
    /// Milliseconds of the measured window.
    #[arg(long)]
    pub duration_ms: u64,
    /// Bytes of content per signature (hashed as signerd hashes it).
    #[arg(long, default_value_t = 256)]
    pub content_len: usize,
}

/// What the child reports.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TokenLoopReport {
    /// The key used (to reuse it in the next run).
    pub key_id: String,
    /// Its public key in Notary's encoding, hex.
    pub public_key: String,
    /// Signatures completed inside the window.
    pub ops: u64,
    /// The window's actual length in seconds.
    pub window_secs: f64,
    /// The process's CPU ticks in the window.
    pub cpu_ticks: u64,
    /// Ticks per second.
    pub ticks_per_second: u64,
    /// Threads and memory at the end of the window.
    pub footprint: Footprint,
    /// Latency of one `C_Sign` (with its hash).
    pub latency: Latency,
    /// Signatures kept for the local check.
    pub samples: Vec<Sample>,
}

impl TokenLoopReport {
    /// Signatures per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.window_secs.max(1e-9)
    }

    /// CPU time per signature, in microseconds.
    pub fn cpu_us_per_op(&self) -> f64 {
        crate::load::ticks_us(self.cpu_ticks, self.ticks_per_second) / self.ops.max(1) as f64
    }
}

/// Each thread keeps its first signature and then one in this many.
const SAMPLE_EVERY: u64 = 509;
/// At most this many signatures per thread.
const SAMPLES_PER_THREAD: usize = 4;
/// At most this many latencies per thread.
const LATENCIES_PER_THREAD: usize = 4_000_000;

/// The child: makes (or finds) the key, signs in a loop, reports.
pub fn run_child(args: &TokenLoopArgs) -> Result<TokenLoopReport, String> {
    let uri: Pkcs11Uri = args.token.parse().map_err(|e| format!("token URI: {e}"))?;
    let algorithm: KeyAlgorithm = args.algorithm.parse().map_err(|e| format!("{e}"))?;

    // The key is made (or read) through signerd's own token layer, so it is the same kind of
    // object signerd signs with; then the module is finalized and the loop uses raw cryptoki.
    let token = Token::open(TokenConfig::new(uri.clone())).map_err(|e| e.to_string())?;
    let info = match &args.key_id {
        Some(id) => {
            let id: KeyId = id.parse().map_err(|e| format!("{e}"))?;
            token.key_info(&id)
        }
        None => token.create_key(
            algorithm,
            &KeyUsage {
                gun: "bench.example/token-only".to_owned(),
                role: "timestamp".to_owned(),
                ..Default::default()
            },
        ),
    }
    .map_err(|e| e.to_string())?;
    token.close();

    let module_path = uri
        .module_path
        .as_ref()
        .ok_or("token URI has no module-path")?;
    let module = Pkcs11::new(module_path).map_err(|e| format!("load module: {e}"))?;
    match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(format!("C_Initialize: {e}")),
    }
    let label = uri.token.as_deref().ok_or("token URI has no token label")?;
    let slot = module
        .get_slots_with_token()
        .map_err(|e| format!("C_GetSlotList: {e}"))?
        .into_iter()
        .find(|slot| {
            module
                .get_token_info(*slot)
                .is_ok_and(|t| t.label().trim_end() == label)
        })
        .ok_or_else(|| format!("no token labelled {label}"))?;
    let sessions = (0..args.threads)
        .map(|_| module.open_rw_session(slot))
        .collect::<Result<Vec<Session>, _>>()
        .map_err(|e| format!("C_OpenSession: {e}"))?;
    let pin = uri
        .pin_source
        .as_ref()
        .ok_or("token URI has no pin-source")?
        .read()
        .map_err(|e| e.to_string())?;
    // Login state belongs to the application, not the session: one login serves every session.
    match sessions[0].login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => return Err(format!("C_Login: {e}")),
    }
    let handle = *sessions[0]
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(info.id.as_bytes().to_vec()),
        ])
        .map_err(|e| format!("C_FindObjects: {e}"))?
        .first()
        .ok_or("the key's private half is not in the token")?;

    let start = Instant::now() + Duration::from_millis(args.warmup_ms);
    let end = start + Duration::from_millis(args.duration_ms);
    let pid = std::process::id();
    let proc_err = |e: std::io::Error| format!("/proc/self: {e}");
    let (results, cpu0, cpu1, t0, t1, footprint) = thread::scope(|scope| {
        let workers: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(i, session)| {
                let content = content_for(i, args.content_len);
                scope.spawn(move || sign_loop(&session, handle, algorithm, content, start, end))
            })
            .collect();
        let measure = || -> Result<_, String> {
            thread::sleep(start.saturating_duration_since(Instant::now()));
            let (cpu0, t0) = (procstat::cpu_ticks(pid).map_err(proc_err)?, Instant::now());
            thread::sleep(end.saturating_duration_since(Instant::now()));
            let (cpu1, t1) = (procstat::cpu_ticks(pid).map_err(proc_err)?, Instant::now());
            Ok((
                cpu0,
                cpu1,
                t0,
                t1,
                procstat::footprint(pid).map_err(proc_err)?,
            ))
        };
        let measured = measure();
        let results: Vec<_> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("sign thread panicked".into()))
            })
            .collect();
        measured.map(|(cpu0, cpu1, t0, t1, f)| (results, cpu0, cpu1, t0, t1, f))
    })?;

    let mut ops = 0;
    let mut latencies = Vec::new();
    let mut samples = Vec::new();
    for result in results {
        let r = result?;
        ops += r.ops;
        latencies.extend(r.latencies);
        samples.extend(r.samples);
    }
    Ok(TokenLoopReport {
        key_id: info.id.to_string(),
        public_key: hex::encode(&info.public_key),
        ops,
        window_secs: (t1 - t0).as_secs_f64(),
        cpu_ticks: cpu1.saturating_sub(cpu0),
        ticks_per_second: procstat::ticks_per_second(),
        footprint,
        latency: Latency::of(&mut latencies),
        samples,
    })
}

/// Content per thread, as long as the requests the servers get.
fn content_for(thread: usize, len: usize) -> Vec<u8> {
    let text = format!(r#"{{"_type":"Timestamp","thread":{thread},"version":1}}"#);
    text.bytes()
        .chain(std::iter::repeat(b' '))
        .take(len)
        .collect()
}

struct LoopResult {
    ops: u64,
    latencies: Vec<Duration>,
    samples: Vec<Sample>,
}

/// Signs as signerd signs for Notary (hash, then the raw mechanism) until `end`.
fn sign_loop(
    session: &Session,
    key: ObjectHandle,
    algorithm: KeyAlgorithm,
    content: Vec<u8>,
    start: Instant,
    end: Instant,
) -> Result<LoopResult, String> {
    let mechanism = match algorithm {
        KeyAlgorithm::Ecdsa => Mechanism::Ecdsa,
        KeyAlgorithm::Ed25519 => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
        KeyAlgorithm::Rsa => Mechanism::RsaPkcsPss(PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32.into(),
        }),
    };
    let mut result = LoopResult {
        ops: 0,
        latencies: Vec::new(),
        samples: Vec::new(),
    };
    loop {
        let began = Instant::now();
        if began >= end {
            break;
        }
        let digest: [u8; 32] = Sha256::digest(&content).into();
        let input: &[u8] = match algorithm {
            KeyAlgorithm::Ed25519 => &content,
            KeyAlgorithm::Ecdsa | KeyAlgorithm::Rsa => &digest,
        };
        let signature = session
            .sign(&mechanism, key, input)
            .map_err(|e| format!("C_Sign: {e}"))?;
        let done = Instant::now();
        if began < start || done > end {
            continue;
        }
        result.ops += 1;
        if result.latencies.len() < LATENCIES_PER_THREAD {
            result.latencies.push(done - began);
        }
        if result.samples.len() < SAMPLES_PER_THREAD && result.ops % SAMPLE_EVERY == 1 {
            result.samples.push(Sample {
                content: content.clone(),
                signature,
            });
        }
    }
    Ok(result)
}

/// One run of the child: what it signs and for how long.
#[derive(Clone, Copy, Debug)]
pub struct TokenLoopSpec<'a> {
    /// ecdsa, ed25519 or rsa.
    pub algorithm: &'a str,
    /// The key of an earlier run, if any.
    pub key_id: Option<&'a str>,
    /// Threads (sessions).
    pub threads: u16,
    /// Signing before the window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Bytes per content.
    pub content_len: usize,
}

/// The parent side: what a run of the child needs.
#[derive(Clone, Debug)]
pub struct TokenLoopRun<'a> {
    /// This benchmark's own executable.
    pub bench_exe: &'a Path,
    /// The token URI.
    pub token_uri: &'a str,
    /// Its `SOFTHSM2_CONF`.
    pub softhsm_conf: &'a Path,
    /// CPUs for `taskset -c`.
    pub cpus: &'a str,
    /// Where the child's output files go.
    pub dir: &'a Path,
}

impl TokenLoopRun<'_> {
    /// Runs the child once and parses its report.
    pub fn run(&self, spec: &TokenLoopSpec<'_>, tag: &str) -> Result<TokenLoopReport, String> {
        let TokenLoopSpec {
            algorithm,
            key_id,
            threads,
            warmup,
            duration,
            content_len,
        } = *spec;
        let mut command = crate::servers::pinned(self.cpus, self.bench_exe);
        command
            .arg("token-loop")
            .arg("--token")
            .arg(self.token_uri)
            .arg("--algorithm")
            .arg(algorithm)
            .arg("--threads")
            .arg(threads.to_string())
            .arg("--warmup-ms")
            .arg(warmup.as_millis().to_string())
            .arg("--duration-ms")
            .arg(duration.as_millis().to_string())
            .arg("--content-len")
            .arg(content_len.to_string())
            .env("SOFTHSM2_CONF", self.softhsm_conf)
            .current_dir(self.dir);
        if let Some(id) = key_id {
            command.arg("--key-id").arg(id);
        }
        // Key generation (RSA-3072 in SoftHSM takes seconds) plus the run, with room to spare.
        let timeout = warmup + duration + Duration::from_secs(120);
        let out = signerd_tests::process::output_with_timeout(
            command,
            None,
            &self.dir.join(format!("token-loop-{tag}")),
            timeout,
        )
        .map_err(|e| format!("token loop: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "token loop exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "token loop report unreadable ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}
