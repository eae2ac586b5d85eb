//! The real notary tools driven by tests: notary-server, the notary CLI, and the Go
//! notary-signer as the reference signer.

mod client;
mod go_signer;
mod server;

pub use client::{parse_key_list, parse_target_list, ListedKey, ListedTarget, NotaryClient};
pub use go_signer::GoSigner;
pub use server::{NotaryServer, SignerEndpoint};

/// The notary CLI (Debian package `notary`, 0.7.0).
pub const NOTARY_BIN: &str = "/usr/bin/notary";
/// notary-server from the same package.
pub const NOTARY_SERVER_BIN: &str = "/usr/bin/notary-server";
/// The Go notary-signer from the same package: the reference signer.
pub const NOTARY_SIGNER_BIN: &str = "/usr/bin/notary-signer";

/// How many times a daemon is started on a fresh port when its port was taken in the meantime.
const BIND_ATTEMPTS: usize = 3;
