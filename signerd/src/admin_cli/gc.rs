//! `signerd key gc`: key objects left half-made by an interrupted key generation (signerd
//! killed between generating a pair and naming it), listed and collected.
//!
//! It opens the token itself, from signerd's config (or `--token`), as `signerd migrate`
//! does, rather than asking a running signerd: it is for the token signerd may not be
//! running on, and a running signerd collects at every start anyway. Objects younger than the
//! grace period are left alone, so it is safe beside running replicas.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Args;
use serde_json::json;
use signerd_token::gc::{PendingAction, PendingObject, PENDING_GRACE};
use signerd_token::{ErrorKind, PinSource, Token, TokenConfig};

use super::output::{print_json, table};
use super::{CliError, Exit};
use crate::bootstrap::Bootstrap;
use crate::config::{FileConfig, Settings};

/// `signerd key gc`: which token, and whether to change it.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// List what would be removed or completed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Leave objects whose key generation started less than this many seconds ago: another
    /// signerd on the same token may be naming them right now.
    #[arg(long, value_name = "SECONDS", default_value_t = PENDING_GRACE.as_secs())]
    pub grace: u64,
    /// signerd's config file: the token is its [token].
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "token")]
    pub config: Option<PathBuf>,
    /// PKCS#11 URI of the token, instead of a config file.
    #[arg(long, value_name = "URI")]
    pub token: Option<String>,
    /// File holding the token's user PIN (overrides the URI's pin-source).
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
    /// With neither --config nor --token: the embedded development token in this folder.
    #[arg(long, value_name = "DIR", default_value = crate::devenv::DEFAULT_DEV_DIR)]
    pub dev_dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Lists, and without `--dry-run` collects, the half-made key objects in the token.
pub fn run(args: GcArgs) -> Result<(), CliError> {
    let config = token_config(&args)?;
    crate::logging::init(crate::config::LogFormat::Human, "warn");
    let token = Token::open(config).map_err(|e| {
        CliError::new(Exit::Unreachable, e.to_string())
            .hint("check the token URI and module, or run on the host the token is attached to")
    })?;
    let grace = Duration::from_secs(args.grace);
    let result = if args.dry_run {
        token.pending_objects(grace)
    } else {
        token.collect_pending(grace)
    };
    token.close();
    let objects = result.map_err(|e| {
        let exit = match e.kind() {
            ErrorKind::Unavailable => Exit::Unreachable,
            _ => Exit::Failed,
        };
        CliError::new(exit, e.to_string())
    })?;
    if args.json {
        print_json(&json!({
            "dry_run": args.dry_run,
            "grace_seconds": args.grace,
            "objects": objects.iter().map(object_json).collect::<Vec<_>>(),
        }));
    } else {
        print!("{}", report(&objects, args.dry_run, args.grace));
    }
    Ok(())
}

/// The token: `--token` (with `--pin-file`), else signerd's config file's token, else the
/// embedded development token.
fn token_config(args: &GcArgs) -> Result<TokenConfig, CliError> {
    let bad = |message: String| CliError::new(Exit::BadInput, message);
    let pin = args.pin_file.clone().map(PinSource::File);
    if let Some(uri) = &args.token {
        let uri = uri.parse().map_err(|e| {
            bad(format!(
                "--token: {e}; give the token's PKCS#11 URI, as in token.uri"
            ))
        })?;
        let mut config = TokenConfig::new(uri);
        config.pin = pin;
        return Ok(config);
    }
    let mut flags = FileConfig::default();
    flags.token.pin_file.clone_from(&args.pin_file);
    let settings = Settings::load(args.config.as_deref(), |k| std::env::var(k).ok(), flags)
        .map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            bad(lines.join("; "))
        })?;
    let bootstrap = Bootstrap::resolve(settings, &args.dev_dir).map_err(|e| bad(e.to_string()))?;
    // Still one thread: the dev token's SoftHSM folder must be set before the module loads.
    bootstrap.prepare_process();
    Ok(bootstrap.token().clone())
}

/// The report for people: one row per object, then what happened.
fn report(objects: &[PendingObject], dry_run: bool, grace: u64) -> String {
    if objects.is_empty() {
        return "no half-made key objects in the token\n".into();
    }
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|o| {
            vec![
                o.kind.uri_type().to_owned(),
                hex::encode(&o.id),
                o.final_label.clone(),
                started(o.started),
                action(&o.action),
            ]
        })
        .collect();
    let mut out = table(
        &["TYPE", "CKA_ID", "TO BE LABELLED", "STARTED", "ACTION"],
        &rows,
    );
    let count = |f: fn(&PendingAction) -> bool| objects.iter().filter(|o| f(&o.action)).count();
    let removed = count(|a| *a == PendingAction::Remove);
    let completed = count(|a| matches!(a, PendingAction::Complete(_)));
    let kept = count(|a| *a == PendingAction::Keep);
    let (remove_verb, complete_verb) = if dry_run {
        ("would remove", "would complete")
    } else {
        ("removed", "completed")
    };
    out.push_str(&format!(
        "{remove_verb} {removed}, {complete_verb} {completed}, kept {kept} (started less than {grace} s ago)\n"
    ));
    if dry_run && removed + completed > 0 {
        out.push_str("run again without --dry-run to do it\n");
    }
    out
}

fn action(a: &PendingAction) -> String {
    match a {
        PendingAction::Complete(label) => format!("complete (label {label})"),
        other => other.as_str().to_owned(),
    }
}

fn started(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".into())
}

fn object_json(o: &PendingObject) -> serde_json::Value {
    json!({
        "type": o.kind.uri_type(),
        "cka_id": hex::encode(&o.id),
        "final_label": o.final_label,
        "started": started(o.started),
        "action": match &o.action {
            PendingAction::Remove => "remove",
            PendingAction::Complete(_) => "complete",
            PendingAction::Keep => "keep",
        },
        "label_after": match &o.action {
            PendingAction::Complete(label) => Some(label.as_str()),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use signerd_token::ObjectKind;

    #[test]
    fn the_report_says_what_would_happen_and_how_to_do_it() {
        let started = std::time::UNIX_EPOCH + Duration::from_secs(1_764_496_566);
        let object = |kind, action| PendingObject {
            kind,
            id: vec![0xab; 4],
            final_label: "notary:root@example.com/app".into(),
            started,
            action,
        };
        let objects = [
            object(ObjectKind::PrivateKey, PendingAction::Remove),
            object(
                ObjectKind::PublicKey,
                PendingAction::Complete("notary:root@example.com/app".into()),
            ),
            object(ObjectKind::PublicKey, PendingAction::Keep),
        ];
        let text = report(&objects, true, 300);
        assert!(
            text.contains(
                "private  abababab  notary:root@example.com/app  2025-11-30T09:56:06Z  remove"
            ),
            "{text}"
        );
        assert!(
            text.contains("complete (label notary:root@example.com/app)"),
            "{text}"
        );
        assert!(
            text.contains("would remove 1, would complete 1, kept 1 (started less than 300 s ago)"),
            "{text}"
        );
        assert!(text.contains("without --dry-run"), "{text}");
        let text = report(&objects, false, 300);
        assert!(text.contains("removed 1, completed 1, kept 1"), "{text}");
        assert!(!text.contains("--dry-run"), "{text}");
        assert_eq!(
            report(&[], true, 300),
            "no half-made key objects in the token\n"
        );
    }
}
