//! signerd: a drop-in for Notary's `notary-signer` whose keys live in a PKCS#11 token.
//!
//! Layout: [`cli`] (the command line, parsed), [`commands`] (what each command does),
//! [`bootstrap`] (configured or the embedded dev default, decided once), [`startup`] (startup
//! errors and exit codes), [`config`] (file, env, flags), [`devenv`] (the dev environment),
//! [`tls`] (mutual TLS, identity per connection), [`keys`] (the token for async code, checked
//! against the caller's access), [`edge`] (the layers both ports share: identity, audit, policy;
//! errors mapped to status codes in [`edge::status`]), [`audit`] (the audit trail), [`grpc`]
//! (the Notary signer protocol and health), [`admin`] (signerd's own admin API), [`server`]
//! (serving, SIGHUP reload, shutdown), [`scheduling`] (the runtime threads' CPU policy), [`migrate`] (keys from notary-signer).
//! The token itself is the `signerd-token` crate, which knows nothing of gRPC.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod admin_cli;
pub mod audit;
pub mod bootstrap;
pub mod cli;
pub mod coalesce;
pub mod commands;
pub mod config;
pub mod devenv;
pub mod edge;
pub mod grpc;
pub mod h2;
pub mod hardening;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod migrate;
pub mod scheduling;
pub mod server;
pub mod shim_install;
pub mod startup;
pub mod tls;
