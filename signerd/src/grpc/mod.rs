//! The gRPC edge: the Notary signer services and health, over the token layer.

pub mod health;
pub mod identity;
pub mod inflight;
pub mod notary;
pub mod oplog;
pub mod status;
