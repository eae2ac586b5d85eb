//! The audit trail: one record per key operation (allowed, refused, failed or cancelled), from the
//! edge's audit layer to an [`AuditSink`].
//!
//! [`record`] is the contract between the edge (which fills records) and the sinks (which write
//! them): the chained, checkpointed audit file, or the operational log when none is configured.

pub mod record;

pub use record::{AuditRecord, AuditSink, AuditUnavailable, Outcome, Port};
