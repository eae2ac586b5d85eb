//! `signerd migrate notary-signer`: moves the timestamp and snapshot keys of a running Go
//! notary-signer out of its database and into the token, so notary-server can switch to signerd
//! without rotating any repository's keys.
//!
//! For each live row of `private_keys`: the public key must hash to the row's key ID; a key
//! already in the token is skipped (so the command can be run again); the private key is
//! decrypted with its alias's passphrase (`NOTARY_SIGNER_<ALIAS>`, as notary-signer reads it),
//! turned into PKCS#8 in a zeroized buffer, imported sensitive and non-extractable with its TUF
//! key ID and a Notary-domain label, and then proven by signing a fresh challenge in the token
//! and verifying it against the database's public key (a key that fails is removed again). The
//! database is only read. One bad row never stops the others.

pub mod command;
pub mod decrypt;
pub mod source;

use std::io::Write;

use secrecy::SecretString;
use sha2::{Digest, Sha256};
use signerd_token::{KeyAlgorithm, KeyId, PrivateKeyImport, Token, TokenError};

use self::decrypt::{passphrase_env, private_key_pkcs8};
use self::source::{KeyDatabase, SignerKeyRow};

/// Why a key (or the whole migration) could not be moved. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database could not be read.
    #[error("{0}")]
    Database(String),
    /// The row's passphrase variable is not set.
    #[error("key {key_id}: {env} is not set; export the passphrase of alias '{alias}' as notary-signer has it")]
    MissingPassphrase {
        /// The key.
        key_id: String,
        /// The alias.
        alias: String,
        /// The variable to set.
        env: String,
    },
    /// The passphrase does not open the key.
    #[error("key {key_id}: the passphrase in {env} does not decrypt it; set the passphrase notary-signer uses for this key's alias")]
    WrongPassphrase {
        /// The key.
        key_id: String,
        /// The variable that held the wrong passphrase.
        env: String,
    },
    /// The row is damaged or not what notary-signer writes.
    #[error("key {key_id}: the database row is damaged ({reason}); it was left as it is")]
    CorruptRow {
        /// The key.
        key_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The row's algorithm is not one signerd keeps.
    #[error("key {key_id}: algorithm '{algorithm}' is not one signerd keeps (ecdsa, ed25519, rsa); it was left in the database")]
    UnknownAlgorithm {
        /// The key.
        key_id: String,
        /// The row's algorithm.
        algorithm: String,
    },
    /// A different key with the same ID is in the token already.
    #[error("key {key_id}: the token already holds a different key under this ID; remove it (signerd key delete) or leave this key in notary-signer")]
    Conflict {
        /// The key.
        key_id: String,
    },
    /// The imported key did not sign as the database's public key says it should.
    #[error("key {key_id}: imported, but its signature does not verify with the database's public key ({reason}); it was removed from the token again")]
    VerifyFailed {
        /// The key.
        key_id: String,
        /// Why.
        reason: String,
    },
    /// The token refused or failed.
    #[error("key {key_id}: {source}")]
    Token {
        /// The key.
        key_id: String,
        /// The token's error, which says what to do.
        source: TokenError,
    },
}

/// What happened to one key.
#[derive(Debug)]
pub enum KeyOutcome {
    /// Imported and verified.
    Migrated,
    /// Would be imported (dry run).
    WouldMigrate,
    /// The same key is in the token already.
    AlreadyThere,
    /// Not moved; the database keeps it.
    Failed(MigrateError),
}

/// One key's line in the report.
#[derive(Debug)]
pub struct KeyReport {
    /// The TUF key ID.
    pub key_id: String,
    /// Repository.
    pub gun: String,
    /// Role.
    pub role: String,
    /// Algorithm as the row names it.
    pub algorithm: String,
    /// What happened.
    pub outcome: KeyOutcome,
}

/// Migrates every live row of notary-signer's database `db` into `token`, or, with `dry_run`,
/// says what would move. `passphrase` gives the passphrase of an alias (the CLI reads
/// `NOTARY_SIGNER_<ALIAS>`). Fails as a whole only when the database cannot be read.
pub fn migrate_notary_signer(
    db: &KeyDatabase,
    token: &Token,
    dry_run: bool,
    passphrase: &dyn Fn(&str) -> Option<SecretString>,
) -> Result<Vec<KeyReport>, MigrateError> {
    let rows = source::read_rows(db)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let outcome = match migrate_row(&row, token, dry_run, passphrase) {
                Ok(outcome) => outcome,
                Err(e) => KeyOutcome::Failed(e),
            };
            KeyReport {
                key_id: row.key_id,
                gun: row.gun,
                role: row.role,
                algorithm: row.algorithm,
                outcome,
            }
        })
        .collect())
}

fn migrate_row(
    row: &SignerKeyRow,
    token: &Token,
    dry_run: bool,
    passphrase: &dyn Fn(&str) -> Option<SecretString>,
) -> Result<KeyOutcome, MigrateError> {
    let key_id = row.key_id.clone();
    let corrupt = |reason: String| MigrateError::CorruptRow {
        key_id: key_id.clone(),
        reason,
    };
    let algorithm: KeyAlgorithm =
        row.algorithm
            .parse()
            .map_err(|_| MigrateError::UnknownAlgorithm {
                key_id: key_id.clone(),
                algorithm: row.algorithm.clone(),
            })?;
    let id: KeyId = row
        .key_id
        .parse()
        .map_err(|_| corrupt("key_id is not a 64-hex-digit TUF key ID".into()))?;
    if KeyId::of_public_key(algorithm, &row.public) != id {
        return Err(corrupt("its public key does not hash to its key ID".into()));
    }
    let token_error = |source: TokenError| MigrateError::Token {
        key_id: key_id.clone(),
        source,
    };
    match token.key_info(&id) {
        Ok(existing) if existing.public_key == row.public => return Ok(KeyOutcome::AlreadyThere),
        Ok(_) => return Err(MigrateError::Conflict { key_id }),
        Err(TokenError::KeyNotFound(_)) => {}
        Err(e) => return Err(token_error(e)),
    }
    if dry_run {
        return Ok(KeyOutcome::WouldMigrate);
    }
    let env = passphrase_env(&row.passphrase_alias);
    let secret =
        passphrase(&row.passphrase_alias).ok_or_else(|| MigrateError::MissingPassphrase {
            key_id: key_id.clone(),
            alias: row.passphrase_alias.clone(),
            env,
        })?;
    let pkcs8_der = private_key_pkcs8(row, algorithm, &secret)?;
    token
        .import_private_key(PrivateKeyImport {
            id: None,
            label: format!("notary:{}@{}", row.role, row.gun),
            expected: Some(algorithm),
            pkcs8_der,
        })
        .map_err(token_error)?;
    // Prove the token now signs as notary-signer did: a fresh challenge, verified against the
    // public key notary-server already trusts.
    let challenge = Sha256::digest(format!("signerd migration check {id}")).to_vec();
    let checked = token
        .sign(&id, &challenge)
        .map_err(|e| e.to_string())
        .and_then(|sig| verify_notary_signature(algorithm, &row.public, &challenge, &sig.bytes));
    if let Err(reason) = checked {
        if let Err(e) = token.delete_key(&id) {
            tracing::error!(key_id = %id, error = %e, "could not remove a key that failed its check");
        }
        return Err(MigrateError::VerifyFailed { key_id, reason });
    }
    Ok(KeyOutcome::Migrated)
}

/// Verifies a signature in Notary's encoding (ecdsa raw r||s over SHA-256, ed25519 pure, rsa
/// PSS SHA-256 salt 32) with a public key in Notary's encoding.
pub fn verify_notary_signature(
    algorithm: KeyAlgorithm,
    public: &[u8],
    content: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    use signature::Verifier as _;
    match algorithm {
        KeyAlgorithm::Ecdsa => {
            use p256::pkcs8::DecodePublicKey as _;
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(public)
                .map_err(|e| format!("bad public key: {e}"))?;
            let sig = p256::ecdsa::Signature::from_slice(signature)
                .map_err(|e| format!("bad signature: {e}"))?;
            key.verify(content, &sig).map_err(|e| e.to_string())
        }
        KeyAlgorithm::Ed25519 => {
            let bytes: [u8; 32] = public
                .try_into()
                .map_err(|_| "an ed25519 public key is 32 bytes".to_owned())?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|e| format!("bad public key: {e}"))?;
            let sig = ed25519_dalek::Signature::from_slice(signature)
                .map_err(|e| format!("bad signature: {e}"))?;
            key.verify(content, &sig).map_err(|e| e.to_string())
        }
        KeyAlgorithm::Rsa => {
            use rsa::pkcs8::DecodePublicKey as _;
            let key = rsa::RsaPublicKey::from_public_key_der(public)
                .map_err(|e| format!("bad public key: {e}"))?;
            let key = rsa::pss::VerifyingKey::<Sha256>::new(key);
            let sig = rsa::pss::Signature::try_from(signature)
                .map_err(|e| format!("bad signature: {e}"))?;
            key.verify(content, &sig).map_err(|e| e.to_string())
        }
    }
}

/// Writes the report: one line per key, then the totals. Returns whether every key is now in
/// the token (or would be, in a dry run).
pub fn print_report(
    reports: &[KeyReport],
    dry_run: bool,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let mut failed = 0;
    let (mut moved, mut skipped) = (0, 0);
    for r in reports {
        let what = match &r.outcome {
            KeyOutcome::Migrated => {
                moved += 1;
                "migrated and verified".to_owned()
            }
            KeyOutcome::WouldMigrate => {
                moved += 1;
                "would migrate".to_owned()
            }
            KeyOutcome::AlreadyThere => {
                skipped += 1;
                "already in the token; skipped".to_owned()
            }
            KeyOutcome::Failed(e) => {
                failed += 1;
                format!("NOT migrated: {e}")
            }
        };
        writeln!(
            out,
            "{}  {:<8} {:<10} {}  {what}",
            r.key_id, r.algorithm, r.role, r.gun
        )?;
    }
    let verb = if dry_run { "would migrate" } else { "migrated" };
    writeln!(
        out,
        "{} key(s): {moved} {verb}, {skipped} already in the token, {failed} not migrated{}",
        reports.len(),
        if failed > 0 {
            " (the database still has them; fix what each line says and run again)"
        } else {
            ""
        }
    )?;
    Ok(failed == 0)
}
