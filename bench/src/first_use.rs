//! `signerd-bench first-use`: what the first Sign with a key costs in a token of many keys.
//!
//! Makes `--keys` ECDSA keys in a throwaway SoftHSM token (through signerd's token layer, as
//! CreateKey makes them), starts signerd on it (pinned like `run`), and signs at 1 in flight
//! from one connection: once with each of `--sample` keys never used before (they were in the
//! token when signerd connected, so its key index has them), then once more with each (warm),
//! then with keys another process made while signerd was running (not in the index: signerd
//! searches the token once for each). Every signature is checked against the key's public key.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use signerd_proto::notary::signer_client::SignerClient;
use signerd_proto::notary::{KeyId as KeyIdMsg, SignatureRequest};
use signerd_tests::TestPki;
use signerd_token::{KeyAlgorithm, KeyDomain, KeyUsage, Token, TokenConfig};

use crate::bench::make_token;
use crate::load::{self, ClientTls};
use crate::servers::{self, SignerdSetup};
use crate::stats::Latency;
use crate::verify::PublicKey;

/// Arguments of `signerd-bench first-use`.
#[derive(Clone, Debug, clap::Args)]
pub struct FirstUseArgs {
    /// Keys in the token when signerd starts.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub keys: u32,
    /// Keys signed with for the first time (and then once more), spread over the token.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub sample: u32,
    /// Keys made by another process while signerd runs (each found by one search).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub late: u32,
    /// CPU list (taskset -c) for signerd.
    #[arg(long, default_value = "0")]
    pub server_cpus: String,
    /// The signerd binary [default: `signerd` beside this executable].
    #[arg(long)]
    pub signerd: Option<PathBuf>,
    /// Keep the temp dir (logs, token) instead of removing it.
    #[arg(long)]
    pub keep_dir: bool,
}

/// A key the benchmark made in the token.
struct Made {
    id: String,
    public: PublicKey,
}

/// Runs it; `Ok(false)` when a request failed or a signature was bad.
pub fn run(args: &FirstUseArgs) -> Result<bool, String> {
    let signerd_bin = match &args.signerd {
        Some(p) => {
            std::fs::canonicalize(p).map_err(|e| format!("--signerd {}: {e}", p.display()))?
        }
        None => crate::bench::beside_self("signerd")?,
    };
    let dir = tempfile::Builder::new()
        .prefix("signerd-bench-first-use-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let sub = |name: &str| -> Result<PathBuf, String> {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).map_err(|e| format!("{name}: {e}"))?;
        Ok(p)
    };
    let pki = TestPki::generate(&sub("pki")?).map_err(|e| format!("PKI: {e}"))?;
    let (token_uri, softhsm_conf) = make_token(&sub("token")?)?;
    // This process is the only user of the variable: SoftHSM reads it at C_Initialize.
    std::env::set_var("SOFTHSM2_CONF", &softhsm_conf);

    let began = Instant::now();
    let early = make_keys(&token_uri, args.keys as usize, "early")?;
    eprintln!(
        "first-use: {} keys made in {:.1} s",
        early.len(),
        began.elapsed().as_secs_f64()
    );

    let setup = SignerdSetup {
        binary: signerd_bin,
        token_uri: token_uri.clone(),
        softhsm_conf,
        sessions: Some(1),
    };
    let started = Instant::now();
    let signerd = servers::signerd(&sub("signerd")?, &pki, &setup, &args.server_cpus)
        .map_err(|e| format!("start signerd: {e}"))?;
    let tls = ClientTls::load(pki.ca.cert_path(), &pki.client.cert, &pki.client.key)
        .map_err(|e| format!("client TLS files: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;

    let step = (early.len() / args.sample as usize).max(1);
    let sample: Vec<&Made> = early.iter().step_by(step).collect();
    let mut failures = 0;
    let (cold_start, first, warm) = runtime.block_on(async {
        let channel = load::connect(signerd.addr, &tls).await?;
        let mut client = SignerClient::new(channel);
        // The time to the first answered Sign covers the connect and the index read.
        let mut not_yet = 0;
        let cold = loop {
            if sign(&mut client, sample[0], &mut not_yet).await.is_some() {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err("signerd did not sign within 60 s of its start".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let mut first = Vec::new();
        for key in &sample[1..] {
            first.extend(sign(&mut client, key, &mut failures).await);
        }
        let mut warm = Vec::new();
        for key in &sample[1..] {
            warm.extend(sign(&mut client, key, &mut failures).await);
        }
        Ok::<_, String>((cold, first, warm))
    })?;

    let late = make_keys(&token_uri, args.late as usize, "late")?;
    let searched = runtime.block_on(async {
        let channel = load::connect(signerd.addr, &tls).await?;
        let mut client = SignerClient::new(channel);
        let mut times = Vec::new();
        for key in &late {
            times.extend(sign(&mut client, key, &mut failures).await);
        }
        Ok::<_, String>(times)
    })?;

    let logs = signerd.process.logs();
    let index_line = logs
        .lines()
        .find(|l| l.contains("key index read"))
        .map(|l| l.split("key index read").nth(1).unwrap_or_default().trim())
        .unwrap_or("(no `key index read` line in signerd's log)");
    let show = |name: &str, mut times: Vec<Duration>| {
        let n = times.len();
        let l = Latency::of(&mut times);
        println!(
            "| {name} | {n} | {:.2} | {:.2} | {:.2} | {:.2} |",
            l.p50_us / 1000.0,
            l.p90_us / 1000.0,
            l.p99_us / 1000.0,
            l.max_us / 1000.0
        );
    };
    println!(
        "First Sign with a key, signerd on CPU {} with 1 token session, {} ECDSA P-256 keys in the SoftHSM token, 1 in flight:",
        args.server_cpus,
        early.len()
    );
    println!();
    println!("| Sign | keys | ms p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    show(
        "first use of a key in the token at connect (key index)",
        first,
    );
    show("second use of the same keys", warm);
    show(
        "first use of a key made by another process after connect (one search)",
        searched,
    );
    println!();
    println!(
        "signerd start to first answered Sign: {:.0} ms; its key index: {index_line}",
        cold_start.as_secs_f64() * 1000.0
    );
    println!("Failed requests or bad signatures: {failures}");
    drop(signerd);
    if args.keep_dir {
        eprintln!("first-use: kept {}", dir.keep().display());
    }
    Ok(failures == 0)
}

/// Makes `n` ECDSA keys in the token through signerd's token layer (as CreateKey does).
fn make_keys(token_uri: &str, n: usize, gun: &str) -> Result<Vec<Made>, String> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let uri = token_uri.parse().map_err(|e| format!("token URI: {e}"))?;
    let token = Token::open(TokenConfig::new(uri)).map_err(|e| e.to_string())?;
    token.connect().map_err(|e| e.to_string())?;
    let usage = KeyUsage::new(
        KeyDomain::Notary,
        format!("bench.example/{gun}"),
        "timestamp",
    );
    let mut made = Vec::with_capacity(n);
    for _ in 0..n {
        let info = token
            .create_key(KeyAlgorithm::Ecdsa, &usage)
            .map_err(|e| e.to_string())?;
        let public =
            PublicKey::from_notary("ecdsa", &info.public_key).map_err(|e| e.to_string())?;
        made.push(Made {
            id: info.id.to_string(),
            public,
        });
    }
    token.close();
    Ok(made)
}

/// One Sign with `key`: its latency, or `None` (counted in `failures`) when it failed or the
/// signature does not verify.
async fn sign(
    client: &mut SignerClient<tonic::transport::Channel>,
    key: &Made,
    failures: &mut usize,
) -> Option<Duration> {
    let content = format!("first use of {}", key.id).into_bytes();
    let sent = Instant::now();
    let answer = client
        .sign(SignatureRequest {
            key_id: Some(KeyIdMsg { id: key.id.clone() }),
            content: content.clone(),
        })
        .await;
    let took = sent.elapsed();
    match answer {
        Ok(signature)
            if key
                .public
                .verify(&content, &signature.get_ref().content)
                .is_ok() =>
        {
            Some(took)
        }
        Ok(_) => {
            eprintln!("first-use: BAD SIGNATURE from key {}", key.id);
            *failures += 1;
            None
        }
        Err(status) => {
            eprintln!(
                "first-use: Sign with {}: {:?}: {}",
                key.id,
                status.code(),
                status.message()
            );
            *failures += 1;
            None
        }
    }
}
