//! The config file as written: every field optional, so the file, the environment and the
//! flags overlay one another before [`super::settings`] resolves and checks them.
//!
//! A section another module owns (policy rules, the audit sink) lives in that module:
//! - its type there (`#[serde(default, deny_unknown_fields)]`, every field optional), e.g.
//!   `crate::audit::AuditSection` for `[audit]`, or `Vec<crate::admin::PolicyRule>` for
//!   `[[policy]]`;
//! - one field of [`FileConfig`] here (`pub audit: AuditSection`), and one line in
//!   [`FileConfig::overlay`] if flags can set it;
//! - if the environment may set its fields, its `ENV` list ([`EnvSection`]) in [`SECTIONS`];
//! - its checks in its own `resolve(&self, errors: &mut Vec<ConfigError>)`, called from
//!   [`FileConfig::resolve`], giving one field of [`super::Settings`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::env::{env_var_name, overlay_env, EnvSection, FieldKind};
use super::errors::ConfigError;

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
    /// `[audit]`: the tamper-evident audit trail.
    pub audit: super::audit::AuditSection,
    /// `[metrics]`: the Prometheus metrics listener (off unless set).
    pub metrics: super::metrics::MetricsSection,
    /// `[[policy]]`: who may do what with which key, on both ports (docs/policy.md). Not an
    /// env-overridable field: a rule list is only written in the file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<super::policy::PolicyRule>,
}

/// The sections whose fields the environment can set, in the order they are read.
pub const SECTIONS: &[EnvSection] = &[
    ServerSection::ENV,
    TokenSection::ENV,
    LogSection::ENV,
    AdminSection::ENV,
    super::audit::AuditSection::ENV,
    super::metrics::MetricsSection::ENV,
];

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
    /// Largest request message on the Notary port, in bytes (Go gRPC's default).
    pub max_message_bytes: Option<u64>,
    /// Concurrent calls one HTTP/2 connection may have open.
    pub max_concurrent_streams: Option<u64>,
    /// Seconds one call may take before it is cancelled.
    pub request_timeout_secs: Option<u64>,
    /// Open client connections, total; more are closed at once.
    pub max_connections: Option<u64>,
    /// Open client connections from one peer address; more are closed at once.
    pub max_connections_per_peer: Option<u64>,
    /// Seconds a connection may stay silent (not even answering keepalive pings) before it is closed.
    pub idle_timeout_secs: Option<u64>,
    /// Threads of the async runtime (TLS, HTTP/2, the edge) [default: the CPUs signerd may run on].
    pub runtime_threads: Option<u64>,
}

impl ServerSection {
    /// The fields the environment can set.
    pub const ENV: EnvSection = EnvSection {
        name: "server",
        fields: &[
            ("listen", FieldKind::Text),
            ("tls_cert", FieldKind::Text),
            ("tls_key", FieldKind::Text),
            ("client_ca", FieldKind::Text),
            ("shutdown_grace_secs", FieldKind::Number),
            ("max_message_bytes", FieldKind::Number),
            ("max_concurrent_streams", FieldKind::Number),
            ("request_timeout_secs", FieldKind::Number),
            ("max_connections", FieldKind::Number),
            ("max_connections_per_peer", FieldKind::Number),
            ("idle_timeout_secs", FieldKind::Number),
            ("runtime_threads", FieldKind::Number),
        ],
    };
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
    /// How long a request waits for a token that is down before it answers UNAVAILABLE, in
    /// milliseconds.
    pub unavailable_after_ms: Option<u64>,
    /// The most an idle token worker polls the queue before it sleeps, in microseconds; 0:
    /// never.
    pub idle_poll_us: Option<u64>,
}

impl TokenSection {
    /// The fields the environment can set.
    pub const ENV: EnvSection = EnvSection {
        name: "token",
        fields: &[
            ("uri", FieldKind::Text),
            ("pin_file", FieldKind::Text),
            ("pin_env", FieldKind::Text),
            ("sessions", FieldKind::Number),
            ("rsa_bits", FieldKind::Number),
            ("unavailable_after_ms", FieldKind::Number),
            ("idle_poll_us", FieldKind::Number),
        ],
    };
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

impl LogSection {
    /// The fields the environment can set.
    pub const ENV: EnvSection = EnvSection {
        name: "log",
        fields: &[("format", FieldKind::Text), ("level", FieldKind::Text)],
    };
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
    /// File holding the PIN a USER `Login` must give, signerd's own, not the token's [default:
    /// USER login refused; on the dev token, its PIN file].
    pub user_pin_file: Option<PathBuf>,
    /// File holding the PIN an SO `Login` must give [default: SO login refused].
    pub so_pin_file: Option<PathBuf>,
    /// Largest request message of the admin API (imported keys, certificates, data the shim
    /// signs), in bytes.
    pub max_message_bytes: Option<u64>,
}

impl AdminSection {
    /// The fields the environment can set.
    pub const ENV: EnvSection = EnvSection {
        name: "admin",
        fields: &[
            ("socket", FieldKind::Text),
            ("allow_uids", FieldKind::NumberList),
            ("allow_gids", FieldKind::NumberList),
            ("admin_clients", FieldKind::TextList),
            ("user_pin_file", FieldKind::Text),
            ("so_pin_file", FieldKind::Text),
            ("max_message_bytes", FieldKind::Number),
        ],
    };
}

/// Every environment variable signerd reads for its configuration.
pub fn env_var_names() -> impl Iterator<Item = String> {
    SECTIONS
        .iter()
        .flat_map(|s| s.fields.iter().map(|(f, _)| env_var_name(s.name, f)))
}

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
        overlay_env(&mut table, SECTIONS, env)?;
        let origin = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the environment".into());
        FileConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError(format!("{origin}: {}", e.to_string().trim())))
    }

    /// Lays `top` (the command-line flags) over this config: every field `top` sets wins.
    /// The user PIN has one source, so a PIN file or variable in `top` replaces both below.
    pub fn overlay(&mut self, top: FileConfig) {
        fn set<T>(field: &mut Option<T>, top: Option<T>) {
            if top.is_some() {
                *field = top;
            }
        }
        let (s, t) = (&mut self.server, top.server);
        set(&mut s.listen, t.listen);
        set(&mut s.tls_cert, t.tls_cert);
        set(&mut s.tls_key, t.tls_key);
        set(&mut s.client_ca, t.client_ca);
        set(&mut s.shutdown_grace_secs, t.shutdown_grace_secs);
        set(&mut s.max_message_bytes, t.max_message_bytes);
        set(&mut s.max_concurrent_streams, t.max_concurrent_streams);
        set(&mut s.request_timeout_secs, t.request_timeout_secs);
        set(&mut s.max_connections, t.max_connections);
        set(&mut s.max_connections_per_peer, t.max_connections_per_peer);
        set(&mut s.idle_timeout_secs, t.idle_timeout_secs);
        set(&mut s.runtime_threads, t.runtime_threads);
        let (k, t) = (&mut self.token, top.token);
        if t.pin_file.is_some() || t.pin_env.is_some() {
            k.pin_file = t.pin_file;
            k.pin_env = t.pin_env;
        }
        set(&mut k.uri, t.uri);
        set(&mut k.sessions, t.sessions);
        set(&mut k.rsa_bits, t.rsa_bits);
        set(&mut k.unavailable_after_ms, t.unavailable_after_ms);
        set(&mut k.idle_poll_us, t.idle_poll_us);
        let (l, t) = (&mut self.log, top.log);
        set(&mut l.format, t.format);
        set(&mut l.level, t.level);
        let (a, t) = (&mut self.admin, top.admin);
        set(&mut a.socket, t.socket);
        set(&mut a.allow_uids, t.allow_uids);
        set(&mut a.allow_gids, t.allow_gids);
        set(&mut a.admin_clients, t.admin_clients);
        set(&mut a.user_pin_file, t.user_pin_file);
        set(&mut a.so_pin_file, t.so_pin_file);
        let (u, t) = (&mut self.audit, top.audit);
        set(&mut u.path, t.path);
        set(&mut u.fsync, t.fsync);
        set(&mut u.checkpoint_every_lines, t.checkpoint_every_lines);
        set(&mut u.checkpoint_every_secs, t.checkpoint_every_secs);
        set(&mut u.rotate_bytes, t.rotate_bytes);
        set(&mut self.metrics.listen, top.metrics.listen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn full() -> FileConfig {
        FileConfig {
            server: ServerSection {
                listen: Some("a".into()),
                tls_cert: Some("a".into()),
                tls_key: Some("a".into()),
                client_ca: Some("a".into()),
                shutdown_grace_secs: Some(1),
                max_message_bytes: Some(1),
                max_concurrent_streams: Some(1),
                request_timeout_secs: Some(1),
                max_connections: Some(1),
                max_connections_per_peer: Some(1),
                idle_timeout_secs: Some(1),
                runtime_threads: Some(1),
            },
            token: TokenSection {
                uri: Some("a".into()),
                pin_file: Some("a".into()),
                pin_env: Some("a".into()),
                sessions: Some(1),
                rsa_bits: Some(1),
                unavailable_after_ms: Some(1),
                idle_poll_us: Some(1),
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
                max_message_bytes: Some(1),
            },
            audit: crate::config::audit::AuditSection {
                path: Some("a".into()),
                fsync: Some("a".into()),
                checkpoint_every_lines: Some(1),
                checkpoint_every_secs: Some(1),
                rotate_bytes: Some(1),
            },
            metrics: crate::config::metrics::MetricsSection {
                listen: Some("a".into()),
            },
            policy: Vec::new(),
        }
    }

    #[test]
    fn field_list_covers_every_field() {
        let table = toml::Table::try_from(full()).unwrap();
        let mut seen = BTreeSet::new();
        // Array sections (`[[policy]]`) are not set from the environment.
        for (section, fields) in table {
            for (field, _) in fields.as_table().into_iter().flatten() {
                seen.insert((section.clone(), field.clone()));
            }
        }
        let listed: BTreeSet<_> = SECTIONS
            .iter()
            .flat_map(|s| {
                s.fields
                    .iter()
                    .map(|(f, _)| (s.name.to_string(), f.to_string()))
            })
            .collect();
        assert_eq!(seen, listed, "SECTIONS must list every config field");
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
        ]
        .into();
        let cfg = FileConfig::load(None, |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(cfg.admin.allow_uids, Some(vec![1000, 1001]));
        assert_eq!(cfg.admin.allow_gids, Some(vec![50]));
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
    fn unknown_field_names_the_field() {
        let err = FileConfig::load(Some(&fixture("unknown-field.toml")), |_| None).unwrap_err();
        assert!(err.0.contains("unknown field `listn`"), "{}", err.0);
    }

    #[test]
    fn flags_win_and_a_pin_flag_replaces_both_pin_sources() {
        let mut cfg = full();
        let mut flags = FileConfig::default();
        flags.server.listen = Some("127.0.0.1:1".into());
        flags.token.pin_file = Some("/flag/pin".into());
        cfg.overlay(flags);
        assert_eq!(cfg.server.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(cfg.token.pin_file, Some(PathBuf::from("/flag/pin")));
        assert_eq!(cfg.token.pin_env, None, "one PIN source, the flag's");
        assert_eq!(
            cfg.server.tls_cert,
            Some(PathBuf::from("a")),
            "unset flags keep the file"
        );
        let before = full();
        let mut same = full();
        same.overlay(FileConfig::default());
        assert_eq!(same, before, "no flags, no change");
    }
}
