//! One log line per key operation: method, key ID, gun, role, the caller (client certificate
//! subject, or the peer uid on the admin socket), outcome and duration, and for admin
//! operations a detail (mechanism, object). Never a PIN, key bytes or signed content.

use std::time::Instant;

use signerd_token::KeyInfo;
use tonic::Code;

use super::inflight::{InFlight, InFlightGuard};
use super::status::EdgeError;

/// An operation being timed; [`OpLog::finish`] writes its line.
pub struct OpLog {
    method: &'static str,
    client: String,
    key_id: String,
    gun: String,
    role: String,
    detail: Option<String>,
    started: Instant,
    _in_flight: InFlightGuard,
}

impl OpLog {
    /// Starts timing `method` for `client`, counted in `in_flight` until finished.
    pub fn start(method: &'static str, client: String, in_flight: &InFlight) -> OpLog {
        OpLog {
            _in_flight: in_flight.enter(),
            method,
            client,
            key_id: String::new(),
            gun: String::new(),
            role: String::new(),
            detail: None,
            started: Instant::now(),
        }
    }

    /// Records the key the operation names.
    pub fn key_id(&mut self, id: &str) {
        self.key_id = id.chars().take(80).collect();
    }

    /// Records repository and role (from the request or the key found).
    pub fn usage(&mut self, gun: &str, role: &str) {
        self.gun = gun.to_owned();
        self.role = role.to_owned();
    }

    /// Records what is known of a key.
    pub fn key(&mut self, key: &KeyInfo) {
        self.key_id = key.id.to_string();
        self.usage(&key.usage.gun, &key.usage.role);
    }

    /// Records what else identifies the operation (an admin mechanism or object class).
    pub fn detail(&mut self, detail: String) {
        self.detail = Some(detail);
    }

    /// Writes the line for this outcome.
    pub fn finish<T, E: EdgeError>(self, result: &Result<T, E>) {
        // Microsecond resolution is plenty, and keeps the lines short.
        let duration_ms = (self.started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
        let (method, key_id, gun, role, client) = (
            self.method,
            &self.key_id,
            &self.gun,
            &self.role,
            &self.client,
        );
        // An absent detail is left out of the line (Notary operations have none).
        let detail = self.detail.as_deref();
        match result {
            Ok(_) => {
                tracing::info!(target: "signerd::keyop", method, key_id, gun, role, client, detail, outcome = "ok", duration_ms)
            }
            Err(e) => {
                let code = e.code();
                let outcome = format!("{code:?}");
                match code {
                    Code::Internal
                    | Code::Unavailable
                    | Code::FailedPrecondition
                    | Code::PermissionDenied => {
                        tracing::warn!(target: "signerd::keyop", method, key_id, gun, role, client, detail, outcome, duration_ms, error = %e)
                    }
                    _ => {
                        tracing::info!(target: "signerd::keyop", method, key_id, gun, role, client, detail, outcome, duration_ms, error = %e)
                    }
                }
            }
        }
    }

    /// Writes the line for a call the admin policy refused before it reached the service.
    pub fn denied(method: &str, client: &str, reason: &str) {
        tracing::warn!(target: "signerd::keyop", method, client, outcome = "PermissionDenied", error = reason);
    }
}
