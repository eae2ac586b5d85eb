//! signerd's admin API client, the one the admin CLI and pkcs11-shim share.
//!
//! - [`Endpoint`]: where signerd is (its admin Unix socket, or its mTLS port with an admin
//!   client certificate), and the one place a gRPC channel to it is built.
//! - [`Rpc`] and [`Call`]: the admin RPCs; each request type names its RPC and its response,
//!   so a call cannot go to the wrong method.
//! - [`RetryPolicy`]: which failures are tried again, how often and how far apart.
//! - [`Error`]: whether the request never reached signerd, the connection failed under it,
//!   no answer came in time, or signerd answered with a status (mapped once to a [`Refusal`]).
//!   It is told from tonic's error types, never from message text.
//! - [`secret`]: the requests that carry a PIN or a private key, wiped when dropped.
//! - [`wire`]: [`signerd_vocab`]'s key types and PSS parameters as the wire's.
//!
//! [`Client`] is async and cheap to clone; the CLI drives it with `block_on`, the shim from its
//! own I/O thread.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod endpoint;
mod error;
mod retry;
mod rpc;
pub mod secret;
pub mod wire;

pub use client::{Client, Options};
pub use endpoint::{Endpoint, SocketPeer, TlsEndpoint, TlsFile, UntrustedServer};
pub use error::{Error, Refusal, SetupError};
pub use retry::RetryPolicy;
pub use rpc::{Call, Rpc};
