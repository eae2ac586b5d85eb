//! Defaults and limits the config, the token layer and the docs all read from here.

use std::time::Duration;

/// Token sessions opened when `token.sessions` is not set: one per CPU signerd may run on (its
/// affinity mask and cgroup quota), plus one. A software token (SoftHSM, the default) signs on
/// the token worker's own CPU, but not all the time: each signature also waits on SoftHSM's
/// object file and locks, and the extra worker signs while another waits. Many more workers
/// than CPUs only queue for CPU and take it from the async runtime that reads requests and
/// answers them (docs/performance.md, "How many token workers": on one core, 2 sessions
/// 0.54 of the token, 8 sessions 0.42; on two cores, 3 sessions 0.74-0.91 of the two-thread
/// token, 2 sessions 0.57-0.72).
/// Never fewer than two, so one long call (a key generation) does not stop every signature. A
/// network HSM waits on the wire instead: give it more (`config/network-hsm.toml`: 32).
pub fn token_sessions() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_add(1)
        .clamp(2, TOKEN_SESSIONS_MAX)
}

/// How the README's configuration table names the default of [`token_sessions`] (a test holds
/// the two together).
pub const TOKEN_SESSIONS_TEXT: &str = "one per CPU, plus one";
/// Most token sessions a config may ask for.
pub const TOKEN_SESSIONS_MAX: usize = 1024;
/// Modulus size of new RSA keys.
pub const RSA_BITS: u32 = 3072;
/// The RSA modulus sizes signerd makes keys of: what config accepts and the token enforces.
pub const RSA_BITS_ALLOWED: [u32; 3] = [2048, 3072, 4096];
/// How long a request waits for a free token session before it fails.
pub const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether signerd makes RSA keys of `bits`.
pub fn rsa_bits_allowed(bits: u32) -> bool {
    RSA_BITS_ALLOWED.contains(&bits)
}

/// The allowed RSA sizes for a message telling what to use instead: `2048, 3072 or 4096`.
pub fn rsa_bits_choices() -> String {
    match RSA_BITS_ALLOWED.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => {
            let rest: Vec<String> = rest.iter().map(u32::to_string).collect();
            format!("{} or {last}", rest.join(", "))
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rsa_size_is_allowed() {
        assert!(rsa_bits_allowed(RSA_BITS));
        assert!(!rsa_bits_allowed(1024));
        assert!(!rsa_bits_allowed(8192));
        assert!(!rsa_bits_allowed(3000));
    }

    #[test]
    fn choices_read_as_a_list() {
        assert_eq!(rsa_bits_choices(), "2048, 3072 or 4096");
    }

    #[test]
    fn default_sessions_fit_the_limit() {
        assert!((2..=TOKEN_SESSIONS_MAX).contains(&token_sessions()));
    }
}
