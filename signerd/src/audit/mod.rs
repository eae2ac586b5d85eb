//! The audit trail: one record per key operation (allowed, refused, failed or cancelled), from the
//! edge's audit layer to an [`AuditSink`].
//!
//! [`record`] (the edge's) is the contract between the edge (which fills records) and the sinks (which write
//! them): the chained, checkpointed audit file ([`trail::AuditTrail`], lines as in [`line`],
//! checkpoints signed by the audit key in the token, [`key`]), or the operational log when none
//! is configured. [`verify`] checks a trail offline; [`cli`] is `signerd audit verify|tail`.

pub mod cli;
pub use crate::config::audit as config;
pub mod key;
pub mod line;
pub mod trail;
pub mod verify;
mod writer;

pub use crate::edge::record;
pub use crate::edge::record::{AuditRecord, AuditSink, AuditUnavailable, Outcome, Port};
pub use trail::AuditTrail;

/// The configured audit trail over the token of `keys` (checkpoints signed by its audit key),
/// or `None` when no audit file is configured.
pub fn open_trail(
    settings: Option<&config::AuditSettings>,
    keys: &crate::keys::KeyStore,
) -> Result<Option<std::sync::Arc<AuditTrail>>, String> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let signer = key::TokenCheckpointSigner::new(std::sync::Arc::clone(keys.token()));
    let trail = AuditTrail::open(settings.clone(), Box::new(signer))
        .map_err(|e| format!("audit trail {}: {e}", settings.path.display()))?;
    tracing::info!(path = %settings.path.display(), fsync = ?settings.fsync, "audit trail open");
    Ok(Some(std::sync::Arc::new(trail)))
}

#[cfg(test)]
mod tests;
