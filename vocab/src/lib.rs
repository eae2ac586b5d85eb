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

/// The admin socket clients use when nothing names one: absolute, so a program run in someone
/// else's folder never talks to a socket planted there (systemd's `RuntimeDirectory=signerd`).
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/signerd/admin.sock";

/// Where `signerd serve` with no config serves the admin API, relative to its working
/// directory (the embedded dev default keeps its state in `.signerd/`). Clients reach it by
/// `SIGNERD_SOCKET=$PWD/.signerd/admin.sock`; the admin CLI also falls back to it from the same
/// folder when the socket there is served by the CLI's own uid.
pub const DEV_ADMIN_SOCKET: &str = ".signerd/admin.sock";
