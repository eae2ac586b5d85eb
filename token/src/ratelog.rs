//! Faults under a storm, logged once per kind per interval with a count of the ones left out:
//! a token that vanishes under 32 requests in flight must not write a line per request.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one kind of fault is logged at most.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// A rate-limited WARN logger keyed by kind.
pub struct RateLog {
    interval: Duration,
    kinds: Mutex<HashMap<&'static str, Window>>,
}

struct Window {
    started: Instant,
    /// Events of this kind not logged since the last line.
    suppressed: u64,
}

impl RateLog {
    /// A logger that lets one line of a kind through per `interval`.
    pub fn new(interval: Duration) -> RateLog {
        RateLog {
            interval,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Logs `message` at WARN unless a line of this `kind` went out less than an interval
    /// ago; then only counts it, and the next line says how many were left out.
    pub fn event(&self, kind: &'static str, message: fmt::Arguments<'_>) {
        if let Some(suppressed) = self.admit(kind, Instant::now()) {
            tracing::warn!(kind, suppressed, "{message}");
        }
    }

    /// `Some(left out since the last line)` when a line of `kind` is due now; callers that
    /// log structured fields themselves ask here first.
    pub fn admit(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        match kinds.get_mut(kind) {
            Some(w) if now.duration_since(w.started) < self.interval => {
                w.suppressed += 1;
                None
            }
            Some(w) => {
                let left_out = std::mem::take(&mut w.suppressed);
                w.started = now;
                Some(left_out)
            }
            None => {
                kinds.insert(
                    kind,
                    Window {
                        started: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_with_the_count_left_out() {
        let log = RateLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.admit("a", t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(log.admit("a", t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.admit("b", t0), Some(0), "kinds are counted apart");
        assert_eq!(log.admit("a", t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(log.admit("a", t0 + Duration::from_secs(11)), None);
    }
}
