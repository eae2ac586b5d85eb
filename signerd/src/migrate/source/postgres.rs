//! notary-signer's PostgreSQL store. Its URL is read as notary-signer's driver (lib/pq) reads
//! it, TLS included: `sslmode` absent or `require` encrypts without checking the server's
//! certificate (unless `sslrootcert` is given, then as `verify-ca`), `verify-ca` checks the
//! chain, `verify-full` the chain and the host name, `disable` is plain; `sslcert`/`sslkey` give
//! a client certificate. The rest of the URL goes to the `postgres` crate unchanged.

use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

use super::tls::{client_config, ServerCheck};
use super::{corrupt_column, redact_url, SignerKeyRow, QUERY};
use crate::migrate::MigrateError;

/// What the URL asks of TLS, in lib/pq's terms.
#[derive(Debug, PartialEq, Eq)]
struct SslParams {
    mode: String,
    root_cert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// lib/pq's own parameters the `postgres` crate does not know and that change nothing here.
const LIBPQ_ONLY: &[&str] = &[
    "fallback_application_name",
    "binary_parameters",
    "disable_prepared_binary_result",
    "sslsni",
];

/// Splits the TLS parameters (and lib/pq-only ones) off `url`: what is left is for the
/// `postgres` crate.
fn split_url(url: &str) -> Result<(String, SslParams), String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut ssl = SslParams {
        mode: String::new(),
        root_cert: None,
        cert: None,
        key: None,
    };
    let mut kept = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let decoded = || {
            percent_decode_str(value)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| format!("parameter {key} is not UTF-8"))
        };
        match key {
            "sslmode" => ssl.mode = decoded()?,
            "sslrootcert" => ssl.root_cert = Some(decoded()?.into()),
            "sslcert" => ssl.cert = Some(decoded()?.into()),
            "sslkey" => ssl.key = Some(decoded()?.into()),
            "sslinline" => {
                return Err(
                    "sslinline (certificates inside the URL) is not supported; put them in files and give sslrootcert/sslcert/sslkey".into(),
                )
            }
            k if LIBPQ_ONLY.contains(&k) => {}
            _ => kept.push(part),
        }
    }
    Ok((
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        },
        ssl,
    ))
}

/// The server check `ssl` asks for (lib/pq's rules), `None` for a plain connection.
fn server_check(ssl: &SslParams, ca_file: Option<&Path>) -> Result<Option<ServerCheck>, String> {
    let roots = ssl.root_cert.as_deref().or(ca_file);
    let need_roots = |mode: &str| {
        roots.map(Path::to_owned).ok_or_else(|| {
            format!("sslmode={mode} needs the CA that issued the server's certificate: add sslrootcert=<file> to the URL or give --db-ca-file")
        })
    };
    Ok(Some(match ssl.mode.as_str() {
        "disable" => return Ok(None),
        // lib/pq: "require" (its default) checks the chain when a root certificate is given.
        "" | "require" => match &ssl.root_cert {
            Some(root) => ServerCheck::Chain(root.clone()),
            None => ServerCheck::None,
        },
        "verify-ca" => ServerCheck::Chain(need_roots("verify-ca")?),
        "verify-full" => ServerCheck::ChainAndName(need_roots("verify-full")?),
        other => {
            return Err(format!(
                "sslmode={other} is not one notary-signer's driver takes; use disable, require, verify-ca or verify-full"
            ))
        }
    }))
}

/// The live rows of `private_keys` in the database at `db_url`.
pub(super) fn read_rows(
    db_url: &str,
    ca_file: Option<&Path>,
) -> Result<Vec<SignerKeyRow>, MigrateError> {
    let shown = redact_url(db_url);
    let url_error = |e: &dyn std::fmt::Display| {
        MigrateError::Database(format!("cannot read the PostgreSQL URL {shown}: {e}"))
    };
    let (rest, ssl) = split_url(db_url).map_err(|e| url_error(&e))?;
    let check = server_check(&ssl, ca_file).map_err(|e| url_error(&e))?;
    let mut config: postgres::Config = rest.parse().map_err(|e| url_error(&e))?;
    let connect_error = |e: &dyn std::fmt::Display| {
        MigrateError::Database(format!("cannot connect to {shown}: {e}; check the URL, that the server runs, its TLS settings, and that the user may read private_keys"))
    };
    let mut client = match check {
        None => {
            config.ssl_mode(postgres::config::SslMode::Disable);
            config.connect(postgres::NoTls)
        }
        Some(check) => {
            config.ssl_mode(postgres::config::SslMode::Require);
            let tls = client_config(&check, ssl.cert.as_deref(), ssl.key.as_deref())
                .map_err(|e| url_error(&e))?;
            config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        }
    }
    .map_err(|e| connect_error(&e))?;
    let rows = client.query(QUERY, &[]).map_err(|e| {
        MigrateError::Database(format!(
            "cannot read table private_keys from {shown}: {e}; is this notary-signer's database?"
        ))
    })?;
    rows.iter()
        .map(|row| {
            let row_id: i32 = row.try_get(0).map_err(|e| corrupt_column(-1, "id", &e))?;
            let row_id = i64::from(row_id);
            SignerKeyRow::from_query(
                row_id,
                |i| row.try_get::<_, String>(i),
                |i| row.try_get::<_, Vec<u8>>(i),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, ca: Option<&str>) -> Result<Option<ServerCheck>, String> {
        let (_, ssl) = split_url(url)?;
        server_check(&ssl, ca.map(Path::new))
    }

    #[test]
    fn tls_parameters_leave_the_url_and_the_rest_stays() {
        let (rest, ssl) = split_url(
            "postgres://u@h:5432/db?sslmode=verify-full&connect_timeout=5&sslrootcert=%2Fetc%2Fca.pem&fallback_application_name=x",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u@h:5432/db?connect_timeout=5");
        assert_eq!(ssl.mode, "verify-full");
        assert_eq!(ssl.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert!(rest.parse::<postgres::Config>().is_ok());
    }

    #[test]
    fn sslmode_follows_notary_signers_driver() {
        assert_eq!(check("postgres://u@h/db?sslmode=disable", None), Ok(None));
        // Absent means "require": encrypted, the certificate unchecked.
        assert_eq!(
            check("postgres://u@h/db", None),
            Ok(Some(ServerCheck::None))
        );
        assert_eq!(
            check("postgres://u@h/db?sslmode=require&sslrootcert=ca.pem", None),
            Ok(Some(ServerCheck::Chain("ca.pem".into())))
        );
        assert_eq!(
            check("postgres://u@h/db?sslmode=verify-full", Some("flag.pem")),
            Ok(Some(ServerCheck::ChainAndName("flag.pem".into())))
        );
        let e = check("postgres://u@h/db?sslmode=verify-ca", None).unwrap_err();
        assert!(
            e.contains("sslrootcert") && e.contains("--db-ca-file"),
            "{e}"
        );
        let e = check("postgres://u@h/db?sslmode=allow", None).unwrap_err();
        assert!(e.contains("verify-full"), "{e}");
    }
}
