//! notary-signer's MySQL/MariaDB store. Its `storage.db_url` is a go-sql-driver DSN,
//! `[user[:password]@][tcp(host:port)|unix(/path)]/dbname[?param=value&...]`, read the way that
//! driver reads it; of its parameters only `tls` matters for reading the table (`true`: verified,
//! `skip-verify`/`preferred`: encrypted without a certificate check, `false`: plain). The others
//! (`parseTime`, `charset`, session variables...) shape Go's session and are accepted and left.

use std::path::Path;
use std::time::Duration;

use mysql::prelude::Queryable as _;
use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret as _, SecretString};

use super::{corrupt_column, redact_url, SignerKeyRow, QUERY};
use crate::migrate::MigrateError;

/// How long connecting may take when the DSN sets no `timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the server listens.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Address {
    /// `tcp(host:port)`.
    Tcp(String, u16),
    /// `unix(/path/to/mysqld.sock)`.
    Unix(String),
}

/// `tls=` in go-sql-driver's terms.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tls {
    /// `false` or absent.
    Off,
    /// `true`: the chain and the host name are checked.
    Verified,
    /// `skip-verify`, `preferred`: encrypted, the certificate not checked. (Go's `preferred`
    /// falls back to plain on a server without TLS; here TLS is then an error.)
    Unverified,
}

/// A parsed go-sql-driver DSN.
pub(super) struct GoDsn {
    user: String,
    password: Option<SecretString>,
    address: Address,
    database: String,
    tls: Tls,
    timeout: Option<Duration>,
}

impl GoDsn {
    /// Parses `dsn` as go-sql-driver's `ParseDSN` does.
    pub(super) fn parse(dsn: &str) -> Result<GoDsn, String> {
        // The database follows the last '/'; the credentials end at the last '@' before it.
        let slash = dsn
            .rfind('/')
            .ok_or("no '/' before the database name (user:password@tcp(host:3306)/notarysigner)")?;
        let (head, tail) = (&dsn[..slash], &dsn[slash + 1..]);
        let (credentials, endpoint) = match head.rfind('@') {
            Some(at) => (Some(&head[..at]), &head[at + 1..]),
            None => (None, head),
        };
        let (user, password) = match credentials {
            Some(c) => match c.split_once(':') {
                Some((user, password)) => (user, Some(SecretString::from(password))),
                None => (c, None),
            },
            None => ("", None),
        };
        let (net, addr) = match endpoint.split_once('(') {
            Some((net, rest)) => {
                let addr = rest.strip_suffix(')').ok_or(
                    "the address must be closed by ')' right before the '/' (tcp(host:3306)/db)",
                )?;
                (net, addr)
            }
            None => (endpoint, ""),
        };
        let address = match net {
            "" | "tcp" => {
                let (host, port) =
                    host_port(addr).ok_or_else(|| format!("tcp({addr}): give host:port"))?;
                Address::Tcp(host, port)
            }
            "unix" => Address::Unix(if addr.is_empty() {
                "/tmp/mysql.sock".into()
            } else {
                addr.into()
            }),
            other => return Err(format!("network '{other}' is not tcp or unix")),
        };
        let (database, query) = tail.split_once('?').unwrap_or((tail, ""));
        let mut parsed = GoDsn {
            user: user.into(),
            password,
            address,
            database: database.into(),
            tls: Tls::Off,
            timeout: None,
        };
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let value = percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| format!("parameter {key} is not UTF-8"))?;
            match key {
                "tls" => {
                    parsed.tls = match value.to_ascii_lowercase().as_str() {
                        "false" | "0" => Tls::Off,
                        "true" | "1" => Tls::Verified,
                        "skip-verify" | "preferred" => Tls::Unverified,
                        _ => return Err(format!(
                            "tls={value} names a TLS configuration registered in Go code, which a DSN cannot carry; use tls=true (with --db-ca-file for a private CA), tls=skip-verify or tls=false"
                        )),
                    }
                }
                "timeout" => {
                    parsed.timeout = Some(go_duration(&value).ok_or_else(|| {
                        format!("timeout={value} is not a duration such as 30s or 500ms")
                    })?)
                }
                _ => {}
            }
        }
        Ok(parsed)
    }

    fn opts(&self, ca_file: Option<&Path>) -> mysql::OptsBuilder {
        let opts = mysql::OptsBuilder::new()
            .user((!self.user.is_empty()).then(|| self.user.clone()))
            .pass(self.password.as_ref().map(|p| p.expose_secret().to_owned()))
            .db_name((!self.database.is_empty()).then(|| self.database.clone()))
            // The address as given: the crate would otherwise move a loopback TCP connection to
            // the server's socket file, which go-sql-driver never does.
            .prefer_socket(false)
            .tcp_connect_timeout(Some(self.timeout.unwrap_or(CONNECT_TIMEOUT)));
        let opts = match &self.address {
            Address::Tcp(host, port) => opts.ip_or_hostname(Some(host.clone())).tcp_port(*port),
            Address::Unix(path) => opts.socket(Some(path.clone())),
        };
        let ssl = match self.tls {
            Tls::Off => None,
            Tls::Verified => Some(
                mysql::SslOpts::default()
                    .with_root_cert_path(ca_file.map(|p| std::borrow::Cow::Owned(p.to_path_buf()))),
            ),
            Tls::Unverified => {
                Some(mysql::SslOpts::default().with_danger_accept_invalid_certs(true))
            }
        };
        opts.ssl_opts(ssl)
    }
}

/// `host:port`, `host` (port 3306), `[v6]:port`; empty means go-sql-driver's 127.0.0.1:3306.
fn host_port(addr: &str) -> Option<(String, u16)> {
    if addr.is_empty() {
        return Some(("127.0.0.1".into(), 3306));
    }
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, port) = rest.split_once(']')?;
        let port = match port.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if port.is_empty() => 3306,
            None => return None,
        };
        return Some((host.into(), port));
    }
    match addr.rsplit_once(':') {
        Some((host, port)) => Some((host.into(), port.parse().ok()?)),
        None => Some((addr.into(), 3306)),
    }
}

/// A Go duration of one unit (`30s`, `500ms`, `2m`), as DSNs give timeouts.
fn go_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = s[..split].parse().ok()?;
    match &s[split..] {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

/// The live rows of `private_keys` in the database the DSN names.
pub(super) fn read_rows(
    dsn: &str,
    ca_file: Option<&Path>,
) -> Result<Vec<SignerKeyRow>, MigrateError> {
    let shown = redact_url(dsn);
    let parsed = GoDsn::parse(dsn)
        .map_err(|e| MigrateError::Database(format!("cannot read the MySQL DSN {shown}: {e}")))?;
    let mut conn = mysql::Conn::new(parsed.opts(ca_file)).map_err(|e| {
        MigrateError::Database(format!(
            "cannot connect to {shown}: {e}; check the DSN, that the server runs, its TLS settings (tls=), and that the user may read private_keys"
        ))
    })?;
    let rows: Vec<mysql::Row> = conn.query(QUERY).map_err(|e| {
        MigrateError::Database(format!(
            "cannot read table private_keys from {shown}: {e}; is this notary-signer's database?"
        ))
    })?;
    rows.into_iter()
        .map(|row| {
            let row_id: i64 = take(&row, 0).map_err(|e| corrupt_column(-1, "id", &e))?;
            SignerKeyRow::from_query(row_id, |i| take(&row, i), |i| take(&row, i))
        })
        .collect()
}

fn take<T: mysql::prelude::FromValue>(row: &mysql::Row, i: usize) -> Result<T, String> {
    match row.get_opt::<T, usize>(i) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("missing".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_parse_as_go_sql_driver_reads_them() {
        let d = GoDsn::parse("signer:p@ss:w@rd@tcp(db.internal:3307)/notarysigner?parseTime=True&tls=true&timeout=5s").unwrap();
        assert_eq!(d.user, "signer");
        assert_eq!(d.password.as_ref().unwrap().expose_secret(), "p@ss:w@rd");
        assert_eq!(d.address, Address::Tcp("db.internal".into(), 3307));
        assert_eq!(d.database, "notarysigner");
        assert_eq!(d.tls, Tls::Verified);
        assert_eq!(d.timeout, Some(Duration::from_secs(5)));

        let d = GoDsn::parse("/notarysigner").unwrap();
        assert_eq!((d.user.as_str(), d.password.is_none()), ("", true));
        assert_eq!(d.address, Address::Tcp("127.0.0.1".into(), 3306));
        assert_eq!(d.tls, Tls::Off);

        let d = GoDsn::parse("root@unix(/run/mysqld/mysqld.sock)/notarysigner?tls=skip-verify")
            .unwrap();
        assert_eq!(d.address, Address::Unix("/run/mysqld/mysqld.sock".into()));
        assert_eq!(d.tls, Tls::Unverified);

        let d = GoDsn::parse("u@tcp([::1]:3310)/db?tls=preferred").unwrap();
        assert_eq!(d.address, Address::Tcp("::1".into(), 3310));
        assert_eq!(d.tls, Tls::Unverified);
        assert_eq!(
            GoDsn::parse("u@tcp(db)/x").unwrap().address,
            Address::Tcp("db".into(), 3306)
        );
    }

    #[test]
    fn dsns_go_cannot_read_are_refused_with_the_fix() {
        let no_slash = GoDsn::parse("u:p@tcp(h:3306)").err().unwrap();
        assert!(no_slash.contains("'/'"), "{no_slash}");
        let open = GoDsn::parse("u:p@tcp(h:3306/db").err().unwrap();
        assert!(open.contains("')'"), "{open}");
        let custom = GoDsn::parse("u:p@tcp(h:3306)/db?tls=custom").err().unwrap();
        assert!(custom.contains("--db-ca-file"), "{custom}");
        let net = GoDsn::parse("u:p@udp(h:3306)/db").err().unwrap();
        assert!(net.contains("udp"), "{net}");
    }
}
