//! Reading the Go notary-signer's key database: the `private_keys` table that its SQL stores
//! (MySQL, PostgreSQL) keep, given as the same `storage.db_url` notary-signer is configured with.
//! Read only: nothing here writes to the database.

use super::MigrateError;

/// One live row of `private_keys` (rows notary-signer soft-deleted are never read).
#[derive(Clone, PartialEq, Eq)]
pub struct SignerKeyRow {
    /// The row's primary key, to name the row in messages.
    pub row_id: i64,
    /// The TUF key ID (hex), as notary-server knows the key.
    pub key_id: String,
    /// `ecdsa`, `ed25519` or `rsa`.
    pub algorithm: String,
    /// The alias whose passphrase (`NOTARY_SIGNER_<ALIAS>`) encrypted the private key.
    pub passphrase_alias: String,
    /// The public key as notary-signer serves it over gRPC.
    pub public: Vec<u8>,
    /// The private key as a compact JWE (PBES2-HS256+A128KW, A256GCM). Encrypted: not a secret
    /// without the passphrase, but never printed all the same.
    pub private_jwe: Vec<u8>,
    /// The key's repository.
    pub gun: String,
    /// The key's role (`timestamp`, `snapshot`).
    pub role: String,
    /// The JWE key-wrap algorithm the row records.
    pub keywrap_alg: String,
    /// The JWE content-encryption algorithm the row records.
    pub encryption_alg: String,
}

impl std::fmt::Debug for SignerKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerKeyRow")
            .field("row_id", &self.row_id)
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .field("gun", &self.gun)
            .field("role", &self.role)
            .field("passphrase_alias", &self.passphrase_alias)
            .finish_non_exhaustive()
    }
}

/// The live rows of `private_keys`, in row order.
pub fn read_rows(db_url: &str) -> Result<Vec<SignerKeyRow>, MigrateError> {
    match db_url.split_once("://").map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => read_postgres(db_url),
        _ if db_url.contains("@tcp(") || db_url.contains("@unix(") => Err(MigrateError::Database(
            "MySQL databases (a go-sql-driver DSN such as 'user:pass@tcp(host:3306)/notarysigner') are not supported yet; export the table to PostgreSQL or use a PostgreSQL notary-signer".into(),
        )),
        _ => Err(MigrateError::Database(format!(
            "cannot tell the database kind from the URL (redacted: {}); give notary-signer's storage.db_url, e.g. postgres://signer@127.0.0.1:5432/notarysigner?sslmode=disable",
            redact_url(db_url)
        ))),
    }
}

const QUERY: &str = "SELECT id, key_id, algorithm, passphrase_alias, public, private, gun, role, \
                     keywrap_alg, encryption_alg FROM private_keys WHERE deleted_at IS NULL ORDER BY id";

fn read_postgres(db_url: &str) -> Result<Vec<SignerKeyRow>, MigrateError> {
    let shown = redact_url(db_url);
    let config: postgres::Config = db_url.parse().map_err(|e| {
        MigrateError::Database(format!(
            "cannot read the PostgreSQL URL {shown}: {e}; TLS to the database is not supported yet: use sslmode=disable on the database host or through a tunnel"
        ))
    })?;
    let mut client = config.connect(postgres::NoTls).map_err(|e| {
        MigrateError::Database(format!("cannot connect to {shown}: {e}; check the URL, that the server runs, and that the user may read private_keys"))
    })?;
    let rows = client.query(QUERY, &[]).map_err(|e| {
        MigrateError::Database(format!(
            "cannot read table private_keys from {shown}: {e}; is this notary-signer's database?"
        ))
    })?;
    rows.iter()
        .map(|row| {
            let row_id: i32 = row.try_get(0).map_err(|e| corrupt_column(-1, "id", &e))?;
            let row_id = i64::from(row_id);
            let text = |i: usize, name: &str| -> Result<String, MigrateError> {
                row.try_get::<_, String>(i)
                    .map_err(|e| corrupt_column(row_id, name, &e))
            };
            let bytes = |i: usize, name: &str| -> Result<Vec<u8>, MigrateError> {
                row.try_get::<_, Vec<u8>>(i)
                    .map_err(|e| corrupt_column(row_id, name, &e))
            };
            Ok(SignerKeyRow {
                row_id,
                key_id: text(1, "key_id")?,
                algorithm: text(2, "algorithm")?,
                passphrase_alias: text(3, "passphrase_alias")?,
                public: bytes(4, "public")?,
                private_jwe: bytes(5, "private")?,
                gun: text(6, "gun")?,
                role: text(7, "role")?,
                keywrap_alg: text(8, "keywrap_alg")?,
                encryption_alg: text(9, "encryption_alg")?,
            })
        })
        .collect()
}

fn corrupt_column(row_id: i64, column: &str, e: &dyn std::fmt::Display) -> MigrateError {
    MigrateError::Database(format!(
        "row {row_id} of private_keys: column {column} cannot be read ({e}); is this notary-signer's schema?"
    ))
}

/// The URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // A DSN like user:pass@tcp(...): keep the user, drop the password.
        return match url.split_once('@') {
            Some((cred, host)) => {
                let user = cred.split(':').next().unwrap_or_default();
                format!("{user}:***@{host}")
            }
            None => url.to_owned(),
        };
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((cred, host)) if cred.contains(':') => {
            let user = cred.split(':').next().unwrap_or_default();
            format!("{user}:***@{host}")
        }
        _ => authority.to_owned(),
    };
    // Query parameters may carry a password too (password=...).
    let tail = tail
        .split('&')
        .map(|part| match part.split_once("password=") {
            Some((head, _)) => format!("{head}password=***"),
            None => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://signer:s3cret@db:5432/notarysigner?sslmode=disable"),
            "postgres://signer:***@db:5432/notarysigner?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://signer@db/notarysigner?password=s3cret&sslmode=disable"),
            "postgres://signer@db/notarysigner?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("signer:s3cret@tcp(db:3306)/notarysigner"),
            "signer:***@tcp(db:3306)/notarysigner"
        );
    }

    #[test]
    fn unknown_urls_say_what_to_give() {
        let e = read_rows("sqlite:///x.db").unwrap_err().to_string();
        assert!(e.contains("storage.db_url"), "{e}");
        let e = read_rows("u:p@tcp(h:3306)/db").unwrap_err().to_string();
        assert!(e.contains("MySQL") && !e.contains(":p@"), "{e}");
    }
}
