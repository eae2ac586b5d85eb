//! `signerd status [--json]`: the running daemon on one screen (through the admin API's
//! `Status`, so it is the daemon's own view, not a second look at the token).
//!
//! Exit code 0 while signerd is serving (token up, audit trail writable), 5 when it answers
//! but is not serving, as when it cannot be reached.

use clap::Args;
use serde_json::json;
use signerd_proto::admin as pb;

use super::client::{AdminClient, ConnectArgs};
use super::output::print_json;
use super::{CliError, Exit};

/// `signerd status`'s arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON for scripts instead of the screen.
    #[arg(long)]
    pub json: bool,
}

/// Runs `signerd status`.
pub fn run(connect: &ConnectArgs, args: &StatusArgs) -> Result<(), CliError> {
    let admin = AdminClient::connect(connect)?;
    let status = admin.status()?;
    if args.json {
        print_json(&to_json(&status));
    } else {
        print!("{}", screen(&status));
    }
    if status.serving {
        Ok(())
    } else {
        Err(CliError::new(Exit::Unreachable, "signerd is not serving")
            .hint("see token and audit above; health answers NOT_SERVING until both are good"))
    }
}

/// `2h 03m 04s`, `5m 00s`, `7s`.
fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        _ => format!("{h}h {m:02}m {s:02}s"),
    }
}

/// The human screen.
pub fn screen(s: &pb::StatusResponse) -> String {
    let token = s.token.clone().unwrap_or_default();
    let workers = s.workers.unwrap_or_default();
    let audit = s.audit.clone().unwrap_or_default();
    let mut out = String::new();
    let mut line = |label: &str, text: String| out.push_str(&format!("{label:<10} {text}\n"));
    let commit = if s.git_commit.is_empty() {
        String::new()
    } else {
        format!(" (commit {})", s.git_commit)
    };
    line(
        "signerd",
        format!("{}{commit}, up {}", s.version, duration(s.uptime_secs)),
    );
    line(
        "health",
        if s.serving { "SERVING" } else { "NOT_SERVING" }.to_owned(),
    );
    let name = match &token.info {
        Some(i) => format!(
            "'{}' slot {} ({} {}, serial {})",
            i.label, i.slot, i.manufacturer, i.model, i.serial
        ),
        None => "(not reachable)".to_owned(),
    };
    if token.up {
        line("token", format!("{name}: up, {} key(s)", token.key_count));
    } else {
        line("token", format!("{name}: DOWN: {}", token.error));
    }
    if token.up && !token.error.is_empty() {
        // The token answered the probe but not a later question.
        line("", format!("warning: {}", token.error));
    }
    line(
        "",
        format!(
            "connection {}, reconnects {}, re-logins {}, re-initializations {}",
            token.generation, token.reconnects, token.relogins, token.reinitializations
        ),
    );
    line(
        "sessions",
        format!("{} open, {} busy", token.sessions_open, token.sessions_busy),
    );
    line(
        "workers",
        format!(
            "{} threads, queue {} of {}; {} request(s) in flight",
            workers.workers, workers.queue_depth, workers.queue_capacity, s.requests_in_flight
        ),
    );
    let trail = if audit.path.is_empty() {
        "no audit file (records go to the operational log)".to_owned()
    } else {
        audit.path.clone()
    };
    if audit.writable {
        line("audit", format!("{trail}: writable"));
    } else {
        line("audit", format!("{trail}: NOT WRITABLE: {}", audit.error));
    }
    out
}

/// The JSON for scripts: the same facts, field names as in the admin proto.
pub fn to_json(s: &pb::StatusResponse) -> serde_json::Value {
    let token = s.token.clone().unwrap_or_default();
    let workers = s.workers.unwrap_or_default();
    let audit = s.audit.clone().unwrap_or_default();
    json!({
        "version": s.version,
        "git_commit": s.git_commit,
        "uptime_secs": s.uptime_secs,
        "serving": s.serving,
        "token": {
            "label": token.info.as_ref().map(|i| i.label.clone()),
            "slot": token.info.as_ref().map(|i| i.slot),
            "serial": token.info.as_ref().map(|i| i.serial.clone()),
            "manufacturer": token.info.as_ref().map(|i| i.manufacturer.clone()),
            "model": token.info.as_ref().map(|i| i.model.clone()),
            "up": token.up,
            "error": token.error,
            "key_count": token.key_count,
            "generation": token.generation,
            "reconnects": token.reconnects,
            "relogins": token.relogins,
            "reinitializations": token.reinitializations,
            "sessions_open": token.sessions_open,
            "sessions_busy": token.sessions_busy,
        },
        "workers": {
            "workers": workers.workers,
            "queue_depth": workers.queue_depth,
            "queue_capacity": workers.queue_capacity,
        },
        "requests_in_flight": s.requests_in_flight,
        "audit": {
            "path": audit.path,
            "writable": audit.writable,
            "error": audit.error,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(up: bool) -> pb::StatusResponse {
        pb::StatusResponse {
            version: "0.1.0".into(),
            git_commit: String::new(),
            uptime_secs: 3725,
            serving: up,
            token: Some(pb::TokenStatus {
                info: up.then(|| pb::TokenInfo {
                    label: "signerd".into(),
                    manufacturer: "SoftHSM project".into(),
                    model: "SoftHSM v2".into(),
                    serial: "42".into(),
                    slot: 7,
                }),
                up,
                error: if up {
                    String::new()
                } else {
                    "token removed".into()
                },
                key_count: 3,
                ..pb::TokenStatus::default()
            }),
            workers: Some(pb::WorkerStatus {
                workers: 8,
                queue_depth: 1,
                queue_capacity: 512,
            }),
            audit: Some(pb::AuditStatus::default()),
            requests_in_flight: 2,
        }
    }

    #[test]
    fn one_screen_says_what_is_up_and_what_is_not() {
        let up = screen(&sample(true));
        assert!(up.starts_with("signerd    0.1.0, up 1h 02m 05s\n"), "{up}");
        assert!(up.contains("health     SERVING\n"), "{up}");
        assert!(
            up.contains("token      'signerd' slot 7 (SoftHSM project SoftHSM v2, serial 42): up, 3 key(s)\n"),
            "{up}"
        );
        assert!(
            up.contains("workers    8 threads, queue 1 of 512; 2 request(s) in flight\n"),
            "{up}"
        );
        let down = screen(&sample(false));
        assert!(down.contains("health     NOT_SERVING\n"), "{down}");
        assert!(
            down.contains("(not reachable): DOWN: token removed"),
            "{down}"
        );
        assert_eq!(to_json(&sample(false))["token"]["up"], false);
    }
}
