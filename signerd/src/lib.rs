//! signerd: a drop-in for Notary's `notary-signer` whose keys live in a PKCS#11 token.
//!
//! Layout: [`config`] (file, env, flags), [`devenv`] (the embedded dev default), [`tls`]
//! (mutual TLS), [`keys`] (the token for async code, checked against the caller's access),
//! [`edge`] (the layers both ports share: identity, audit, policy; errors mapped to status
//! codes in [`edge::status`]), [`grpc`] (the Notary signer protocol and health), [`admin`]
//! (signerd's own admin API), [`server`] (serving, SIGHUP reload, shutdown).
//! The token itself is the `signerd-token` crate, which knows nothing of gRPC.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod admin_cli;
pub mod audit;
pub mod cli;
pub mod config;
pub mod devenv;
pub mod edge;
pub mod grpc;
pub mod keys;
pub mod logging;
pub mod server;
pub mod shim_install;
pub mod tls;
