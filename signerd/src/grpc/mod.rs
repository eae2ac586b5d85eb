//! The Notary signer services and health, over the token layer, behind the shared edge
//! ([`crate::edge`]).

pub mod health;
pub mod notary;
