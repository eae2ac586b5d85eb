//! The shim's log: one line per event, to stderr or a file, set up by `C_Initialize`.
//!
//! A library inside someone else's process cannot own the global `tracing` subscriber, so this
//! is a small logger of its own. Nothing secret is ever formatted into a line: PINs and key
//! bytes live in types whose `Debug` says `[redacted]`.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{LogLevel, LogTarget};

struct Logger {
    level: LogLevel,
    sink: Sink,
}

enum Sink {
    Stderr,
    File(std::sync::Mutex<std::fs::File>),
}

static LOGGER: RwLock<Option<Logger>> = RwLock::new(None);

/// Before `C_Initialize` (or when the config is broken) warnings still reach stderr.
const DEFAULT_LEVEL: LogLevel = LogLevel::Warn;

/// Sets where lines go from now on. A file that cannot be opened falls back to stderr, which
/// says so.
pub fn configure(target: &LogTarget, level: LogLevel) {
    let sink = match target {
        LogTarget::Off => None,
        LogTarget::Stderr => Some(Sink::Stderr),
        LogTarget::File(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Some(Sink::File(std::sync::Mutex::new(f))),
            Err(e) => {
                write_line(
                    &Sink::Stderr,
                    LogLevel::Warn,
                    "C_Initialize",
                    &format!(
                        "cannot open log file {}: {e}; logging to stderr",
                        path.display()
                    ),
                );
                Some(Sink::Stderr)
            }
        },
    };
    if let Ok(mut guard) = LOGGER.write() {
        *guard = sink.map(|sink| Logger { level, sink });
    }
}

/// Whether a line at `level` would be written.
pub fn enabled(level: LogLevel) -> bool {
    match LOGGER.read() {
        Ok(guard) => match guard.as_ref() {
            Some(l) => level <= l.level,
            None => level <= DEFAULT_LEVEL,
        },
        Err(_) => level <= LogLevel::Error,
    }
}

/// Writes one line about `function` at `level`.
pub fn log(level: LogLevel, function: &str, message: &str) {
    match LOGGER.read() {
        Ok(guard) => match guard.as_ref() {
            Some(l) if level <= l.level => write_line(&l.sink, level, function, message),
            Some(_) => {}
            None if level <= DEFAULT_LEVEL => write_line(&Sink::Stderr, level, function, message),
            None => {}
        },
        // A panic while configuring: say it on stderr rather than lose it.
        Err(_) => write_line(&Sink::Stderr, level, function, message),
    }
}

fn write_line(sink: &Sink, level: LogLevel, function: &str, message: &str) {
    let level = match level {
        LogLevel::Error => "ERROR",
        LogLevel::Warn => "WARN",
        LogLevel::Info => "INFO",
        LogLevel::Debug => "DEBUG",
    };
    let line = format!(
        "{} signerd-pkcs11-shim[{}] {level} {function}: {message}\n",
        timestamp(),
        std::process::id()
    );
    // A log line that cannot be written is dropped: the host's call must not fail for it.
    match sink {
        Sink::Stderr => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        Sink::File(file) => {
            if let Ok(mut f) = file.lock() {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }
}

/// UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Logs a formatted line: `shim_log!(Warn, "C_Sign", "signerd down: {e}")`.
macro_rules! shim_log {
    ($level:ident, $function:expr, $($arg:tt)+) => {
        if $crate::log::enabled($crate::config::LogLevel::$level) {
            $crate::log::log($crate::config::LogLevel::$level, $function, &format!($($arg)+));
        }
    };
}
pub(crate) use shim_log;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
