//! The admin CLI: `signerd <noun> <verb>` over the admin API. Keys never leave the token: the
//! CLI builds certificates and CSRs with `x509-cert` and has the token sign them.
//!
//! Exit codes scripts can rely on ([`Exit`]): 0 done; 1 failed (token or internal error);
//! 2 bad input (arguments, files, wrong gun, expired CA, a CSR whose key is not in the token);
//! 3 not found (key, CA, certificate); 4 permission refused (socket policy, admin certificate);
//! 5 signerd or its token unreachable.

mod client;
mod gc;
mod keys;
mod output;
mod pki;
mod signer;
mod status;
mod trust;

use std::process::ExitCode;

use clap::Subcommand;

pub use client::ConnectArgs;

/// The admin commands, flattened into `signerd`'s command list.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Keys in the token: generate, list, show, delete.
    Key {
        /// Where signerd's admin API is.
        #[command(flatten)]
        connect: ConnectArgs,
        /// What to do.
        #[command(subcommand)]
        verb: keys::KeyVerb,
    },
    /// The repository CA in the token: make it, issue root certificates, show it.
    Ca {
        /// Where signerd's admin API is.
        #[command(flatten)]
        connect: ConnectArgs,
        /// What to do.
        #[command(subcommand)]
        verb: pki::CaVerb,
    },
    /// A CSR with CN = the GUN, signed by a key in the token.
    Csr {
        /// Where signerd's admin API is.
        #[command(flatten)]
        connect: ConnectArgs,
        /// The command's arguments.
        #[command(flatten)]
        args: pki::CsrArgs,
    },
    /// Root keys and certificates for Notary repositories.
    Root {
        /// Where signerd's admin API is.
        #[command(flatten)]
        connect: ConnectArgs,
        /// What to do.
        #[command(subcommand)]
        verb: pki::RootVerb,
    },
    /// Print (or merge into a notary config.json) the trust_pinning block for a GUN.
    TrustPinning {
        /// Where signerd's admin API is.
        #[command(flatten)]
        connect: ConnectArgs,
        /// The command's arguments.
        #[command(flatten)]
        args: trust::TrustPinningArgs,
    },
    /// Sign a file with a key in the token, in Notary's signature encoding.
    Sign {
        /// Where signerd's admin API is.
        #[command(flatten)]
        connect: ConnectArgs,
        /// The command's arguments.
        #[command(flatten)]
        args: keys::SignArgs,
    },
    /// The running signerd on one screen: version, token, keys, sessions, workers, health,
    /// audit trail, uptime.
    ///
    /// Exit codes: 0 = serving, 5 = not serving (token away or audit trail not writable) or
    /// not reachable.
    Status {
        /// Where signerd's admin API is.
        #[command(flatten)]
        connect: ConnectArgs,
        /// The command's arguments.
        #[command(flatten)]
        args: status::StatusArgs,
    },
}

/// Why an admin command failed, as an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 1: the operation failed (token error, internal error).
    Failed = 1,
    /// 2: bad input: arguments, files, wrong gun, expired CA, a CSR whose key is not in the token.
    BadInput = 2,
    /// 3: a key, CA or certificate does not exist.
    NotFound = 3,
    /// 4: signerd refused the caller (socket policy, admin certificate, PIN).
    Denied = 4,
    /// 5: signerd (or its token) cannot be reached.
    Unreachable = 5,
}

/// A failed admin command: what happened, and what to run instead.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub exit: Exit,
    /// What happened.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl CliError {
    /// An error with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError {
            exit,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds what to run instead.
    pub fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }
}

/// Runs an admin command and reports its outcome.
pub fn run(command: AdminCommand) -> ExitCode {
    let result = match command {
        AdminCommand::Key { connect, verb } => keys::run(&connect, verb),
        AdminCommand::Ca { connect, verb } => pki::run_ca(&connect, verb),
        AdminCommand::Csr { connect, args } => pki::run_csr(&connect, args),
        AdminCommand::Root { connect, verb } => pki::run_root(&connect, verb),
        AdminCommand::TrustPinning { connect, args } => trust::run(&connect, args),
        AdminCommand::Sign { connect, args } => keys::run_sign(&connect, args),
        AdminCommand::Status { connect, args } => status::run(&connect, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signerd: {}", e.message);
            if let Some(hint) = &e.hint {
                eprintln!("  -> {hint}");
            }
            ExitCode::from(e.exit as u8)
        }
    }
}
