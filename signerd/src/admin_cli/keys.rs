//! `signerd key generate|list|show|delete` and `signerd sign`.

use std::io::Write as _;
use std::path::PathBuf;

use base64::Engine as _;
use clap::{Args, Subcommand};
use der::EncodePem as _;
use serde_json::json;
use signerd_proto::admin as pb;
use signerd_token::{KeyAlgorithm, KeyId, SignMechanism};

use super::client::{AdminClient, ConnectArgs};
use super::output::{algorithm, print_json, table};
use super::{CliError, Exit};

/// What to do with keys.
#[derive(Debug, Subcommand)]
pub enum KeyVerb {
    /// Generate a key pair in the token (CKA_ID = its TUF key ID, label role@gun).
    Generate {
        /// ecdsa (P-256), ed25519 or rsa.
        #[arg(long, default_value = "ecdsa")]
        algorithm: String,
        /// The repository the key is for.
        #[arg(long, default_value = "")]
        gun: String,
        /// The TUF role (root, targets, snapshot, timestamp, targets/...).
        #[arg(long, default_value = "root")]
        role: String,
        /// RSA modulus size: 2048, 3072 or 4096 [default: signerd's token.rsa_bits].
        #[arg(long, value_parser = rsa_bits)]
        rsa_bits: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the keys in the token: key ID, algorithm, gun, role, token, created.
    List {
        /// Only keys of this repository.
        #[arg(long)]
        gun: Option<String>,
        /// Only keys of this role.
        #[arg(long)]
        role: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a key: PEM public key, TUF key ID, PKCS#11 URI, certificates.
    Show {
        /// The TUF key ID (64 hex characters).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List (--dry-run) and remove key objects an interrupted key generation left half-made.
    ///
    /// Opens the token itself from signerd's config (--config, --token, or the dev token), not
    /// through the admin API. Objects younger than --grace are kept: a replica may be naming
    /// them. Exit codes: 0 done, 1 the token failed, 2 bad config, 5 the token is unreachable.
    Gc(super::gc::GcArgs),
    /// Delete a key (both halves) and its certificates from the token.
    Delete {
        /// The TUF key ID.
        id: String,
        /// Really delete: the private key cannot be recovered.
        #[arg(long)]
        yes: bool,
    },
}

/// `--rsa-bits`: a size signerd makes keys of (the token refuses others the same way).
fn rsa_bits(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|bits| signerd_vocab::defaults::rsa_bits_allowed(*bits))
        .ok_or_else(|| format!("use {}", signerd_vocab::defaults::rsa_bits_choices()))
}

/// `signerd sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The TUF key ID of the signing key.
    #[arg(long = "key", value_name = "ID")]
    key_id: String,
    /// The file to sign (the whole content, as Notary signs canonical JSON).
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Write the raw signature here [default: print it as base64].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs a `key` verb.
pub fn run(connect: &ConnectArgs, verb: KeyVerb) -> Result<(), CliError> {
    // `gc` opens the token itself; the others go through the admin API.
    let client = || AdminClient::connect(connect);
    match verb {
        KeyVerb::Generate {
            algorithm,
            gun,
            role,
            rsa_bits,
            json,
        } => generate(&client()?, &algorithm, gun, role, rsa_bits, json),
        KeyVerb::List { gun, role, json } => list(&client()?, gun, role, json),
        KeyVerb::Show { id, json } => show(&client()?, &id, json),
        KeyVerb::Gc(args) => super::gc::run(args),
        KeyVerb::Delete { id, yes } => delete(&client()?, &id, yes),
    }
}

/// The wire key type of a TUF algorithm name.
pub fn key_type(name: &str) -> Result<pb::KeyType, CliError> {
    match name.parse::<KeyAlgorithm>() {
        Ok(KeyAlgorithm::Ecdsa) => Ok(pb::KeyType::EcP256),
        Ok(KeyAlgorithm::Ed25519) => Ok(pb::KeyType::Ed25519),
        Ok(KeyAlgorithm::Rsa) => Ok(pb::KeyType::Rsa),
        Err(e) => Err(CliError::new(Exit::BadInput, e.to_string())),
    }
}

/// Parses a TUF key ID given on the command line.
pub fn parse_key_id(text: &str) -> Result<KeyId, CliError> {
    text.parse::<KeyId>().map_err(|e| {
        CliError::new(Exit::BadInput, e.to_string()).hint("key IDs are shown by `signerd key list`")
    })
}

/// The private key with TUF key ID `id`, or a not-found error saying what to run.
pub fn private_key(client: &AdminClient, id: &KeyId) -> Result<pb::Object, CliError> {
    client
        .find(pb::FindObjectsRequest {
            class: pb::ObjectClass::PrivateKey as i32,
            tuf_key_id: id.to_string(),
            ..Default::default()
        })?
        .into_iter()
        .next()
        .ok_or_else(|| {
            CliError::new(Exit::NotFound, format!("no key {id} in the token")).hint(
                "list the keys with `signerd key list`, or make one with `signerd key generate`",
            )
        })
}

fn key_json(o: &pb::Object, token: &str) -> serde_json::Value {
    json!({
        "key_id": o.tuf_key_id,
        "algorithm": algorithm(o.key_type),
        "gun": o.gun,
        "role": o.role,
        "token": token,
        "created": o.created,
        "label": o.r#ref.as_ref().map(|r| r.label.clone()).unwrap_or_default(),
        "uri": o.uri,
    })
}

fn generate(
    client: &AdminClient,
    algorithm_name: &str,
    gun: String,
    role: String,
    rsa_bits: Option<u32>,
    json: bool,
) -> Result<(), CliError> {
    let key = client.generate(pb::GenerateKeyPairRequest {
        key_type: key_type(algorithm_name)? as i32,
        rsa_bits: rsa_bits.unwrap_or(0),
        gun,
        role,
        ..Default::default()
    })?;
    if json {
        let token = client.token()?.label;
        print_json(&key_json(&key, &token));
    } else {
        println!("{}", key.tuf_key_id);
    }
    Ok(())
}

fn list(
    client: &AdminClient,
    gun: Option<String>,
    role: Option<String>,
    json: bool,
) -> Result<(), CliError> {
    let token = client.token()?.label;
    let keys = client.find(pb::FindObjectsRequest {
        class: pb::ObjectClass::PrivateKey as i32,
        gun: gun.unwrap_or_default(),
        role: role.unwrap_or_default(),
        ..Default::default()
    })?;
    if json {
        print_json(&serde_json::Value::Array(
            keys.iter().map(|k| key_json(k, &token)).collect(),
        ));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                if k.tuf_key_id.is_empty() {
                    "-".into()
                } else {
                    k.tuf_key_id.clone()
                },
                algorithm(k.key_type).into(),
                if k.gun.is_empty() {
                    "-".into()
                } else {
                    k.gun.clone()
                },
                if k.role.is_empty() {
                    "-".into()
                } else {
                    k.role.clone()
                },
                token.clone(),
                if k.created.is_empty() {
                    "-".into()
                } else {
                    k.created.clone()
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["KEY ID", "ALGORITHM", "GUN", "ROLE", "TOKEN", "CREATED"],
            &rows
        )
    );
    Ok(())
}

fn certificates_of(client: &AdminClient, id: &KeyId) -> Result<Vec<pb::Object>, CliError> {
    client.find(pb::FindObjectsRequest {
        class: pb::ObjectClass::Certificate as i32,
        tuf_key_id: id.to_string(),
        ..Default::default()
    })
}

fn show(client: &AdminClient, id: &str, json: bool) -> Result<(), CliError> {
    let id = parse_key_id(id)?;
    let key = private_key(client, &id)?;
    let token = client.token()?.label;
    let pem = spki_pem(&key.public_key_spki)?;
    let certs = certificates_of(client, &id)?;
    if json {
        let mut value = key_json(&key, &token);
        value["public_key_pem"] = json!(pem);
        value["sensitive"] = json!(key.sensitive);
        value["extractable"] = json!(key.extractable);
        value["certificates"] = json!(certs
            .iter()
            .map(|c| json!({
                "label": c.r#ref.as_ref().map(|r| r.label.clone()).unwrap_or_default(),
                "uri": c.uri,
            }))
            .collect::<Vec<_>>());
        print_json(&value);
        return Ok(());
    }
    println!("key ID      {}", key.tuf_key_id);
    println!("algorithm   {}", algorithm(key.key_type));
    println!(
        "gun         {}",
        if key.gun.is_empty() { "-" } else { &key.gun }
    );
    println!(
        "role        {}",
        if key.role.is_empty() { "-" } else { &key.role }
    );
    println!("token       {token}");
    println!(
        "created     {}",
        if key.created.is_empty() {
            "-"
        } else {
            &key.created
        }
    );
    println!(
        "protection  {}",
        if key.sensitive && !key.extractable {
            "sensitive, not extractable"
        } else {
            "EXTRACTABLE or not sensitive"
        }
    );
    println!("uri         {}", key.uri);
    for c in &certs {
        println!("certificate {}", c.uri);
    }
    print!("{pem}");
    Ok(())
}

/// PEM of a DER SubjectPublicKeyInfo.
pub fn spki_pem(der_bytes: &[u8]) -> Result<String, CliError> {
    use der::Decode as _;
    spki::SubjectPublicKeyInfoOwned::from_der(der_bytes)
        .and_then(|s| s.to_pem(der::pem::LineEnding::LF))
        .map_err(|e| {
            CliError::new(
                Exit::Failed,
                format!("the key's public key does not encode: {e}"),
            )
        })
}

fn delete(client: &AdminClient, id: &str, yes: bool) -> Result<(), CliError> {
    let id = parse_key_id(id)?;
    let key = private_key(client, &id)?;
    if !yes {
        return Err(CliError::new(
            Exit::BadInput,
            format!(
                "not deleting key {id} ({} {}): the private key cannot be recovered",
                key.role, key.gun
            ),
        )
        .hint(format!("run `signerd key delete {id} --yes` to delete it")));
    }
    let cka_id = key.r#ref.map(|r| r.id).unwrap_or_default();
    let mut destroyed = 0;
    for class in [
        pb::ObjectClass::PrivateKey,
        pb::ObjectClass::PublicKey,
        pb::ObjectClass::Certificate,
    ] {
        destroyed += client.destroy(pb::ObjectRef {
            class: class as i32,
            id: cka_id.clone(),
            label: String::new(),
        })?;
    }
    println!("deleted key {id} ({destroyed} objects)");
    Ok(())
}

/// Runs `signerd sign`.
pub fn run_sign(connect: &ConnectArgs, args: SignArgs) -> Result<(), CliError> {
    let id = parse_key_id(&args.key_id)?;
    let content = std::fs::read(&args.input).map_err(|e| {
        CliError::new(
            Exit::BadInput,
            format!("cannot read {}: {e}", args.input.display()),
        )
    })?;
    let client = AdminClient::connect(connect)?;
    let key = private_key(&client, &id)?;
    let algorithm = match pb::KeyType::try_from(key.key_type) {
        Ok(pb::KeyType::EcP256) => KeyAlgorithm::Ecdsa,
        Ok(pb::KeyType::Ed25519) => KeyAlgorithm::Ed25519,
        Ok(pb::KeyType::Rsa) => KeyAlgorithm::Rsa,
        _ => {
            return Err(CliError::new(
                Exit::Failed,
                format!("key {id} has no key type signerd knows"),
            ))
        }
    };
    let (mechanism, pss) = match SignMechanism::notary(algorithm) {
        SignMechanism::Sha256RsaPkcsPss(p) => (
            signerd_token::objects::ckm::SHA256_RSA_PKCS_PSS,
            Some(pb::PssParams {
                hash_mechanism: p.hash,
                mgf: p.mgf,
                salt_length: p.salt_len,
            }),
        ),
        SignMechanism::EcdsaSha256 => (signerd_token::objects::ckm::ECDSA_SHA256, None),
        _ => (signerd_token::objects::ckm::EDDSA, None),
    };
    let reference = key.r#ref.clone().unwrap_or_default();
    let signature = client.sign(&reference, mechanism, pss, &content)?;
    match args.out {
        Some(path) => std::fs::write(&path, &signature).map_err(|e| {
            CliError::new(
                Exit::BadInput,
                format!("cannot write {}: {e}", path.display()),
            )
        })?,
        None => {
            let mut out = std::io::stdout();
            let _ = writeln!(
                out,
                "{}",
                base64::engine::general_purpose::STANDARD.encode(&signature)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_sizes_are_the_ones_the_token_makes() {
        assert_eq!(rsa_bits("3072"), Ok(3072));
        assert_eq!(rsa_bits("8192"), Err("use 2048, 3072 or 4096".to_string()));
        assert!(rsa_bits("big").is_err());
    }
}
