//! signerd's configuration: one TOML file, every field overridable by an environment variable
//! `SIGNERD_<SECTION>_<FIELD>`, and the common fields by command-line flags.
//!
//! Precedence, lowest first: built-in defaults, the file, the environment, the flags. Without a
//! config file, what is still missing (token, TLS files) comes from the embedded development
//! environment under `.signerd/` (see [`crate::devenv`]); with a file, it is an error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use signerd_token::{PinSource, Pkcs11Uri, TokenConfig};

/// The default gRPC address, the Go notary-signer's port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7899";

/// The config file as written: every field optional, so file, env and flags overlay.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`: the gRPC endpoint notary-server connects to.
    pub server: ServerSection,
    /// `[token]`: the PKCS#11 token holding the keys.
    pub token: TokenSection,
    /// `[log]`: log output.
    pub log: LogSection,
    /// `[admin]`: signerd's own admin API (Unix socket and admin client certificates).
    pub admin: AdminSection,
}

/// `[server]` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on, e.g. `127.0.0.1:7899` or `0.0.0.0:7899`.
    pub listen: Option<String>,
    /// PEM certificate chain signerd presents (needs a SAN for the name clients dial).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// Seconds to let in-flight requests finish on SIGTERM/SIGINT.
    pub shutdown_grace_secs: Option<u64>,
}

/// `[token]` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSection {
    /// PKCS#11 URI of the token, with `module-path` and usually `pin-source`.
    pub uri: Option<String>,
    /// File holding the user PIN (overrides the URI's `pin-source`).
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN (overrides the URI's `pin-source`).
    pub pin_env: Option<String>,
    /// Most token sessions to open (parallel signatures).
    pub sessions: Option<u64>,
    /// Modulus size of new RSA keys.
    pub rsa_bits: Option<u64>,
}

/// `[log]` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `human` (default) or `json`.
    pub format: Option<String>,
    /// A tracing filter, e.g. `info` or `signerd=debug,info`.
    pub level: Option<String>,
}

/// `[admin]` section: who may use the admin API, and where.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Unix socket path of the admin API (created mode 0660; a stale socket is replaced).
    pub socket: Option<PathBuf>,
    /// Peer uids allowed on the socket [default: the uid signerd runs as].
    pub allow_uids: Option<Vec<u32>>,
    /// Peer (primary) gids allowed on the socket [default: none].
    pub allow_gids: Option<Vec<u32>>,
    /// Client certificates allowed to use the admin API on the mTLS port, by subject
    /// (`CN=ops,O=example`) or SHA-256 fingerprint (`sha256:<64 hex>`); empty = not served there.
    pub admin_clients: Option<Vec<String>>,
    /// File holding the PIN a USER `Login` must give [default: the token's user PIN source].
    pub user_pin_file: Option<PathBuf>,
    /// File holding the PIN an SO `Login` must give [default: SO login refused].
    pub so_pin_file: Option<PathBuf>,
}

/// The kind of value a field holds, for reading it from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
    /// Whole numbers: `1000,1001` or a TOML array `[1000, 1001]`.
    NumberList,
    /// Strings: one value, or a TOML array `["CN=a,O=b", "sha256:..."]` (subjects hold commas).
    TextList,
}

/// Every field, as `(section, field, kind)`: the environment variable is
/// `SIGNERD_<SECTION>_<FIELD>` in upper case. A unit test keeps this list complete.
const FIELDS: &[(&str, &str, Kind)] = &[
    ("server", "listen", Kind::Text),
    ("server", "tls_cert", Kind::Text),
    ("server", "tls_key", Kind::Text),
    ("server", "client_ca", Kind::Text),
    ("server", "shutdown_grace_secs", Kind::Number),
    ("token", "uri", Kind::Text),
    ("token", "pin_file", Kind::Text),
    ("token", "pin_env", Kind::Text),
    ("token", "sessions", Kind::Number),
    ("token", "rsa_bits", Kind::Number),
    ("log", "format", Kind::Text),
    ("log", "level", Kind::Text),
    ("admin", "socket", Kind::Text),
    ("admin", "allow_uids", Kind::NumberList),
    ("admin", "allow_gids", Kind::NumberList),
    ("admin", "admin_clients", Kind::TextList),
    ("admin", "user_pin_file", Kind::Text),
    ("admin", "so_pin_file", Kind::Text),
];

/// The environment variable that overrides `section.field`.
pub fn env_var_name(section: &str, field: &str) -> String {
    format!("SIGNERD_{}_{}", section, field).to_uppercase()
}

/// Every environment variable signerd reads for its configuration.
pub fn env_var_names() -> impl Iterator<Item = String> {
    FIELDS.iter().map(|(s, f, _)| env_var_name(s, f))
}

/// Something wrong with the configuration, said so a user can fix it.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl FileConfig {
    /// Reads `path` (if any) and overlays the environment as `env` answers it.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<FileConfig, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!("cannot read config file {}: {e}", path.display()))
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    ConfigError(format!(
                        "config file {} is not valid TOML: {e}",
                        path.display()
                    ))
                })?
            }
            None => toml::Table::new(),
        };
        for (section, field, kind) in FIELDS {
            let var = env_var_name(section, field);
            let Some(raw) = env(&var) else { continue };
            let value = env_value(&var, *kind, raw)?;
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => {
                    t.insert(field.to_string(), value);
                }
                _ => {
                    return Err(ConfigError(format!(
                        "[{section}] in the config file must be a table"
                    )))
                }
            }
        }
        let origin = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the environment".into());
        FileConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError(format!("{origin}: {}", e.to_string().trim())))
    }
}

/// An environment variable's text as the TOML value of a field of `kind`.
fn env_value(var: &str, kind: Kind, raw: String) -> Result<toml::Value, ConfigError> {
    let number = |text: &str| {
        text.trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| ConfigError(format!("{var}={raw:?} is not a whole number")))
    };
    let toml_array = |text: &str| {
        format!("v = {text}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(toml::Value::is_array)
            .ok_or_else(|| ConfigError(format!("{var}={raw:?} is not a TOML array")))
    };
    match kind {
        Kind::Text => Ok(toml::Value::String(raw)),
        Kind::Number => number(&raw),
        Kind::NumberList if raw.trim_start().starts_with('[') => toml_array(&raw),
        Kind::NumberList => raw
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(number)
            .collect::<Result<Vec<_>, _>>()
            .map(toml::Value::Array),
        Kind::TextList if raw.trim_start().starts_with('[') => toml_array(&raw),
        Kind::TextList => Ok(toml::Value::Array(vec![toml::Value::String(raw)])),
    }
}

/// A client certificate allowed to use the admin API on the mTLS port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminClient {
    /// The leaf's subject, in RFC 4514 form as signerd prints it (e.g. `CN=ops,O=example`).
    Subject(String),
    /// SHA-256 of the leaf certificate's DER.
    Fingerprint([u8; 32]),
}

impl std::str::FromStr for AdminClient {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(hex_text) = s.strip_prefix("sha256:") {
            let clean: String = hex_text.chars().filter(|c| *c != ':').collect();
            let mut bytes = [0u8; 32];
            return hex::decode_to_slice(clean.to_ascii_lowercase(), &mut bytes)
                .map(|()| AdminClient::Fingerprint(bytes))
                .map_err(|_| format!("admin.admin_clients entry {s:?}: a fingerprint is sha256: and 64 hex digits (openssl x509 -noout -fingerprint -sha256)"));
        }
        if s.contains('=') {
            Ok(AdminClient::Subject(s.to_owned()))
        } else {
            Err(format!("admin.admin_clients entry {s:?} is neither a subject (CN=name,O=org) nor sha256:<fingerprint>"))
        }
    }
}

/// The admin API settings, resolved.
#[derive(Clone, Debug, Default)]
pub struct AdminSettings {
    /// The Unix socket; `None` = no socket (the dev default puts one in the dev folder).
    pub socket: Option<PathBuf>,
    /// Allowed peer uids; `None` = the uid signerd runs as.
    pub allow_uids: Option<Vec<u32>>,
    /// Allowed peer primary gids.
    pub allow_gids: Vec<u32>,
    /// Admin client certificates on the mTLS port; empty = the admin API is not served there.
    pub admin_clients: Vec<AdminClient>,
    /// Where a USER login's PIN is checked against; `None` = the token's user PIN source.
    pub user_pin: Option<PinSource>,
    /// Where an SO login's PIN is checked against; `None` = SO login refused.
    pub so_pin: Option<PinSource>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// TLS files for the gRPC endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Client CA bundle (PEM).
    pub client_ca: PathBuf,
}

/// The configuration signerd runs with, every value resolved and checked for form.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The gRPC listen address.
    pub listen: SocketAddr,
    /// TLS files; `None` means the embedded development certificates.
    pub tls: Option<TlsFiles>,
    /// The token; `None` means the embedded development SoftHSM token.
    pub token: Option<TokenConfig>,
    /// Token sessions to open.
    pub sessions: usize,
    /// RSA modulus size for new keys.
    pub rsa_bits: u32,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// The admin API.
    pub admin: AdminSettings,
}

impl FileConfig {
    /// Resolves the overlaid config into [`Settings`]. With `require_all` (a config file was
    /// given), a missing token or TLS file is an error; otherwise it is left to the dev default.
    pub fn resolve(&self, require_all: bool) -> Result<Settings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let listen_text = self.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text.parse().unwrap_or_else(|_| {
            errors.push(ConfigError(format!(
                "server.listen = {listen_text:?} is not an address; use IP:PORT, e.g. {DEFAULT_LISTEN}"
            )));
            DEFAULT_LISTEN.parse().expect("the default listen address parses")
        });

        let s = &self.server;
        let tls = match (&s.tls_cert, &s.tls_key, &s.client_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: ca.clone(),
            }),
            (None, None, None) if !require_all => None,
            _ => {
                let missing: Vec<_> = [
                    ("tls_cert", &s.tls_cert),
                    ("tls_key", &s.tls_key),
                    ("client_ca", &s.client_ca),
                ]
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(n, _)| {
                    format!(
                        "server.{n} (--{}, {})",
                        n.replace('_', "-"),
                        env_var_name("server", n)
                    )
                })
                .collect();
                errors.push(ConfigError(format!(
                    "mutual TLS needs a certificate, its key and a client CA; missing: {}",
                    missing.join(", ")
                )));
                None
            }
        };

        let sessions = self.token.sessions.unwrap_or(8);
        if !(1..=1024).contains(&sessions) {
            errors.push(ConfigError(format!(
                "token.sessions = {sessions}: use 1 to 1024"
            )));
        }
        let rsa_bits = self.token.rsa_bits.unwrap_or(3072);
        if ![2048, 3072, 4096].contains(&rsa_bits) {
            errors.push(ConfigError(format!(
                "token.rsa_bits = {rsa_bits}: use 2048, 3072 or 4096"
            )));
        }

        let pin_override = match (&self.token.pin_file, &self.token.pin_env) {
            (Some(_), Some(_)) => {
                errors.push(ConfigError(
                    "set token.pin_file or token.pin_env, not both".into(),
                ));
                None
            }
            (Some(file), None) => Some(PinSource::File(file.clone())),
            (None, Some(var)) => Some(PinSource::Env(var.clone())),
            (None, None) => None,
        };
        let token = match &self.token.uri {
            Some(text) => match text.parse::<Pkcs11Uri>() {
                Ok(uri) => {
                    if uri.module_path.is_none() {
                        errors.push(ConfigError(format!(
                            "token.uri {text:?} has no module-path; add ?module-path=/usr/lib/softhsm/libsofthsm2.so (or your HSM's module)"
                        )));
                    }
                    if uri.pin_source.is_none() && pin_override.is_none() {
                        errors.push(ConfigError(
                            "the token has no PIN source: add pin-source=file:/path to the URI, or set --pin-file / token.pin_file / token.pin_env".into(),
                        ));
                    }
                    let mut config = TokenConfig::new(uri);
                    config.pin = pin_override;
                    config.sessions = sessions as usize;
                    config.rsa_bits = rsa_bits as u32;
                    Some(config)
                }
                Err(e) => {
                    errors.push(ConfigError(format!("token.uri: {e}")));
                    None
                }
            },
            None if require_all => {
                errors.push(ConfigError(
                    "no token: set token.uri (--token, SIGNERD_TOKEN_URI), e.g. pkcs11:token=signerd?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/signerd/pin".into(),
                ));
                None
            }
            None => None,
        };

        let log_format = match self.log.format.as_deref().unwrap_or("human") {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                errors.push(ConfigError(format!(
                    "log.format = {other:?}: use human or json"
                )));
                LogFormat::Human
            }
        };
        // tracing-subscriber 0.3 slices each directive with offsets into its trimmed form, so
        // a blank before a non-ASCII character panicked here (found by fuzz/ config): trim
        // each directive first.
        let log_level = self.log.level.as_deref().map_or_else(
            || "info".to_owned(),
            |l| l.split(',').map(str::trim).collect::<Vec<_>>().join(","),
        );
        if let Err(e) = log_level.parse::<tracing_subscriber::EnvFilter>() {
            errors.push(ConfigError(format!("log.level = {log_level:?} is not a filter ({e}); e.g. info, debug, signerd=debug,info")));
        }

        let a = &self.admin;
        let mut admin_clients = Vec::new();
        for entry in a.admin_clients.iter().flatten() {
            match entry.parse::<AdminClient>() {
                Ok(c) => admin_clients.push(c),
                Err(e) => errors.push(ConfigError(e)),
            }
        }
        if a.socket.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            errors.push(ConfigError(
                "admin.socket is empty; give a path such as /run/signerd/admin.sock, or leave it out".into(),
            ));
        }
        let admin = AdminSettings {
            socket: a.socket.clone(),
            allow_uids: a.allow_uids.clone(),
            allow_gids: a.allow_gids.clone().unwrap_or_default(),
            admin_clients,
            user_pin: a.user_pin_file.clone().map(PinSource::File),
            so_pin: a.so_pin_file.clone().map(PinSource::File),
        };

        if errors.is_empty() {
            Ok(Settings {
                listen,
                tls,
                token,
                sessions: sessions as usize,
                rsa_bits: rsa_bits as u32,
                shutdown_grace: Duration::from_secs(self.server.shutdown_grace_secs.unwrap_or(10)),
                log_format,
                log_level,
                admin,
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn a_log_level_with_blanks_before_non_ascii_is_checked_not_a_panic() {
        let resolve = |level: &str| {
            FileConfig {
                log: LogSection {
                    level: Some(level.into()),
                    ..LogSection::default()
                },
                ..FileConfig::default()
            }
            .resolve(false)
        };
        // fuzz/artifacts/config/crash-67eef03a...: the input's first line as SIGNERD_LOG_LEVEL.
        let crash = "\r\u{3a6}[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[_[#[[[[[\0\0\0\0\0=";
        let errors = resolve(crash).unwrap_err();
        assert!(errors[0].0.starts_with("log.level = "), "{errors:?}");
        for (level, resolved) in [
            (" \u{3a6}", "\u{3a6}"),
            ("info, \u{3a6}=debug", "info,\u{3a6}=debug"),
            (" signerd=debug , info ", "signerd=debug,info"),
        ] {
            assert_eq!(resolve(level).unwrap().log_level, resolved);
        }
    }

    #[test]
    fn field_list_covers_every_field() {
        let full = FileConfig {
            server: ServerSection {
                listen: Some("a".into()),
                tls_cert: Some("a".into()),
                tls_key: Some("a".into()),
                client_ca: Some("a".into()),
                shutdown_grace_secs: Some(1),
            },
            token: TokenSection {
                uri: Some("a".into()),
                pin_file: Some("a".into()),
                pin_env: Some("a".into()),
                sessions: Some(1),
                rsa_bits: Some(1),
            },
            log: LogSection {
                format: Some("a".into()),
                level: Some("a".into()),
            },
            admin: AdminSection {
                socket: Some("a".into()),
                allow_uids: Some(vec![1]),
                allow_gids: Some(vec![1]),
                admin_clients: Some(vec!["a".into()]),
                user_pin_file: Some("a".into()),
                so_pin_file: Some("a".into()),
            },
        };
        let table = toml::Table::try_from(&full).unwrap();
        let mut seen = BTreeSet::new();
        for (section, fields) in table {
            for (field, _) in fields.as_table().unwrap() {
                seen.insert((section.clone(), field.clone()));
            }
        }
        let listed: BTreeSet<_> = FIELDS
            .iter()
            .map(|(s, f, _)| (s.to_string(), f.to_string()))
            .collect();
        assert_eq!(seen, listed, "FIELDS must list every config field");
    }

    #[test]
    fn env_overrides_file_and_numbers_are_checked() {
        let env: HashMap<&str, &str> = [
            ("SIGNERD_SERVER_LISTEN", "127.0.0.1:9999"),
            ("SIGNERD_TOKEN_SESSIONS", "3"),
        ]
        .into();
        let cfg = FileConfig::load(Some(&fixture("softhsm.toml")), |k| {
            env.get(k).map(|v| v.to_string())
        })
        .unwrap();
        assert_eq!(cfg.server.listen.as_deref(), Some("127.0.0.1:9999"));
        assert_eq!(cfg.token.sessions, Some(3));
        let err = FileConfig::load(None, |k| {
            (k == "SIGNERD_TOKEN_RSA_BITS").then(|| "big".into())
        })
        .unwrap_err();
        assert_eq!(
            err.0,
            "SIGNERD_TOKEN_RSA_BITS=\"big\" is not a whole number"
        );
    }

    #[test]
    fn admin_lists_come_from_the_environment() {
        let env: HashMap<&str, &str> = [
            ("SIGNERD_ADMIN_ALLOW_UIDS", "1000, 1001"),
            ("SIGNERD_ADMIN_ALLOW_GIDS", "[50]"),
            (
                "SIGNERD_ADMIN_ADMIN_CLIENTS",
                r#"["CN=ops,O=example", "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"]"#,
            ),
            ("SIGNERD_ADMIN_SOCKET", "/run/signerd/admin.sock"),
        ]
        .into();
        let cfg = FileConfig::load(None, |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(cfg.admin.allow_uids, Some(vec![1000, 1001]));
        assert_eq!(cfg.admin.allow_gids, Some(vec![50]));
        let admin = cfg.resolve(false).unwrap().admin;
        assert_eq!(
            admin.admin_clients,
            vec![
                AdminClient::Subject("CN=ops,O=example".into()),
                AdminClient::Fingerprint(
                    hex::decode("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
                        .unwrap()
                        .try_into()
                        .unwrap()
                ),
            ]
        );
        assert_eq!(admin.socket, Some(PathBuf::from("/run/signerd/admin.sock")));
        let one = FileConfig::load(None, |k| {
            (k == "SIGNERD_ADMIN_ADMIN_CLIENTS").then(|| "CN=ops,O=example".into())
        })
        .unwrap();
        assert_eq!(
            one.admin.admin_clients,
            Some(vec!["CN=ops,O=example".to_string()])
        );
        let err = FileConfig::load(None, |k| {
            (k == "SIGNERD_ADMIN_ALLOW_UIDS").then(|| "root".into())
        })
        .unwrap_err();
        assert_eq!(
            err.0,
            "SIGNERD_ADMIN_ALLOW_UIDS=\"root\" is not a whole number"
        );
    }

    #[test]
    fn bad_admin_clients_say_how_to_write_them() {
        let cfg = FileConfig::load(Some(&fixture("bad-admin.toml")), no_env).unwrap();
        let errors: Vec<String> = cfg
            .resolve(false)
            .unwrap_err()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(
            errors,
            [
                "admin.admin_clients entry \"ops\" is neither a subject (CN=name,O=org) nor sha256:<fingerprint>",
                "admin.admin_clients entry \"sha256:abcd\": a fingerprint is sha256: and 64 hex digits (openssl x509 -noout -fingerprint -sha256)",
            ]
        );
    }

    #[test]
    fn example_softhsm_config_resolves() {
        let cfg = FileConfig::load(Some(&fixture("softhsm.toml")), no_env).unwrap();
        let settings = cfg.resolve(true).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:7899");
        assert!(settings.tls.is_some() && settings.token.is_some());
    }

    #[test]
    fn shipped_example_configs_resolve() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        for name in ["softhsm.toml", "yubikey.toml", "network-hsm.toml"] {
            let cfg = FileConfig::load(Some(&dir.join(name)), no_env).unwrap();
            let settings = cfg
                .resolve(true)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(settings.token.unwrap().uri.module_path.is_some(), "{name}");
            assert!(
                settings.admin.socket.is_some(),
                "{name} shows the admin socket"
            );
        }
    }

    #[test]
    fn unknown_field_names_the_field() {
        let err = FileConfig::load(Some(&fixture("unknown-field.toml")), no_env).unwrap_err();
        assert!(err.0.contains("unknown field `listn`"), "{}", err.0);
    }

    #[test]
    fn missing_pieces_say_what_to_set() {
        let cfg = FileConfig::load(Some(&fixture("incomplete.toml")), no_env).unwrap();
        let errors: Vec<String> = cfg
            .resolve(true)
            .unwrap_err()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(
            errors,
            [
                "server.listen = \"localhost\" is not an address; use IP:PORT, e.g. 127.0.0.1:7899",
                "mutual TLS needs a certificate, its key and a client CA; missing: server.tls_key (--tls-key, SIGNERD_SERVER_TLS_KEY), server.client_ca (--client-ca, SIGNERD_SERVER_CLIENT_CA)",
                "token.rsa_bits = 1024: use 2048, 3072 or 4096",
                "token.uri \"pkcs11:token=signerd\" has no module-path; add ?module-path=/usr/lib/softhsm/libsofthsm2.so (or your HSM's module)",
                "the token has no PIN source: add pin-source=file:/path to the URI, or set --pin-file / token.pin_file / token.pin_env",
            ]
        );
    }

    #[test]
    fn without_a_file_missing_parts_are_left_to_the_dev_default() {
        let settings = FileConfig::default().resolve(false).unwrap();
        assert!(settings.tls.is_none() && settings.token.is_none());
    }
}
