//! Log output: human-readable lines by default, JSON objects with `--log-format json`.
//!
//! The log is for what an operator must act on: an ERROR is a fault. The per-operation record
//! is the audit trail's (or, without an audit file, the `signerd::keyop` lines).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Directives always added to the configured level, unless it names the same target.
///
/// The cryptoki crate logs "Mechanism type N is not supported" at ERROR for every mechanism
/// of a listing it has no name for (about 30 per listing against SoftHSM): the token is fine,
/// and signerd reports the numbers itself.
const QUIET_TARGETS: &[(&str, &str)] = &[("cryptoki::mechanism", "cryptoki::mechanism=off")];

/// Installs the global subscriber; logs go to stderr.
pub fn init(format: LogFormat, level: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// The configured level (`info`, or directives such as `info,signerd::keyop=warn`) with the
/// quiet targets the configuration does not name itself.
fn filter(level: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    for (target, directive) in QUIET_TARGETS {
        if !level.contains(target) {
            // The directives are constants, checked by the tests below.
            if let Ok(d) = directive.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Everything a subscriber wrote, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// What the events `emit` makes write under `level`'s filter.
    fn logged(level: &str, emit: impl FnOnce()) -> String {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter(level))
            .with_writer(out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn cryptoki_listing_line() {
        tracing::error!(target: "cryptoki::mechanism", "Mechanism type 2147483949 is not supported.");
    }

    #[test]
    fn quiet_directives_parse() {
        for (target, directive) in QUIET_TARGETS {
            assert!(directive.starts_with(target));
            assert!(directive
                .parse::<tracing_subscriber::filter::Directive>()
                .is_ok());
        }
    }

    #[test]
    fn cryptoki_mechanism_listing_errors_are_filtered_and_other_errors_are_not() {
        let out = logged("info", || {
            cryptoki_listing_line();
            tracing::error!(target: "signerd::token", "a real fault");
        });
        assert!(!out.contains("Mechanism type"), "{out}");
        assert!(out.contains("a real fault"), "{out}");
        // Even at trace level, unless the operator names the target.
        let out = logged("trace", cryptoki_listing_line);
        assert!(!out.contains("Mechanism type"), "{out}");
        let out = logged("info,cryptoki::mechanism=error", cryptoki_listing_line);
        assert!(out.contains("Mechanism type"), "{out}");
    }
}
