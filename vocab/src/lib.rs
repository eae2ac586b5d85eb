//! The vocabulary signerd's parts share: the token layer, the daemon and its admin CLI, and the
//! PKCS#11 shim name signing mechanisms, curves, key OIDs, the admin socket and the defaults
//! from here, so they cannot drift apart.
//!
//! No dependencies: the shim, a library loaded into other programs, links this too.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ckm;
pub mod curve;
pub mod defaults;
mod mechanism;
pub mod oid;

pub use mechanism::{KeyType, MechanismError, PssParams, SignMechanism, SHA256_DIGEST_INFO};

/// The admin socket where `signerd serve` with no config serves the admin API, relative to
/// the working directory (the embedded dev default keeps its state in `.signerd/`).
pub const DEFAULT_ADMIN_SOCKET: &str = ".signerd/admin.sock";
