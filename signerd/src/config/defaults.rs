//! Every value signerd runs with when nothing sets one. The token's (sessions, RSA size and
//! the sizes allowed, checkout timeout) are `signerd-vocab`'s, which the token crate reads too;
//! the daemon's own are here. The config reads them all from this module, and README's
//! configuration table states them (a test below holds it to them).

use std::net::SocketAddr;
use std::time::Duration;

pub use signerd_vocab::defaults::{
    rsa_bits_allowed, rsa_bits_choices, CHECKOUT_TIMEOUT, RSA_BITS, RSA_BITS_ALLOWED,
    TOKEN_SESSIONS as SESSIONS, TOKEN_SESSIONS_MAX as SESSIONS_MAX,
};

/// The gRPC address, on the Go notary-signer's port.
pub const LISTEN: &str = "127.0.0.1:7899";
/// How long in-flight requests get on SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
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
        assert_eq!(readme_default("token.sessions"), SESSIONS.to_string());
        assert_eq!(readme_default("token.rsa_bits"), RSA_BITS.to_string());
        assert_eq!(
            readme_default("server.shutdown_grace_secs"),
            SHUTDOWN_GRACE.as_secs().to_string()
        );
        assert_eq!(readme_default("log.format"), LOG_FORMAT);
        assert_eq!(readme_default("log.level"), LOG_LEVEL);
        let readme = include_str!("../../../README.md");
        let sizes: Vec<String> = RSA_BITS_ALLOWED.iter().map(u32::to_string).collect();
        assert!(
            readme.contains(&format!("({})", sizes.join(", "))),
            "README lists the RSA sizes allowed"
        );
        assert!(
            readme.contains(&format!("stayed busy for {} s", CHECKOUT_TIMEOUT.as_secs())),
            "README states the checkout timeout"
        );
    }
}
