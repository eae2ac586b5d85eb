//! `signerd trust-pinning <gun>`: the `trust_pinning` block a notary client needs to trust the
//! repository's root through the CA (`ca`) or the root certificates' key IDs (`certs`), printed
//! or merged into an existing `config.json` without losing its other fields.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Map, Value};

use super::client::{AdminClient, ConnectArgs};
use super::output::{print_json, write_atomically};
use super::pki::{ca_pem, default_certificate_file, root_certificate_id};
use super::{CliError, Exit};

/// `signerd trust-pinning`.
#[derive(Debug, Args)]
pub struct TrustPinningArgs {
    /// The repository (GUN), or a GUN prefix for --ca.
    gun: String,
    /// Pin the GUN to the CA (the default).
    #[arg(long, conflicts_with = "certs")]
    ca: bool,
    /// Pin the GUN to the key IDs of its root certificates (the files --root-cert names).
    #[arg(long)]
    certs: bool,
    /// A root certificate of the GUN, for --certs (repeatable) [default: <gun>.crt, as
    /// `signerd root new` writes it].
    #[arg(long = "root-cert", value_name = "FILE", requires = "certs")]
    cert_files: Vec<PathBuf>,
    /// Refuse repositories without a pin (no trust on first use).
    #[arg(long)]
    disable_tofu: bool,
    /// The CA certificate file the pin names; written from the token when missing.
    #[arg(long, value_name = "FILE", default_value = "ca.pem")]
    ca_file: PathBuf,
    /// Merge the block into this notary config.json (created when missing).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
}

/// Runs `signerd trust-pinning`.
pub fn run(connect: &ConnectArgs, args: TrustPinningArgs) -> Result<(), CliError> {
    let mut block = Map::new();
    if args.certs {
        let files = if args.cert_files.is_empty() {
            vec![default_certificate_file(&args.gun)]
        } else {
            args.cert_files.clone()
        };
        let ids = files
            .iter()
            .map(|f| root_certificate_id(f, &args.gun))
            .collect::<Result<Vec<_>, _>>()?;
        block.insert("certs".into(), json!({ &args.gun: ids }));
    } else {
        let ca_file = ensure_ca_file(connect, &args.ca_file)?;
        block.insert("ca".into(), json!({ &args.gun: ca_file }));
    }
    if args.disable_tofu {
        block.insert("disable_tofu".into(), Value::Bool(true));
    }
    let block = Value::Object(block);
    if let Some(path) = &args.write {
        merge_into(path, &block)?;
        eprintln!(
            "signerd: merged trust_pinning for {} into {}",
            args.gun,
            path.display()
        );
    }
    print_json(&json!({ "trust_pinning": block }));
    Ok(())
}

/// The absolute path of the CA file, written from the token when it is not there.
fn ensure_ca_file(connect: &ConnectArgs, path: &Path) -> Result<String, CliError> {
    if !path.exists() {
        let client = AdminClient::connect(connect)?;
        write_atomically(path, ca_pem(&client)?.as_bytes(), 0o644)?;
        eprintln!("signerd: wrote the CA certificate to {}", path.display());
    }
    let absolute = std::fs::canonicalize(path)
        .map_err(|e| CliError::new(Exit::BadInput, format!("{}: {e}", path.display())))?;
    Ok(absolute.display().to_string())
}

/// Merges `block` into the `trust_pinning` of the JSON config at `path`: pins for other GUNs
/// and every other field stay.
fn merge_into(path: &Path, block: &Value) -> Result<(), CliError> {
    let mut config = match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Value::Object(Map::new()),
        Ok(text) => serde_json::from_str::<Value>(&text).map_err(|e| {
            CliError::new(
                Exit::BadInput,
                format!("{} is not JSON: {e}", path.display()),
            )
            .hint("fix the file, or give --write a new file")
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Object(Map::new()),
        Err(e) => {
            return Err(CliError::new(
                Exit::BadInput,
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    };
    merge(&mut config, block).map_err(|what| {
        CliError::new(
            Exit::BadInput,
            format!("{}: {what} is not a JSON object", path.display()),
        )
    })?;
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    write_atomically(path, text.as_bytes(), 0o644)
}

/// The merge itself; `Err` names a part of the config that is not an object.
fn merge(config: &mut Value, block: &Value) -> Result<(), &'static str> {
    let root = config.as_object_mut().ok_or("the file")?;
    let pinning = root
        .entry("trust_pinning")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or("trust_pinning")?;
    for (key, value) in block.as_object().into_iter().flatten() {
        match (key.as_str(), value) {
            ("ca" | "certs", Value::Object(entries)) => {
                let map = pinning
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .ok_or(if key == "ca" {
                        "trust_pinning.ca"
                    } else {
                        "trust_pinning.certs"
                    })?;
                for (gun, pin) in entries {
                    map.insert(gun.clone(), pin.clone());
                }
            }
            _ => {
                pinning.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_every_other_field_and_pin() {
        let mut config = json!({
            "trust_dir": "~/.notary",
            "remote_server": { "url": "https://notary.example.com", "root_ca": "/x.pem" },
            "trust_pinning": { "ca": { "other/gun": "/other.pem" }, "certs": { "a": ["1"] } }
        });
        merge(
            &mut config,
            &json!({ "ca": { "example.com/app": "/ca.pem" }, "disable_tofu": true }),
        )
        .unwrap();
        assert_eq!(
            config,
            json!({
                "trust_dir": "~/.notary",
                "remote_server": { "url": "https://notary.example.com", "root_ca": "/x.pem" },
                "trust_pinning": {
                    "ca": { "other/gun": "/other.pem", "example.com/app": "/ca.pem" },
                    "certs": { "a": ["1"] },
                    "disable_tofu": true
                }
            })
        );
        let mut bad = json!({ "trust_pinning": [] });
        assert_eq!(merge(&mut bad, &json!({})), Err("trust_pinning"));
    }
}
