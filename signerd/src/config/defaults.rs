//! Every value signerd runs with when nothing sets one. The token's (sessions, RSA size and
//! the sizes allowed, checkout timeout) are `signerd-vocab`'s, which the token crate reads too;
//! the daemon's own are here. The config reads them all from this module, and README's
//! configuration table states them (a test below holds it to them).

use std::net::SocketAddr;
use std::time::Duration;

pub use signerd_vocab::defaults::{
    rsa_bits_allowed, rsa_bits_choices, token_sessions as sessions, CHECKOUT_TIMEOUT, RSA_BITS,
    RSA_BITS_ALLOWED, TOKEN_SESSIONS_MAX as SESSIONS_MAX, TOKEN_SESSIONS_TEXT as SESSIONS_TEXT,
};

/// The gRPC address, on the Go notary-signer's port.
pub const LISTEN: &str = "127.0.0.1:7899";
/// How long in-flight requests get on SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Largest request message on the Notary port, in bytes: Go gRPC's default receive limit.
pub const MAX_MESSAGE_BYTES: u64 = 4 * 1024 * 1024;
/// Concurrent HTTP/2 streams (calls) one connection may have open.
pub const MAX_CONCURRENT_STREAMS: u64 = 128;
/// How long one call may take before it is cancelled.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Open client connections, total (the rest of the descriptors stay for the token).
pub const MAX_CONNECTIONS: u64 = 1024;
/// Open client connections from one peer address.
pub const MAX_CONNECTIONS_PER_PEER: u64 = 128;
/// How long a connection may stay silent (not even answering keepalive pings) before it is
/// closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a request waits for a token that is down (reconnecting) before it answers
/// UNAVAILABLE (`token.unavailable_after_ms`).
pub const UNAVAILABLE_AFTER: Duration = signerd_token::DEFAULT_UNAVAILABLE_AFTER;
/// Most `token.unavailable_after_ms` may be: a request should not hang on a missing token.
pub const UNAVAILABLE_AFTER_MAX: Duration = Duration::from_secs(60);
/// The most an idle token worker polls the queue before it sleeps (`token.idle_poll_us`): the
/// kernel's own default for a guest's idle polling (`guest_halt_poll_ns`).
pub const IDLE_POLL: Duration = Duration::from_micros(200);
/// Most `token.idle_poll_us` may be: past a millisecond a worker would spin through gaps that
/// a sleep and a wake-up cost far less than.
pub const IDLE_POLL_MAX: Duration = Duration::from_millis(1);
/// Largest request message of the admin API, in bytes: as the Notary port, so data the shim
/// signs in one call is never cut shorter than a Go gRPC client would allow.
pub const ADMIN_MAX_MESSAGE_BYTES: u64 = 4 * 1024 * 1024;
/// Most async runtime threads `server.runtime_threads` may ask for.
pub const RUNTIME_THREADS_MAX: u64 = 256;
/// The log format.
pub const LOG_FORMAT: &str = "human";
/// The log filter.
pub const LOG_LEVEL: &str = "info";

/// [`LISTEN`] as an address.
pub fn listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7899))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_text_is_the_listen_address() {
        assert_eq!(LISTEN.parse::<SocketAddr>().ok(), Some(listen()));
    }

    /// The README's configuration table row for `field`: its default column, unquoted.
    fn readme_default(field: &str) -> String {
        let readme = include_str!("../../../README.md");
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{field}` |")))
            .unwrap_or_else(|| panic!("README's configuration table has no row for {field}"));
        row.split('|')
            .nth(4)
            .unwrap()
            .trim()
            .trim_matches('`')
            .to_string()
    }

    #[test]
    fn the_readme_states_these_defaults() {
        assert_eq!(readme_default("server.listen"), LISTEN);
        assert_eq!(readme_default("token.sessions"), SESSIONS_TEXT);
        assert_eq!(readme_default("token.rsa_bits"), RSA_BITS.to_string());
        assert_eq!(
            readme_default("token.unavailable_after_ms"),
            UNAVAILABLE_AFTER.as_millis().to_string()
        );
        assert_eq!(
            readme_default("token.idle_poll_us"),
            IDLE_POLL.as_micros().to_string()
        );
        assert_eq!(
            readme_default("server.shutdown_grace_secs"),
            SHUTDOWN_GRACE.as_secs().to_string()
        );
        assert_eq!(readme_default("log.format"), LOG_FORMAT);
        for (field, value) in [
            ("server.max_message_bytes", MAX_MESSAGE_BYTES),
            ("server.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
            ("server.request_timeout_secs", REQUEST_TIMEOUT.as_secs()),
            ("server.max_connections", MAX_CONNECTIONS),
            ("server.max_connections_per_peer", MAX_CONNECTIONS_PER_PEER),
            ("server.idle_timeout_secs", IDLE_TIMEOUT.as_secs()),
            ("admin.max_message_bytes", ADMIN_MAX_MESSAGE_BYTES),
        ] {
            assert_eq!(readme_default(field), value.to_string(), "{field}");
        }
        assert_eq!(readme_default("log.level"), LOG_LEVEL);
        let readme = include_str!("../../../README.md");
        let sizes: Vec<String> = RSA_BITS_ALLOWED.iter().map(u32::to_string).collect();
        assert!(
            readme.contains(&format!("({})", sizes.join(", "))),
            "README lists the RSA sizes allowed"
        );
    }
}
