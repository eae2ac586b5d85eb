//! Reading the Go notary-signer's key database: the `private_keys` table that its SQL stores
//! (MySQL/MariaDB, PostgreSQL) keep, given as the same `storage.backend` and `storage.db_url`
//! notary-signer is configured with. Read only: nothing here writes to the database.

mod mysql;
mod postgres;
mod tls;

use std::path::PathBuf;

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

/// notary-signer's SQL backends (`storage.backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `postgres`: a libpq URL, `postgres://user@host:5432/db?sslmode=...`.
    Postgres,
    /// `mysql`: a go-sql-driver DSN, `user:pass@tcp(host:3306)/db?parseTime=True&tls=...`.
    Mysql,
}

impl std::str::FromStr for Backend {
    type Err = MigrateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "postgres" => Ok(Backend::Postgres),
            "mysql" => Ok(Backend::Mysql),
            "sqlite3" | "rethinkdb" | "memory" => Err(MigrateError::Database(format!(
                "storage.backend '{s}' is not one signerd migrates from (mysql, postgres); copy the private_keys table into a MySQL or PostgreSQL database first{}",
                if s == "memory" { " (a memory backend keeps nothing to migrate)" } else { "" }
            ))),
            _ => Err(MigrateError::Database(format!(
                "unknown storage.backend '{s}'; give notary-signer's storage.backend: mysql or postgres"
            ))),
        }
    }
}

/// Where notary-signer keeps its keys: its `storage` section, plus a CA file for a database
/// whose certificate a private CA issued.
pub struct KeyDatabase {
    /// `storage.backend`; `None` tells it from the URL's shape.
    pub backend: Option<Backend>,
    /// `storage.db_url`, exactly as notary-signer has it.
    pub db_url: String,
    /// CA certificates (PEM) the database's TLS certificate must chain to, where the URL asks
    /// for a verified connection and names none itself (MySQL `tls=true`; PostgreSQL
    /// `sslmode=verify-ca|verify-full` without `sslrootcert`).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for KeyDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyDatabase")
            .field("backend", &self.backend)
            .field("db_url", &redact_url(&self.db_url))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl KeyDatabase {
    /// The backend: as given, else `postgres` for a `postgres://` URL and `mysql` for a
    /// go-sql-driver DSN.
    pub fn backend(&self) -> Result<Backend, MigrateError> {
        if let Some(backend) = self.backend {
            return Ok(backend);
        }
        match self.db_url.split_once("://").map(|(scheme, _)| scheme) {
            Some("postgres" | "postgresql") => Ok(Backend::Postgres),
            None if mysql::GoDsn::parse(&self.db_url).is_ok() => Ok(Backend::Mysql),
            _ => Err(MigrateError::Database(format!(
                "cannot tell the database kind from the URL (redacted: {}); give notary-signer's storage.db_url (and --backend as its storage.backend), e.g. postgres://signer@127.0.0.1:5432/notarysigner?sslmode=disable or signer:PASSWORD@tcp(127.0.0.1:3306)/notarysigner?parseTime=True",
                redact_url(&self.db_url)
            ))),
        }
    }
}

/// The live rows of `private_keys`, in row order.
pub fn read_rows(db: &KeyDatabase) -> Result<Vec<SignerKeyRow>, MigrateError> {
    let ca_file = db.ca_file.as_deref();
    match db.backend()? {
        Backend::Postgres => postgres::read_rows(&db.db_url, ca_file),
        Backend::Mysql => mysql::read_rows(&db.db_url, ca_file),
    }
}

/// The columns both stores have, in [`SignerKeyRow`]'s order.
const QUERY: &str = "SELECT id, key_id, algorithm, passphrase_alias, public, private, gun, role, \
                     keywrap_alg, encryption_alg FROM private_keys WHERE deleted_at IS NULL ORDER BY id";

impl SignerKeyRow {
    /// The row of [`QUERY`] whose `id` is `row_id`, its other columns read by the driver's
    /// `text` and `bytes` (by column number; an error says why the column cannot be read).
    fn from_query<E: std::fmt::Display>(
        row_id: i64,
        text: impl Fn(usize) -> Result<String, E>,
        bytes: impl Fn(usize) -> Result<Vec<u8>, E>,
    ) -> Result<SignerKeyRow, MigrateError> {
        let text = |i: usize, name: &str| text(i).map_err(|e| corrupt_column(row_id, name, &e));
        let bytes = |i: usize, name: &str| bytes(i).map_err(|e| corrupt_column(row_id, name, &e));
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
    }
}

fn corrupt_column(row_id: i64, column: &str, e: &dyn std::fmt::Display) -> MigrateError {
    MigrateError::Database(format!(
        "row {row_id} of private_keys: column {column} cannot be read ({e}); is this notary-signer's schema?"
    ))
}

/// The URL or DSN with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // A go-sql-driver DSN: the credentials end at the last '@' before the database's '/'.
        let cut = url.rfind('/').unwrap_or(url.len());
        return match url[..cut].rfind('@') {
            Some(at) => match url[..at].split_once(':') {
                Some((user, _)) => format!("{user}:***{}", redact_query(&url[at..])),
                None => redact_query(url),
            },
            None => redact_query(url),
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
    format!("{scheme}://{authority}{}", redact_query(tail))
}

/// Query parameters may carry a password too (`password=...`).
fn redact_query(tail: &str) -> String {
    tail.split('&')
        .map(|part| match part.split_once("password=") {
            Some((head, _)) => format!("{head}password=***"),
            None => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(url: &str) -> KeyDatabase {
        KeyDatabase {
            backend: None,
            db_url: url.into(),
            ca_file: None,
        }
    }

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
        // go-sql-driver splits at the last '@': a password may hold '@' and ':'.
        assert_eq!(
            redact_url("signer:s3:cr@t@tcp(db:3306)/notarysigner?parseTime=True"),
            "signer:***@tcp(db:3306)/notarysigner?parseTime=True"
        );
        let shown = format!(
            "{:?}",
            KeyDatabase {
                backend: Some(Backend::Mysql),
                db_url: "signer:s3cret@tcp(db:3306)/notarysigner".into(),
                ca_file: None,
            }
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn the_backend_comes_from_the_url_or_the_flag() {
        assert_eq!(
            db("postgres://u@h/db").backend().unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            db("u:p@tcp(h:3306)/db?parseTime=True").backend().unwrap(),
            Backend::Mysql
        );
        assert_eq!(db("/notarysigner").backend().unwrap(), Backend::Mysql);
        let e = db("sqlite:///x.db").backend().unwrap_err().to_string();
        assert!(e.contains("storage.db_url"), "{e}");
        let e = "sqlite3".parse::<Backend>().unwrap_err().to_string();
        assert!(e.contains("mysql, postgres"), "{e}");
        let e = "rethink".parse::<Backend>().unwrap_err().to_string();
        assert!(e.contains("unknown storage.backend"), "{e}");
    }

    #[test]
    fn connection_failures_name_the_database_without_its_password() {
        // Nothing listens on port 1: both drivers fail to connect, and say where.
        let e = read_rows(&db("u:s3cret@tcp(127.0.0.1:1)/notarysigner?tls=false"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot connect")
                && e.contains("u:***@tcp(127.0.0.1:1)")
                && !e.contains("s3cret"),
            "{e}"
        );
        let e = read_rows(&db(
            "postgres://u:s3cret@127.0.0.1:1/notarysigner?sslmode=disable",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot connect") && !e.contains("s3cret"), "{e}");
    }
}
