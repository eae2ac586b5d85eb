//! signerd: a drop-in for Notary's `notary-signer` whose keys live in a PKCS#11 token.
//!
//! Layout: [`config`] (file, env, flags), [`devenv`] (the embedded dev default), [`tls`]
//! (mutual TLS), [`keys`] (the token for async code), [`grpc`] (the Notary signer protocol and
//! health, errors mapped to status codes in [`grpc::status`]), [`admin`] (signerd's own admin
//! API: identity, policy, service), [`server`] (serving, shutdown).
//! The token itself is the `signerd-token` crate, which knows nothing of gRPC.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod admin_cli;
pub mod audit;
pub mod cli;
pub mod config;
pub mod devenv;
pub mod grpc;
pub mod hardening;
pub mod keys;
pub mod logging;
pub mod server;
pub mod shim_install;
pub mod tls;
