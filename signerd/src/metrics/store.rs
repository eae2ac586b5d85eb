//! The token's and the token workers' numbers, read at scrape time from the key store (its
//! counters are atomics: a scrape never waits for the token).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::keys::{KeyStore, StoreStats};

/// The numbers one scrape shows of the token and its workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreNumbers {
    /// The token answers and its sessions are logged in.
    pub up: bool,
    /// Connections made to the token since start (the first one included).
    pub generation: u64,
    /// Reconnections after the token went away.
    pub reconnects: u64,
    /// Logins again on a token that forgot the session's login.
    pub relogins: u64,
    /// Module re-initializations (C_Finalize then C_Initialize).
    pub reinitializations: u64,
    /// Calls given up on, stuck in the module after it reported the device gone.
    pub abandoned_calls: u64,
    /// Sessions open.
    pub sessions_open: u64,
    /// Sessions in a call now.
    pub sessions_busy: u64,
    /// Token worker threads.
    pub workers: u64,
    /// Operations waiting for a worker.
    pub queue_depth: u64,
    /// Operations that may wait before new ones are refused (RESOURCE_EXHAUSTED).
    pub queue_capacity: u64,
}

/// Reads the numbers now.
pub type ReadNumbers = Arc<dyn Fn() -> StoreNumbers + Send + Sync>;

/// A `prometheus-client` collector over the key store's numbers.
#[derive(Clone)]
pub struct StoreCollector {
    read: ReadNumbers,
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCollector").finish_non_exhaustive()
    }
}

impl StoreCollector {
    /// Reads the numbers with `read` at each scrape.
    pub fn new(read: ReadNumbers) -> StoreCollector {
        StoreCollector { read }
    }

    /// Reads the numbers of `keys` at each scrape ([`KeyStore::stats`]: atomics and a
    /// short-held lock, no token call).
    pub fn of(keys: KeyStore) -> StoreCollector {
        StoreCollector::new(Arc::new(move || StoreNumbers::from(&keys.stats())))
    }
}

impl From<&StoreStats> for StoreNumbers {
    fn from(s: &StoreStats) -> StoreNumbers {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        StoreNumbers {
            up: s.token.up,
            generation: s.token.generation,
            reconnects: s.token.reconnects,
            relogins: s.token.relogins,
            reinitializations: s.token.reinitializations,
            abandoned_calls: s.token.abandoned_calls,
            sessions_open: n(s.token.sessions_open),
            sessions_busy: n(s.token.sessions_busy),
            workers: n(s.workers),
            queue_depth: n(s.queue_depth),
            queue_capacity: n(s.queue_capacity),
        }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let n = (self.read)();
        let e = &mut encoder;
        gauge(
            e,
            "signerd_token_up",
            "1 while the token answers and signerd is logged in, 0 while it is away",
            u64::from(n.up),
        )?;
        gauge(
            e,
            "signerd_token_generation",
            "Connections made to the token since start",
            n.generation,
        )?;
        counter(
            e,
            "signerd_token_reconnects",
            "Reconnections to the token after it went away",
            n.reconnects,
        )?;
        counter(
            e,
            "signerd_token_relogins",
            "Logins again after the token forgot a session's login",
            n.relogins,
        )?;
        counter(
            e,
            "signerd_token_reinitializations",
            "PKCS#11 module re-initializations (C_Finalize, then C_Initialize)",
            n.reinitializations,
        )?;
        counter(
            e,
            "signerd_token_abandoned_calls",
            "Calls given up on: still waiting inside the PKCS#11 module after it reported the device gone, when the module was re-initialized without them",
            n.abandoned_calls,
        )?;
        gauge(
            e,
            "signerd_token_sessions_open",
            "Token sessions open",
            n.sessions_open,
        )?;
        gauge(
            e,
            "signerd_token_sessions_busy",
            "Token sessions in a call now",
            n.sessions_busy,
        )?;
        gauge(
            e,
            "signerd_token_workers",
            "Token worker threads",
            n.workers,
        )?;
        gauge(
            e,
            "signerd_token_queue_depth",
            "Token operations waiting for a worker",
            n.queue_depth,
        )?;
        gauge(
            e,
            "signerd_token_queue_capacity",
            "Token operations that may wait before new ones are refused (RESOURCE_EXHAUSTED)",
            n.queue_capacity,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, ProcessFacts};

    #[test]
    fn the_numbers_are_read_at_each_scrape() {
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let read_up = Arc::clone(&up);
        let metrics = Metrics::new(
            ProcessFacts::default(),
            Some(StoreCollector::new(Arc::new(move || StoreNumbers {
                up: read_up.load(std::sync::atomic::Ordering::Relaxed),
                reconnects: 3,
                queue_capacity: 512,
                ..StoreNumbers::default()
            }))),
        );
        let text = metrics.encode();
        assert!(text.contains("signerd_token_up 1\n"), "{text}");
        assert!(
            text.contains("signerd_token_reconnects_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("signerd_token_queue_capacity 512\n"),
            "{text}"
        );
        up.store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(metrics.encode().contains("signerd_token_up 0\n"));
    }
}
