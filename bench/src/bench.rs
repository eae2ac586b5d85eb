//! One benchmark run: a throwaway PKI and tokens, the Go notary-signer and signerd pinned to the
//! server CPU, the token-only loop, the load series from the client CPU, the local signature
//! check, the table and the plot.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use signerd_tests::TestPki;
use signerd_token::softhsm::SoftHsmDir;

pub use crate::args::RunArgs;
use crate::load::{self, BenchKey, ClientTls, Load, RunResult};
use crate::procstat;
use crate::report::{self, Results, ServerRun, Signer, TokenRun};
use crate::servers::{self, Server, SignerdSetup};
use crate::token_loop::{TokenLoopRun, TokenLoopSpec};
use crate::verify::{self, PublicKey};

/// Environment variable set when the benchmark has re-executed itself under `taskset`.
const PINNED_ENV: &str = "SIGNERD_BENCH_PINNED";

/// The token PINs of the throwaway tokens (they live only in the temp dir).
const TOKEN_PIN: &str = "4711-bench";
const TOKEN_SO_PIN: &str = "0815-bench";
const TOKEN_LABEL: &str = "signerd-bench";

/// When this process is not yet on the client CPUs, re-executes it there under `taskset`.
/// Returns only when no re-execution happened.
pub fn pin_self(args: &RunArgs) -> Result<(), String> {
    if std::env::var_os(PINNED_ENV).is_some() {
        return Ok(());
    }
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut command = servers::pinned(&args.client_cpus, exe);
    command
        .args(std::env::args_os().skip(1))
        .env(PINNED_ENV, "1");
    // exec only returns on failure.
    Err(format!(
        "cannot re-execute under taskset: {}",
        command.exec()
    ))
}

/// Everything a run starts, in drop order: servers first, then the temp dir they write into.
struct Fixture {
    go: Option<Server>,
    signerd: Server,
    /// The two-core point's signerd (on the server and client CPUs), unless --no-two-cores.
    signerd_two_cores: Option<Server>,
    /// signerd's gRPC server alone, for the ECDSA series.
    floor: Option<Server>,
    /// The same on the two-core point's CPUs, for its ECDSA point.
    floor_two_cores: Option<Server>,
    tls: ClientTls,
    loop_token_uri: String,
    loop_softhsm_conf: PathBuf,
    dir: tempfile::TempDir,
}

/// Runs the benchmark; `Ok(false)` when a signature was bad or requests failed.
pub fn run(args: &RunArgs) -> Result<bool, String> {
    args.check()?;
    let began = Instant::now();
    let time_limit = Duration::from_secs(args.time_limit);
    let signerd_bin = match &args.signerd {
        // The servers start in their own folders: a relative path would not resolve there.
        Some(p) => {
            std::fs::canonicalize(p).map_err(|e| format!("--signerd {}: {e}", p.display()))?
        }
        None => beside_self("signerd")?,
    };
    let fixture = set_up(args, &signerd_bin)?;
    let dir = fixture.dir.path().to_owned();
    eprintln!(
        "signerd-bench: temp dir {}; servers on CPUs {} (Go: {}, signerd: {}), load generator on {}",
        dir.display(),
        args.server_cpus,
        fixture
            .go
            .as_ref()
            .map_or("-".into(), |g| procstat::cpus_allowed(g.pid())),
        procstat::cpus_allowed(fixture.signerd.pid()),
        procstat::cpus_allowed(std::process::id()),
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let both_cpus = args.both_cpus();
    let token_loop = |cpus: &'static str| TokenLoopRun {
        bench_exe: &exe,
        token_uri: &fixture.loop_token_uri,
        softhsm_conf: &fixture.loop_softhsm_conf,
        cpus: if cpus == "server" {
            &args.server_cpus
        } else {
            &both_cpus
        },
        dir: &dir,
    };

    let mut results = Results {
        server_cpus: args.server_cpus.clone(),
        client_cpus: args.client_cpus.clone(),
        ..Results::default()
    };
    // Keys: one per algorithm per server, made through CreateKey as notary-server makes them.
    let keys = runtime.block_on(make_keys(args, &fixture, &mut results))?;
    let mut loop_keys: Vec<(String, String)> = Vec::new();

    'reps: for rep in 1..=args.repetitions {
        for alg in &args.algorithms {
            // Per point: the Go signer, then the token alone, then signerd right after it, then
            // the stack floor. Each signerd run is compared with the token run just before it
            // (seconds apart), not with one token run a minute earlier: on a shared machine the
            // token's own rate moves by 10 % from minute to minute.
            let of = |signer: Signer| {
                keys.iter()
                    .filter(move |k| &k.algorithm == alg && k.signer == signer)
            };
            let series = args.levels(alg).into_iter().flat_map(|in_flight| {
                of(Signer::Go)
                    .map(Step::Server)
                    .chain(std::iter::once(Step::Token(1)))
                    .chain(of(Signer::Signerd).map(Step::Server))
                    .chain(of(Signer::StackFloor).map(Step::Server))
                    .map(move |step| (in_flight, step))
            });
            // The two-core point after the token alone on two threads; that run is made even
            // without the point, for the token's own line.
            let two_cores = std::iter::once(Step::Token(2))
                .chain(of(Signer::SignerdTwoCores).map(Step::Server))
                .chain(of(Signer::StackFloorTwoCores).map(Step::Server))
                .map(|step| (args.point_in_flight, step));
            for (in_flight, step) in series.chain(two_cores) {
                if began.elapsed() > time_limit {
                    results.notes.push(format!(
                        "stopped early: the time limit of {} s was reached",
                        args.time_limit
                    ));
                    results.incomplete = true;
                    break 'reps;
                }
                let key = match step {
                    Step::Token(threads) => {
                        let known = loop_keys.iter().find(|(a, _)| a == alg).map(|(_, k)| k);
                        let spec = TokenLoopSpec {
                            algorithm: alg,
                            key_id: known.map(String::as_str),
                            threads,
                            warmup: Duration::from_secs_f64(args.warmup),
                            duration: Duration::from_secs_f64(args.duration),
                            content_len: args.content_len,
                        };
                        let cpus = if threads == 1 { "server" } else { "both" };
                        let report = token_loop(cpus)
                            .run(&spec, &format!("{alg}-{threads}t-{in_flight}-r{rep}"))?;
                        if known.is_none() {
                            loop_keys.push((alg.clone(), report.key_id.clone()));
                        }
                        let public = hex::decode(&report.public_key).map_err(|e| e.to_string())?;
                        let key =
                            PublicKey::from_notary(alg, &public).map_err(|e| e.to_string())?;
                        results.check_samples("token only", alg, &key, &report.samples);
                        eprintln!(
                            "rep {rep}: token only {alg} {threads} thread(s), before {in_flight} in flight: {:.0}/s, {:.1} µs CPU each",
                            report.rate(),
                            report.cpu_us_per_op()
                        );
                        results.token_runs.push(TokenRun {
                            algorithm: alg.clone(),
                            threads,
                            in_flight,
                            rep,
                            report,
                        });
                        continue;
                    }
                    Step::Server(key) => key,
                };
                let signer = key.signer;
                let server = fixture
                    .server(signer)
                    .ok_or_else(|| format!("{} is not running", signer.name()))?;
                let load = args.load(in_flight);
                let result = runtime.block_on(one_run(server, &fixture.tls, &key.key, load))?;
                // The stack floor answers fixed bytes, no signature.
                if !signer.is_floor() {
                    results.check_samples(signer.name(), alg, &key.public, &result.samples);
                }
                results.note_errors(signer, alg, in_flight, &result);
                eprintln!(
                    "rep {rep}: {} {alg} {in_flight} in flight: {:.0}/s, p99 {:.2} ms, {:.1} µs CPU/request, server {:.0}% busy, {} threads, load generator {:.0}% busy",
                    signer.name(),
                    result.rate(),
                    result.latency.p99_us / 1000.0,
                    result.server_cpu_us_per_op(),
                    result.server_busy() * 100.0,
                    result.footprint.threads,
                    result.client_busy() * 100.0
                );
                results.server_runs.push(ServerRun {
                    signer,
                    algorithm: alg.clone(),
                    in_flight,
                    rep,
                    result,
                });
            }
        }
        let footprint =
            procstat::footprint(fixture.signerd.pid()).map_err(|e| format!("signerd: {e}"))?;
        results.signerd_rss_after_rep.push(footprint);
    }

    println!("{}", report::table(&results, args));
    if let Some(path) = &args.plot {
        crate::plot::draw(path, &results, args)?;
        eprintln!("signerd-bench: plot written to {}", path.display());
    }
    let ok = results.bad_signatures == 0 && results.failed_requests == 0 && !results.incomplete;
    drop(runtime);
    finish(fixture, args.keep_dir);
    Ok(ok)
}

/// Makes the PKI, both tokens, and starts both servers.
fn set_up(args: &RunArgs, signerd_bin: &Path) -> Result<Fixture, String> {
    let dir = tempfile::Builder::new()
        .prefix("signerd-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: std::io::Error| format!("{what}: {e}")
    };
    let sub = |name: &str| -> Result<PathBuf, String> {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).map_err(io(name))?;
        Ok(p)
    };
    let pki = TestPki::generate(&sub("pki")?).map_err(io("PKI"))?;
    let (signerd_uri, signerd_conf) = make_token(&sub("signerd-token")?)?;
    let (loop_token_uri, loop_softhsm_conf) = make_token(&sub("token-only")?)?;
    let tls = ClientTls::load(pki.ca.cert_path(), &pki.client.cert, &pki.client.key)
        .map_err(io("client TLS files"))?;
    let go = if args.algorithms.iter().any(|a| a != "rsa") {
        Some(
            servers::go_signer(&sub("go")?, &pki, &args.notary_signer, &args.server_cpus)
                .map_err(io("start the Go notary-signer"))?,
        )
    } else {
        None
    };
    let setup = SignerdSetup {
        binary: signerd_bin.to_owned(),
        token_uri: signerd_uri,
        softhsm_conf: signerd_conf,
        sessions: args.sessions,
    };
    let signerd = servers::signerd(&sub("signerd")?, &pki, &setup, &args.server_cpus)
        .map_err(io("start signerd"))?;
    let signerd_two_cores = if args.no_two_cores {
        None
    } else {
        let (token_uri, softhsm_conf) = make_token(&sub("signerd-two-cores-token")?)?;
        let setup = SignerdSetup {
            token_uri,
            softhsm_conf,
            ..setup
        };
        Some(
            servers::signerd(&sub("signerd-two-cores")?, &pki, &setup, &args.both_cpus())
                .map_err(io("start signerd on two cores"))?,
        )
    };
    let ecdsa = args.algorithms.iter().any(|a| a == "ecdsa");
    let exe = std::env::current_exe().map_err(io("own executable"))?;
    let floor = if ecdsa {
        Some(
            servers::stack_floor(&sub("stack-floor")?, &pki, &exe, &args.server_cpus)
                .map_err(io("start the stack floor"))?,
        )
    } else {
        None
    };
    let floor_two_cores = if ecdsa && !args.no_two_cores {
        Some(
            servers::stack_floor(
                &sub("stack-floor-two-cores")?,
                &pki,
                &exe,
                &args.both_cpus(),
            )
            .map_err(io("start the stack floor on two cores"))?,
        )
    } else {
        None
    };
    Ok(Fixture {
        go,
        signerd,
        signerd_two_cores,
        floor,
        floor_two_cores,
        tls,
        loop_token_uri,
        loop_softhsm_conf,
        dir,
    })
}

impl Fixture {
    /// The server a signer runs as, when it runs.
    fn server(&self, signer: Signer) -> Option<&Server> {
        match signer {
            Signer::Go => self.go.as_ref(),
            Signer::Signerd => Some(&self.signerd),
            Signer::SignerdTwoCores => self.signerd_two_cores.as_ref(),
            Signer::StackFloor => self.floor.as_ref(),
            Signer::StackFloorTwoCores => self.floor_two_cores.as_ref(),
        }
    }
}

/// A SoftHSM token of its own in `dir` (the steps of scripts/softhsm-setup.sh).
pub(crate) fn make_token(dir: &Path) -> Result<(String, PathBuf), String> {
    let softhsm = SoftHsmDir::create(dir).map_err(|e| e.to_string())?;
    softhsm
        .init_token(TOKEN_LABEL, TOKEN_PIN, TOKEN_SO_PIN)
        .map_err(|e| e.to_string())?;
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, TOKEN_PIN).map_err(|e| format!("pin file: {e}"))?;
    Ok((softhsm.uri(TOKEN_LABEL, &pin_file), softhsm.conf()))
}

/// A key a server made for the benchmark.
struct ServerKey {
    signer: Signer,
    algorithm: String,
    key: BenchKey,
    public: PublicKey,
}

/// A key per (server, algorithm): the Go signer makes no RSA keys (it only imports them).
async fn make_keys(
    args: &RunArgs,
    fixture: &Fixture,
    results: &mut Results,
) -> Result<Vec<ServerKey>, String> {
    let mut keys = Vec::new();
    for signer in [Signer::Go, Signer::Signerd, Signer::SignerdTwoCores] {
        let Some(server) = fixture.server(signer) else {
            continue;
        };
        let channel = load::connect(server.addr, &fixture.tls).await?;
        for alg in &args.algorithms {
            if signer == Signer::Go && alg == "rsa" {
                results
                    .notes
                    .push("the Go notary-signer cannot create RSA keys (only import them): no Go RSA point".into());
                continue;
            }
            let key = load::create_key(&channel, alg).await?;
            let public = PublicKey::from_notary(alg, &key.public_key)
                .map_err(|e| format!("{}: {e}", signer.name()))?;
            keys.push(ServerKey {
                signer,
                algorithm: alg.clone(),
                key,
                public,
            });
        }
    }
    // A stack floor answers any key ID: it is sent the ECDSA key's of the signerd it stands
    // beside.
    let floor_keys: Vec<ServerKey> = [
        (Signer::StackFloor, Signer::Signerd),
        (Signer::StackFloorTwoCores, Signer::SignerdTwoCores),
    ]
    .into_iter()
    .filter(|(floor, _)| fixture.server(*floor).is_some())
    .filter_map(|(floor, beside)| {
        keys.iter()
            .find(|k| k.signer == beside && k.algorithm == "ecdsa")
            .map(|k| ServerKey {
                signer: floor,
                algorithm: k.algorithm.clone(),
                key: k.key.clone(),
                public: k.public.clone(),
            })
    })
    .collect();
    keys.extend(floor_keys);
    Ok(keys)
}

/// One step of a repetition's series.
enum Step<'a> {
    /// The token alone on this many threads.
    Token(u16),
    /// A server, through this key.
    Server(&'a ServerKey),
}

/// One measured run on a fresh connection.
async fn one_run(
    server: &Server,
    tls: &ClientTls,
    key: &BenchKey,
    load: Load,
) -> Result<RunResult, String> {
    let mut channels = Vec::with_capacity(load.connections);
    for _ in 0..load.connections.max(1) {
        channels.push(load::connect(server.addr, tls).await?);
    }
    load::run(&channels, server.pid(), key, load).await
}

/// Stops the servers (by PID, through their guards) and removes or keeps the temp dir.
fn finish(fixture: Fixture, keep: bool) {
    let Fixture {
        go,
        signerd,
        signerd_two_cores,
        floor,
        floor_two_cores,
        dir,
        ..
    } = fixture;
    drop(go);
    drop(signerd);
    drop(signerd_two_cores);
    drop(floor);
    drop(floor_two_cores);
    if keep {
        eprintln!("signerd-bench: kept {}", dir.keep().display());
    }
}

/// `name` in the folder of this executable (cargo puts signerd and signerd-bench together).
pub(crate) fn beside_self(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let path = exe
        .parent()
        .map(|d| d.join(name))
        .ok_or("executable has no folder")?;
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it (cargo build --release -p signerd) or pass --signerd",
            path.display()
        ))
    }
}

impl Results {
    /// Checks the signatures one run kept; a bad one fails the benchmark.
    fn check_samples(
        &mut self,
        who: &str,
        algorithm: &str,
        key: &PublicKey,
        samples: &[verify::Sample],
    ) {
        let (bad, first) = verify::count_bad(key, samples);
        self.verified += samples.len();
        if samples.is_empty() {
            self.notes.push(format!(
                "{who} {algorithm}: a run returned no signature to check"
            ));
            self.incomplete = true;
        }
        if bad > 0 {
            self.bad_signatures += bad;
            self.notes.push(format!(
                "BAD SIGNATURE from {who} ({algorithm}): {bad} of {} samples; first: {}",
                samples.len(),
                first.unwrap_or_default()
            ));
        }
    }

    /// Counts the requests a run saw fail; any fails the benchmark.
    fn note_errors(&mut self, signer: Signer, algorithm: &str, in_flight: usize, run: &RunResult) {
        if run.errors > 0 {
            self.failed_requests += run.errors;
            self.notes.push(format!(
                "{} {algorithm} at {in_flight} in flight: {} requests failed; first: {}",
                signer.name(),
                run.errors,
                run.first_error.as_deref().unwrap_or("?")
            ));
        }
    }
}
