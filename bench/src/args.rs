//! `signerd-bench run`'s arguments and what follows from them (levels, loads, limits).

use std::path::PathBuf;
use std::time::Duration;

use crate::load::Load;

/// Arguments of `signerd-bench run`.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Seconds of each measured run.
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
    /// Seconds of load before each measured run.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Repetitions of the whole series (medians with min-max are reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub repetitions: u32,
    /// Requests in flight for the ECDSA P-256 series.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    pub in_flight: Vec<usize>,
    /// Requests in flight for the Ed25519 and RSA-3072 points.
    #[arg(long, default_value_t = 32)]
    pub point_in_flight: usize,
    /// Algorithms: ecdsa gets the in-flight series, the others one point each.
    #[arg(long, value_delimiter = ',', default_value = "ecdsa,ed25519,rsa")]
    pub algorithms: Vec<String>,
    /// Bytes of content per request.
    #[arg(long, default_value_t = 256)]
    pub content_len: usize,
    /// HTTP/2 connections the requests in flight are spread over: 1 is notary-server's one
    /// connection to its signer; more is a signer behind a load balancer, or several clients.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: u16,
    /// CPU list (taskset -c) for the servers and the single-thread token loop.
    #[arg(long, default_value = "0")]
    pub server_cpus: String,
    /// CPU list (taskset -c) for the load generator (this process).
    #[arg(long, default_value = "1")]
    pub client_cpus: String,
    /// Skip the two-core point (signerd on the server and client CPUs together, at
    /// --point-in-flight, against the token alone on two threads; for ECDSA also the stack
    /// floor on those CPUs).
    #[arg(long)]
    pub no_two_cores: bool,
    /// `token.sessions` for signerd [default: signerd's own default].
    #[arg(long)]
    pub sessions: Option<u32>,
    /// The signerd binary [default: `signerd` beside this executable].
    #[arg(long)]
    pub signerd: Option<PathBuf>,
    /// The Go notary-signer binary.
    #[arg(long, default_value = "/usr/bin/notary-signer")]
    pub notary_signer: PathBuf,
    /// Draw throughput and p99 against in-flight (ECDSA) into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Keep the temp dir (logs, configs) instead of removing it.
    #[arg(long)]
    pub keep_dir: bool,
    /// Stop (and fail) when the whole benchmark runs longer than this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub time_limit: u64,
}

/// Most requests in flight allowed (the run stays bounded on any machine).
const MAX_IN_FLIGHT: usize = 4096;

impl RunArgs {
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(0.1..=120.0).contains(&self.duration) || !(0.0..=30.0).contains(&self.warmup) {
            return Err("--duration must be 0.1-120 s and --warmup 0-30 s".into());
        }
        let levels = self.in_flight.iter().chain([&self.point_in_flight]);
        if levels.clone().any(|&n| n == 0 || n > MAX_IN_FLIGHT) || self.in_flight.len() > 12 {
            return Err(format!(
                "--in-flight takes up to 12 values of 1-{MAX_IN_FLIGHT} (and --point-in-flight one)"
            ));
        }
        for alg in &self.algorithms {
            if !["ecdsa", "ed25519", "rsa"].contains(&alg.as_str()) {
                return Err(format!("--algorithms: {alg} is not ecdsa, ed25519 or rsa"));
            }
        }
        if !(1..=1 << 20).contains(&self.content_len) {
            return Err("--content-len must be 1 byte to 1 MiB".into());
        }
        Ok(())
    }

    /// The in-flight levels measured for `algorithm`.
    pub fn levels(&self, algorithm: &str) -> Vec<usize> {
        if algorithm == "ecdsa" {
            self.in_flight.clone()
        } else {
            vec![self.point_in_flight]
        }
    }

    /// The CPU list of the two-core point: the server CPUs and the client CPUs together.
    pub fn both_cpus(&self) -> String {
        format!("{},{}", self.server_cpus, self.client_cpus)
    }

    pub(crate) fn load(&self, in_flight: usize) -> Load {
        Load {
            in_flight,
            connections: usize::from(self.connections),
            warmup: Duration::from_secs_f64(self.warmup),
            duration: Duration::from_secs_f64(self.duration),
            content_len: self.content_len,
        }
    }
}
