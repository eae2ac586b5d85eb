//! The `signerd` binary.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    signerd::commands::run(signerd::cli::parse())
}
