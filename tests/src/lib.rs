//! Integration-test support for signerd: child processes that clean up after themselves, a test
//! PKI made at run time, the real notary-server and notary CLI, the Go reference signer, and the
//! notary lifecycle scenario every signer must pass.
//!
//! Every test makes its own [`TestDir`]; everything it starts lives in a [`ChildGuard`], so
//! nothing is shared between tests and nothing is left running. Tests read the built binaries
//! from [`artifacts`] (they never build) and write only inside their [`TestDir`]; a system
//! path a tool insists on is given to it in a private mount namespace ([`namespace`]).

#![forbid(unsafe_code)]

pub mod admin;
pub mod artifacts;
pub mod audit;
pub mod haproxy;
pub mod https;
pub mod mariadb;
pub mod namespace;
pub mod notary;
pub mod p11kit;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod python;
pub mod scenario;
pub mod shim;
pub mod signerd;
mod test_dir;

pub use notary::{GoSigner, NotaryClient, NotaryServer, SignerEndpoint};
pub use pki::{IssuedCert, TestCa, TestPki};
pub use process::{free_port, wait_for_port, ChildGuard};
pub use scenario::Lifecycle;
pub use test_dir::TestDir;
