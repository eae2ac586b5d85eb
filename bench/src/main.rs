//! `signerd-bench`: the Go notary-signer, signerd and the token alone, measured side by side in
//! one run on one machine (scripts/bench.sh builds and runs it; README "Performance" explains
//! the table).
//!
//! Each server is pinned to the server CPU with `taskset`, the load generator (this process) to
//! the other; load is `Sign` over ONE mutual-TLS HTTP/2 connection with N requests in flight, as
//! notary-server sends it. Every process the benchmark starts is stopped by PID, everything it
//! writes stays in its temp dir (and the plot file asked for), and every run is bounded in time.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod args;
mod bench;
mod first_use;
mod floor;
mod load;
mod plot;
mod procstat;
mod report;
mod servers;
mod stats;
mod token_loop;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Side-by-side benchmark of the Go notary-signer, signerd and the token alone.
#[derive(Debug, Parser)]
#[command(name = "signerd-bench", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the whole benchmark and print the table.
    Run(bench::RunArgs),
    /// The first Sign with keys never used before, in a token of many keys (the key index).
    FirstUse(first_use::FirstUseArgs),
    /// The token-only loop (run by `run` as a pinned child process; prints a JSON report).
    #[command(hide = true)]
    TokenLoop(token_loop::TokenLoopArgs),
    /// signerd's gRPC server with a handler that answers at once (run by `run` as a pinned
    /// child process: the cost of TLS, HTTP/2 and gRPC alone).
    #[command(hide = true)]
    StackFloor(floor::FloorArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => {
            if let Err(e) = bench::pin_self(&args) {
                eprintln!("signerd-bench: {e}");
                return ExitCode::from(2);
            }
            match bench::run(&args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => {
                    eprintln!("signerd-bench: FAILED (bad signatures, failed requests or an incomplete series: see the notes above)");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("signerd-bench: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::FirstUse(args) => match first_use::run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("signerd-bench: FAILED (failed requests or bad signatures: see above)");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("signerd-bench: {e}");
                ExitCode::from(2)
            }
        },
        Command::StackFloor(args) => match floor::serve(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("stack-floor: {e}");
                ExitCode::FAILURE
            }
        },
        Command::TokenLoop(args) => match token_loop::run_child(&args) {
            Ok(report) => match serde_json::to_string(&report) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("token-loop: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("token-loop: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
