//! The results of a benchmark run and the one table that compares the three side by side.

use std::fmt::Write as _;

use crate::args::RunArgs;
use crate::load::RunResult;
use crate::procstat::Footprint;
use crate::stats::{Latency, Spread};
use crate::token_loop::TokenLoopReport;

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// The Go notary-signer (memory store).
    Go,
    /// signerd over SoftHSM.
    Signerd,
    /// A second signerd, on the server and the client CPUs together (the two-core point).
    SignerdTwoCores,
    /// signerd's gRPC server answering at once, no edge, no key, no token ([`crate::floor`]).
    StackFloor,
    /// The same on the two-core point's CPUs.
    StackFloorTwoCores,
}

impl Signer {
    /// How the report names it.
    pub fn name(self) -> &'static str {
        match self {
            Signer::Go => "Go notary-signer",
            Signer::Signerd => "signerd",
            Signer::SignerdTwoCores => "signerd on two cores",
            Signer::StackFloor => "stack floor",
            Signer::StackFloorTwoCores => "stack floor on two cores",
        }
    }

    /// A stack floor: it answers fixed bytes, no signature, and faster than the load generator
    /// asks.
    pub fn is_floor(self) -> bool {
        matches!(self, Signer::StackFloor | Signer::StackFloorTwoCores)
    }
}

/// One measured run against a server.
#[derive(Debug)]
pub struct ServerRun {
    /// Which server.
    pub signer: Signer,
    /// ecdsa, ed25519 or rsa.
    pub algorithm: String,
    /// Requests in flight.
    pub in_flight: usize,
    /// The repetition (from 1).
    pub rep: u32,
    /// What was measured.
    pub result: RunResult,
}

/// One measured run of the token alone.
#[derive(Debug)]
pub struct TokenRun {
    /// ecdsa, ed25519 or rsa.
    pub algorithm: String,
    /// Threads (one session each).
    pub threads: u16,
    /// The point (requests in flight) of the server runs it was made just before.
    pub in_flight: usize,
    /// The repetition (from 1).
    pub rep: u32,
    /// What the loop reported.
    pub report: TokenLoopReport,
}

/// Everything one benchmark run measured and found.
#[derive(Debug, Default)]
pub struct Results {
    /// Runs against the servers.
    pub server_runs: Vec<ServerRun>,
    /// Runs of the token alone.
    pub token_runs: Vec<TokenRun>,
    /// Signatures checked locally.
    pub verified: usize,
    /// Signatures that did not verify.
    pub bad_signatures: usize,
    /// Requests that failed.
    pub failed_requests: u64,
    /// The series did not complete.
    pub incomplete: bool,
    /// Things the reader must know.
    pub notes: Vec<String>,
    /// signerd's threads and memory after each repetition.
    pub signerd_rss_after_rep: Vec<Footprint>,
    /// The servers' CPU list.
    pub server_cpus: String,
    /// The load generator's CPU list.
    pub client_cpus: String,
}

impl Results {
    /// Median and range of `value` over the repetitions of one server point.
    pub fn server(
        &self,
        signer: Signer,
        algorithm: &str,
        in_flight: usize,
        value: impl Fn(&RunResult) -> f64,
    ) -> Option<Spread> {
        Spread::of(
            self.server_runs_at(signer, algorithm, in_flight)
                .map(|r| value(&r.result)),
        )
    }

    /// The runs of one server point, one per repetition.
    fn server_runs_at<'a>(
        &'a self,
        signer: Signer,
        algorithm: &'a str,
        in_flight: usize,
    ) -> impl Iterator<Item = &'a ServerRun> {
        self.server_runs.iter().filter(move |r| {
            r.signer == signer && r.algorithm == algorithm && r.in_flight == in_flight
        })
    }

    /// Median and range of `value` over every run of the token loop on `threads`.
    pub fn token(
        &self,
        algorithm: &str,
        threads: u16,
        value: impl Fn(&TokenLoopReport) -> f64,
    ) -> Option<Spread> {
        self.token_where(algorithm, threads, None, value)
    }

    /// Median and range of `value` over the token runs made just before the point `in_flight`.
    pub fn token_at(
        &self,
        algorithm: &str,
        threads: u16,
        in_flight: usize,
        value: impl Fn(&TokenLoopReport) -> f64,
    ) -> Option<Spread> {
        self.token_where(algorithm, threads, Some(in_flight), value)
    }

    fn token_where(
        &self,
        algorithm: &str,
        threads: u16,
        in_flight: Option<usize>,
        value: impl Fn(&TokenLoopReport) -> f64,
    ) -> Option<Spread> {
        Spread::of(
            self.token_runs
                .iter()
                .filter(|r| r.algorithm == algorithm && r.threads == threads)
                .filter(|r| in_flight.is_none_or(|n| r.in_flight == n))
                .map(|r| value(&r.report)),
        )
    }

    /// Median and range over the repetitions of `value` of each run of one server point and the
    /// token run (on `threads`) made just before it in the same repetition: the side-by-side
    /// comparison, each pair seconds apart. Runs without their token run, and values that are
    /// no number (a token run that signed nothing), are left out.
    pub fn paired(
        &self,
        signer: Signer,
        algorithm: &str,
        in_flight: usize,
        threads: u16,
        value: impl Fn(&RunResult, &TokenLoopReport) -> f64,
    ) -> Option<Spread> {
        Spread::of(
            self.server_runs_at(signer, algorithm, in_flight)
                .filter_map(|r| {
                    let token = self.token_runs.iter().find(|t| {
                        t.algorithm == algorithm
                            && t.threads == threads
                            && t.in_flight == in_flight
                            && t.rep == r.rep
                    })?;
                    Some(value(&r.result, &token.report))
                })
                .filter(|v| v.is_finite()),
        )
    }

    /// Median latency percentiles of one server point.
    fn latency(&self, signer: Signer, algorithm: &str, in_flight: usize) -> Option<Latency> {
        let get = |f: fn(&Latency) -> f64| {
            self.server(signer, algorithm, in_flight, |r| f(&r.latency))
                .map(|s| s.median)
        };
        Some(Latency {
            p50_us: get(|l| l.p50_us)?,
            p90_us: get(|l| l.p90_us)?,
            p99_us: get(|l| l.p99_us)?,
            max_us: get(|l| l.max_us)?,
        })
    }
}

/// The algorithm as the table names it.
fn algorithm_name(algorithm: &str) -> &str {
    match algorithm {
        "ecdsa" => "ECDSA P-256",
        "ed25519" => "Ed25519",
        "rsa" => "RSA-3072 PSS",
        other => other,
    }
}

/// `12,345`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `12,345/s (12,000-12,500)`, or a dash.
fn rate(spread: Option<Spread>) -> String {
    match spread {
        Some(s) if s.min == s.max => format!("{}/s", thousands(s.median)),
        Some(s) => format!(
            "{}/s ({}-{})",
            thousands(s.median),
            thousands(s.min),
            thousands(s.max)
        ),
        None => "-".into(),
    }
}

/// A number with one decimal, or a dash.
fn num(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1}"))
}

/// A ratio with two decimals, or a dash.
fn ratio(a: Option<Spread>, b: Option<Spread>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}", a.median / b.median),
        _ => "-".into(),
    }
}

/// Ratios paired run by run: the median with two decimals and, over several repetitions, the
/// range; or a dash.
fn ratios(spread: Option<Spread>) -> String {
    match spread {
        Some(s) if s.min < s.max => format!("{:.2} ({:.2}-{:.2})", s.median, s.min, s.max),
        Some(s) => format!("{:.2}", s.median),
        None => "-".into(),
    }
}

/// `signerd / token` of one run and the token run just before it.
fn rate_ratio(signerd: &RunResult, token: &TokenLoopReport) -> f64 {
    signerd.rate() / token.rate()
}

/// What signerd adds per request in one run: its CPU per request less the token's CPU per
/// signature in the token run just before it.
fn cpu_added(signerd: &RunResult, token: &TokenLoopReport) -> f64 {
    signerd.server_cpu_us_per_op() - token.cpu_us_per_op()
}

/// `p50 / p90 / p99 / max` in milliseconds.
fn latency(l: Option<Latency>) -> String {
    l.map_or("-".into(), |l| {
        format!(
            "{:.2} / {:.2} / {:.2} / {:.1}",
            l.p50_us / 1e3,
            l.p90_us / 1e3,
            l.p99_us / 1e3,
            l.max_us / 1e3
        )
    })
}

/// The most threads over the repetitions of a point.
fn threads(spread: Option<Spread>) -> String {
    spread.map_or("-".into(), |s| format!("{:.0}", s.max))
}

/// The median RSS of a point in MiB (from KiB).
fn mib(spread: Option<Spread>) -> String {
    spread.map_or("-".into(), |s| format!("{:.1}", s.median / 1024.0))
}

/// The two-core point: signerd on both CPUs against the token alone on two threads.
fn two_cores(out: &mut String, results: &Results, args: &RunArgs) {
    let in_flight = args.point_in_flight;
    let signer = Signer::SignerdTwoCores;
    if !results.server_runs.iter().any(|r| r.signer == signer) {
        return;
    }
    let _ = writeln!(
        out,
        "\nTwo cores (a second signerd on CPUs {}, the load generator on CPU {} beside it; the token alone with 2 threads on the same CPUs, with no load generator to share them), {in_flight} in flight:",
        args.both_cpus(),
        results.client_cpus,
    );
    for alg in &args.algorithms {
        let sd = |f: fn(&RunResult) -> f64| results.server(signer, alg, in_flight, f);
        let token = results.token_at(alg, 2, in_flight, TokenLoopReport::rate);
        let _ = writeln!(
            out,
            "- {}: signerd {}, token 2 threads {}: signerd / token {}; latency ms {}; {} µs CPU per request, {} threads, RSS {} MiB{}",
            algorithm_name(alg),
            rate(sd(RunResult::rate)),
            rate(token),
            ratios(results.paired(signer, alg, in_flight, 2, rate_ratio)),
            latency(results.latency(signer, alg, in_flight)),
            num(sd(RunResult::server_cpu_us_per_op).map(|s| s.median)),
            threads(sd(|r| r.footprint.threads as f64)),
            mib(sd(|r| r.footprint.rss_kib as f64)),
            cpu_left(results, alg, in_flight),
        );
    }
    two_core_floor(out, results, in_flight);
}

/// signerd on two cores against the token's two-thread rate in proportion to the CPU the load
/// generator left it (NaN when none was left).
fn counted_ratio(signerd: &RunResult, token: &TokenLoopReport) -> f64 {
    fair_rate(token.rate(), signerd.client_busy()).map_or(f64::NAN, |fair| signerd.rate() / fair)
}

/// The token's two-thread rate in proportion to the CPU the load generator left of two, or
/// nothing when no CPU was left or the rate is unknown.
fn fair_rate(token_rate: f64, client_busy: f64) -> Option<f64> {
    let left = (2.0 - client_busy).clamp(0.0, 2.0);
    (left > 0.0 && token_rate > 0.0).then_some(token_rate * left / 2.0)
}

/// The two-core comparison with the load generator's CPU counted: the token alone had both
/// CPUs, signerd had what the load generator beside it left. The token's two-thread rate in
/// proportion to the CPU left, and signerd's rate against that, run by run.
fn cpu_left(results: &Results, algorithm: &str, in_flight: usize) -> String {
    let signer = Signer::SignerdTwoCores;
    let client = results.server(signer, algorithm, in_flight, RunResult::client_busy);
    let token = results.token_at(algorithm, 2, in_flight, TokenLoopReport::rate);
    let against = results.paired(signer, algorithm, in_flight, 2, counted_ratio);
    let (Some(client), Some(token), Some(against)) = (client, token, against) else {
        return String::new();
    };
    let Some(fair) = fair_rate(token.median, client.median) else {
        return String::new();
    };
    format!(
        "; the load generator took {:.2} of a CPU, so the token on the {:.2} CPUs left would sign about {}/s: signerd / that {}",
        client.median,
        2.0 - client.median,
        thousands(fair),
        ratios(Some(against))
    )
}

/// The stack floor on the two-core point's CPUs: the best a signer on this stack could read on
/// the line with the load generator counted (the token's two-thread CPU per signature over that
/// plus the floor's CPU per request), and how much of it signerd reaches.
fn two_core_floor(out: &mut String, results: &Results, in_flight: usize) {
    let floor = Signer::StackFloorTwoCores;
    let fl = |f: fn(&RunResult) -> f64| results.server(floor, "ecdsa", in_flight, f);
    let Some(floor_cpu) = fl(RunResult::server_cpu_us_per_op).map(|s| s.median) else {
        return;
    };
    let token_cpu = results
        .token_at("ecdsa", 2, in_flight, TokenLoopReport::cpu_us_per_op)
        .map(|s| s.median);
    let counted = results.paired(
        Signer::SignerdTwoCores,
        "ecdsa",
        in_flight,
        2,
        counted_ratio,
    );
    let _ = writeln!(
        out,
        "- Stack floor on the same CPUs (ECDSA requests, its runtime on both): {}, latency ms {}; {} µs CPU per request, the token on 2 threads {} µs per signature: the best signerd / token with the load generator counted this floor leaves on two cores: {}",
        rate(fl(RunResult::rate)),
        latency(results.latency(floor, "ecdsa", in_flight)),
        num(Some(floor_cpu)),
        num(token_cpu),
        floor_leaves(token_cpu, Some(floor_cpu), counted),
    );
}

/// The best signerd / token a stack floor of `floor_cpu` µs per request leaves a token of
/// `token_cpu` µs per signature (token / (token + floor): a signer on this stack whose own
/// work cost nothing), and how much of it signerd's `ratio` reaches.
fn floor_leaves(token_cpu: Option<f64>, floor_cpu: Option<f64>, ratio: Option<Spread>) -> String {
    let best = token_cpu.zip(floor_cpu).map(|(t, f)| t / (t + f));
    let reached = ratio
        .zip(best)
        .filter(|(_, b)| *b > 0.0)
        .map_or(String::new(), |(r, b)| {
            format!(", of which signerd reaches {:.2}", r.median / b)
        });
    format!(
        "{}{reached}",
        best.map_or("-".into(), |b| format!("{b:.2}"))
    )
}

/// The stack floor beside signerd: how much of what signerd adds TLS, HTTP/2 and gRPC take.
fn stack_floor(out: &mut String, results: &Results, args: &RunArgs) {
    let floor = Signer::StackFloor;
    if !results.server_runs.iter().any(|r| r.signer == floor) {
        return;
    }
    let _ = writeln!(
        out,
        "\nStack floor (signerd's gRPC server, pinned like the servers: its runtime, TLS acceptor and HTTP/2 settings, with a Sign handler that answers {} fixed bytes at once: no edge, no key, no token; its rate is usually the load generator's limit), ECDSA requests:",
        crate::floor::ANSWER_LEN
    );
    for in_flight in args.levels("ecdsa") {
        let token_cpu = results
            .token_at("ecdsa", 1, in_flight, TokenLoopReport::cpu_us_per_op)
            .map(|s| s.median);
        let fl = |f: fn(&RunResult) -> f64| results.server(floor, "ecdsa", in_flight, f);
        let cpu = |signer| {
            results
                .server(signer, "ecdsa", in_flight, RunResult::server_cpu_us_per_op)
                .map(|s| s.median)
        };
        let floor_cpu = cpu(floor);
        let adds = results
            .paired(Signer::Signerd, "ecdsa", in_flight, 1, cpu_added)
            .map(|s| s.median);
        let own = adds.zip(floor_cpu).map(|(a, f)| a - f);
        let ratio = results.paired(Signer::Signerd, "ecdsa", in_flight, 1, rate_ratio);
        let _ = writeln!(
            out,
            "- {in_flight} in flight: {}, latency ms {}; {} µs CPU per request, of the {} µs signerd adds: the rest, {} µs, is signerd's edge, key store and token workers; the best signerd / token this floor leaves on one core: {}",
            rate(fl(RunResult::rate)),
            latency(results.latency(floor, "ecdsa", in_flight)),
            num(floor_cpu),
            num(adds),
            num(own),
            floor_leaves(token_cpu, floor_cpu, ratio),
        );
    }
}

/// The table and what it needs to be read.
pub fn table(results: &Results, args: &RunArgs) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nsignerd-bench: {} repetition(s) of {} s (after {} s warm-up) per point; servers pinned to CPU {}, load generator to CPU {}; {}; {}-byte content. Rates are medians (min-max); latencies and CPU are medians. The token alone runs just before signerd at every point: signerd / token and the µs signerd adds compare each signerd run with that token run, seconds apart (medians, min-max of the pairs).\n",
        args.repetitions,
        args.duration,
        args.warmup,
        results.server_cpus,
        results.client_cpus,
        match args.connections {
            1 => "one mTLS HTTP/2 connection".to_owned(),
            n => format!("{n} mTLS HTTP/2 connections, the requests in flight spread over them"),
        },
        args.content_len
    );
    let _ = writeln!(
        out,
        "| algorithm | in flight | Go notary-signer | token only | signerd | signerd / token | signerd / Go | latency ms p50 / p90 / p99 / max: Go | signerd | CPU µs per request: Go / token / signerd | µs signerd adds | threads: Go / signerd | RSS MiB: Go / signerd |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---|---|"
    );
    for alg in &args.algorithms {
        for in_flight in args.levels(alg) {
            let token_rate = results.token_at(alg, 1, in_flight, TokenLoopReport::rate);
            let token_cpu = results.token_at(alg, 1, in_flight, TokenLoopReport::cpu_us_per_op);
            let go = |f: fn(&RunResult) -> f64| results.server(Signer::Go, alg, in_flight, f);
            let sd = |f: fn(&RunResult) -> f64| results.server(Signer::Signerd, alg, in_flight, f);
            let cpu_go = go(RunResult::server_cpu_us_per_op).map(|s| s.median);
            let cpu_sd = sd(RunResult::server_cpu_us_per_op).map(|s| s.median);
            let adds = results
                .paired(Signer::Signerd, alg, in_flight, 1, cpu_added)
                .map(|s| s.median);
            let _ = writeln!(
                out,
                "| {} | {in_flight} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {} / {} | {} / {} |",
                algorithm_name(alg),
                rate(go(RunResult::rate)),
                rate(token_rate),
                rate(sd(RunResult::rate)),
                ratios(results.paired(Signer::Signerd, alg, in_flight, 1, rate_ratio)),
                ratio(sd(RunResult::rate), go(RunResult::rate)),
                latency(results.latency(Signer::Go, alg, in_flight)),
                latency(results.latency(Signer::Signerd, alg, in_flight)),
                num(cpu_go),
                num(token_cpu.map(|s| s.median)),
                num(cpu_sd),
                num(adds),
                threads(go(|r| r.footprint.threads as f64)),
                threads(sd(|r| r.footprint.threads as f64)),
                mib(go(|r| r.footprint.rss_kib as f64)),
                mib(sd(|r| r.footprint.rss_kib as f64)),
            );
        }
    }

    let _ = writeln!(out, "\nToken only (C_Sign through cryptoki on the same kind of SoftHSM token, one logged-in session per thread, the content hashed as signerd hashes it):");
    for alg in &args.algorithms {
        let one = results.token(alg, 1, TokenLoopReport::rate);
        let two = results.token(alg, 2, TokenLoopReport::rate);
        let l = |f: fn(&Latency) -> f64| {
            results
                .token(alg, 1, |r| f(&r.latency))
                .map_or("-".into(), |s| format!("{:.3}", s.median / 1e3))
        };
        let _ = writeln!(
            out,
            "- {}: 1 thread on CPU {}: {}, {} µs CPU per signature, latency ms p50 {} / p99 {} / max {}; 2 threads on CPUs {},{}: {}",
            algorithm_name(alg),
            results.server_cpus,
            rate(one),
            num(results.token(alg, 1, TokenLoopReport::cpu_us_per_op).map(|s| s.median)),
            l(|l| l.p50_us),
            l(|l| l.p99_us),
            l(|l| l.max_us),
            results.server_cpus,
            results.client_cpus,
            rate(two),
        );
    }

    two_cores(&mut out, results, args);
    stack_floor(&mut out, results, args);

    if !results.signerd_rss_after_rep.is_empty() {
        let rss: Vec<String> = results
            .signerd_rss_after_rep
            .iter()
            .map(|f| format!("{:.1}", f.rss_kib as f64 / 1024.0))
            .collect();
        let peak = results
            .signerd_rss_after_rep
            .iter()
            .map(|f| f.peak_rss_kib)
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "\nsignerd RSS after each repetition: {} MiB; peak (VmHWM) {:.1} MiB.",
            rss.join(", "),
            peak as f64 / 1024.0
        );
    }
    for signer in [Signer::Go, Signer::Signerd] {
        let busy = results
            .server_runs
            .iter()
            .filter(|r| r.signer == signer && r.in_flight >= 8)
            .map(|r| r.result.server_busy());
        if let Some(s) = Spread::of(busy) {
            let _ = writeln!(
                out,
                "{} used {:.0}% (median; {:.0}-{:.0}%) of its CPU at 8 or more in flight{}.",
                signer.name(),
                s.median * 100.0,
                s.min * 100.0,
                s.max * 100.0,
                if s.max < 0.9 {
                    ": well under 100% with requests waiting means the CPU was shared with other work (a noisy machine) or the server waited, so its rates are below what the core can do"
                } else {
                    ""
                }
            );
        }
    }
    // The stack floor answers faster than the load generator asks, by design: the line is about
    // whether a signer's rate was the client's limit.
    let busiest = results
        .server_runs
        .iter()
        .filter(|r| !r.signer.is_floor())
        .map(|r| (r.result.client_busy(), r))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((busy, run)) = busiest {
        let _ = writeln!(
            out,
            "Load generator: at most {:.0}% of its CPU busy ({} {} at {} in flight){}.",
            busy * 100.0,
            run.signer.name(),
            run.algorithm,
            run.in_flight,
            if busy > 0.9 {
                "; near 100% the client, not the server, limits that point: its rate is a floor"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        out,
        "Signatures checked locally against the public keys: {}, bad: {}. Failed requests: {}.",
        results.verified, results.bad_signatures, results.failed_requests
    );
    for note in &results.notes {
        let _ = writeln!(out, "Note: {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(18808.0), "18,808");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    #[test]
    fn rates_show_the_range() {
        let s = Spread {
            median: 4335.0,
            min: 4100.0,
            max: 4500.0,
        };
        assert_eq!(rate(Some(s)), "4,335/s (4,100-4,500)");
        assert_eq!(rate(None), "-");
    }

    /// A run of `ops` requests in one second that took `cpu_us` of server CPU each.
    fn run(signer: Signer, in_flight: usize, ops: u64, cpu_us: u64) -> ServerRun {
        ServerRun {
            signer,
            algorithm: "ecdsa".into(),
            in_flight,
            rep: 1,
            result: RunResult {
                ops,
                window: std::time::Duration::from_secs(1),
                server_cpu_ticks: ops * cpu_us,
                ticks_per_second: 1_000_000,
                ..RunResult::default()
            },
        }
    }

    /// A one-thread token run of `ops` signatures in one second, `cpu_us` CPU each, made just
    /// before the point `in_flight` of repetition `rep`.
    fn token_run(in_flight: usize, rep: u32, ops: u64, cpu_us: u64) -> TokenRun {
        TokenRun {
            algorithm: "ecdsa".into(),
            threads: 1,
            in_flight,
            rep,
            report: TokenLoopReport {
                ops,
                window_secs: 1.0,
                cpu_ticks: ops * cpu_us,
                ticks_per_second: 1_000_000,
                ..TokenLoopReport::default()
            },
        }
    }

    fn run_args(extra: &[&str]) -> RunArgs {
        let argv = ["signerd-bench", "run", "--algorithms", "ecdsa"];
        let args = <crate::Cli as clap::Parser>::try_parse_from(argv.iter().chain(extra)).unwrap();
        let crate::Command::Run(args) = args.command else {
            panic!("not run");
        };
        args
    }

    /// The line of `out` that starts with `start`.
    fn line(out: &str, start: &str) -> String {
        out.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in:\n{out}"))
            .to_owned()
    }

    #[test]
    fn each_signerd_run_is_compared_with_the_token_run_just_before_it() {
        let args = run_args(&["--in-flight", "32", "--repetitions", "2"]);
        let mut second = run(Signer::Signerd, 32, 9_000, 60);
        second.rep = 2;
        let results = Results {
            server_runs: vec![run(Signer::Signerd, 32, 16_000, 50), second],
            // The machine slowed down between the repetitions: the token too.
            token_runs: vec![token_run(32, 1, 20_000, 40), token_run(32, 2, 10_000, 50)],
            ..Results::default()
        };
        let row = line(&table(&results, &args), "| ECDSA P-256 | 32 |");
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // 16,000 / 20,000 and 9,000 / 10,000, not the medians' 12,500 / 15,000 = 0.83.
        assert_eq!(cells[6], "0.85 (0.80-0.90)", "{row}");
        // 50 - 40 and 60 - 50 µs.
        assert_eq!(cells[11], "10.0", "{row}");
        // A run whose token run is missing is left out, not compared with another point's.
        let results = Results {
            server_runs: vec![run(Signer::Signerd, 32, 16_000, 50)],
            token_runs: vec![token_run(8, 1, 20_000, 40)],
            ..Results::default()
        };
        let args = run_args(&["--in-flight", "8,32"]);
        let row = line(&table(&results, &args), "| ECDSA P-256 | 32 |");
        assert_eq!(row.split('|').map(str::trim).nth(6), Some("-"), "{row}");
    }

    #[test]
    fn the_stack_floor_splits_what_signerd_adds() {
        let args = run_args(&["--in-flight", "32"]);
        let mut results = Results {
            server_runs: vec![
                run(Signer::Signerd, 32, 12_000, 70),
                run(Signer::StackFloor, 32, 60_000, 15),
            ],
            token_runs: vec![token_run(32, 1, 25_000, 40)],
            ..Results::default()
        };
        let out = table(&results, &args);
        let line = line(&out, "- 32 in flight: 60,000/s");
        // signerd adds 70 - 40 = 30 µs: 15 of them the floor, 15 its own; 40 / (40 + 15).
        assert!(
            line.contains("15.0 µs CPU per request, of the 30.0 µs signerd adds"),
            "{line}"
        );
        assert!(line.contains("the rest, 15.0 µs,"), "{line}");
        // signerd at 12,000/s is 0.48 of the token, 0.66 of the 0.727 the floor leaves.
        assert!(
            line.ends_with("on one core: 0.73, of which signerd reaches 0.66"),
            "{line}"
        );
        // Without a floor run there is no floor section.
        assert!(out.contains("\nStack floor ("));
        assert!(out.contains("answers 64 fixed bytes"), "{out}");
        // The floor keeps the load generator busy by design; the client line names signers.
        assert!(!out.contains("(stack floor"), "{out}");
        results.server_runs.pop();
        assert!(!table(&results, &args).contains("\nStack floor ("));
    }

    /// The two-core point at 32 in flight: the token alone on both CPUs signed 40,000/s at 45
    /// µs of CPU each; signerd served 24,000/s beside a load generator that took half a CPU.
    fn two_core_point() -> Results {
        let mut two = run(Signer::SignerdTwoCores, 32, 24_000, 70);
        two.result.client_cpu_ticks = 500_000;
        let mut token = token_run(32, 1, 40_000, 45);
        token.threads = 2;
        Results {
            server_runs: vec![two],
            token_runs: vec![token],
            ..Results::default()
        }
    }

    #[test]
    fn the_two_core_point_counts_the_load_generator() {
        // The token on the 1.5 CPUs the load generator left would sign 30,000/s.
        let args = run_args(&["--in-flight", "32"]);
        let results = two_core_point();
        let out = table(&results, &args);
        assert!(
            out.contains("; the load generator took 0.50 of a CPU, so the token on the 1.50 CPUs left would sign about 30,000/s: signerd / that 0.80\n"),
            "{out}"
        );
        // Without a CPU left there is nothing to compare with.
        let mut results = results;
        results.server_runs[0].result.client_cpu_ticks = 2_000_000;
        assert!(!table(&results, &args).contains("the load generator took"));
        assert_eq!(fair_rate(40_000.0, 0.5), Some(30_000.0));
        assert_eq!(fair_rate(40_000.0, 2.0), None);
        assert_eq!(fair_rate(0.0, 0.5), None);
    }

    #[test]
    fn the_two_core_floor_says_what_it_leaves_with_the_load_generator_counted() {
        // signerd reads 0.80 with the load generator counted. The floor on two cores costs 5
        // µs per request: 45 / (45 + 5) = 0.90 is the best it leaves; signerd reaches 0.80 / 0.90.
        let args = run_args(&["--in-flight", "32"]);
        let mut results = two_core_point();
        results
            .server_runs
            .push(run(Signer::StackFloorTwoCores, 32, 70_000, 5));
        let out = table(&results, &args);
        let floor = line(&out, "- Stack floor on the same CPUs");
        assert!(floor.contains(": 70,000/s, latency ms "), "{floor}");
        assert!(
            floor.ends_with("5.0 µs CPU per request, the token on 2 threads 45.0 µs per signature: the best signerd / token with the load generator counted this floor leaves on two cores: 0.90, of which signerd reaches 0.89"),
            "{floor}"
        );
        // The floor keeps the load generator busy by design; the client line names signers.
        assert!(!out.contains("(stack floor"), "{out}");
        // No two-core floor run, no line; the pinned floor's runs are not the two-core one's.
        results.server_runs[1].signer = Signer::StackFloor;
        assert!(!table(&results, &args).contains("- Stack floor on the same CPUs"));
    }
}
