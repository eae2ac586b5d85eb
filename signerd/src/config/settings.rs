//! The configuration signerd runs with: the overlaid [`FileConfig`] resolved, defaults filled
//! in from [`super::defaults`], and every value checked for form. All problems are reported
//! at once, each naming the field and how to set it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use signerd_token::{PinSource, Pkcs11Uri, TokenConfig};

use super::defaults;
use super::env::env_var_name;
use super::errors::ConfigError;
use super::file::FileConfig;

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
    /// Where a USER login's PIN is checked against; `None` = USER login refused (never the
    /// token's own PIN: Login would be an oracle for it).
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
    /// How long a request waits for a token that is down before it answers UNAVAILABLE.
    pub unavailable_after: Duration,
    /// The most an idle token worker polls the queue before it sleeps; zero: never.
    pub idle_poll: Duration,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// The admin API.
    pub admin: AdminSettings,
    /// The audit file, when configured.
    pub audit: Option<super::audit::AuditSettings>,
    /// What one client may ask of the gRPC port.
    pub limits: Limits,
    /// Where Prometheus metrics are served; `None`: nowhere.
    pub metrics: Option<SocketAddr>,
    /// Async runtime threads; `None`: as many as the CPUs signerd may run on.
    pub runtime_threads: Option<usize>,
}

/// What one client may ask of the gRPC port: message size, streams, time, connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request message on the Notary port, in bytes.
    pub max_message_bytes: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// How long one call may take.
    pub request_timeout: Duration,
    /// Open connections, total.
    pub max_connections: usize,
    /// Open connections from one peer address.
    pub max_connections_per_peer: usize,
    /// How long a connection may stay silent.
    pub idle_timeout: Duration,
    /// Largest request message of the admin API (socket and mTLS port), in bytes.
    pub admin_max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: defaults::MAX_MESSAGE_BYTES as usize,
            max_concurrent_streams: defaults::MAX_CONCURRENT_STREAMS as u32,
            request_timeout: defaults::REQUEST_TIMEOUT,
            max_connections: defaults::MAX_CONNECTIONS as usize,
            max_connections_per_peer: defaults::MAX_CONNECTIONS_PER_PEER as usize,
            idle_timeout: defaults::IDLE_TIMEOUT,
            admin_max_message_bytes: defaults::ADMIN_MAX_MESSAGE_BYTES as usize,
        }
    }
}

impl Limits {
    /// The limits `[server]` sets, each checked against its range.
    fn resolve(
        s: &super::file::ServerSection,
        a: &super::file::AdminSection,
        errors: &mut Vec<ConfigError>,
    ) -> Limits {
        let d = Limits::default();
        let mut field = |name: &str, value: Option<u64>, default: u64, min: u64, max: u64| {
            let v = value.unwrap_or(default);
            if (min..=max).contains(&v) {
                v
            } else {
                let name = if name.contains('.') {
                    name.to_owned()
                } else {
                    format!("server.{name}")
                };
                errors.push(ConfigError(format!("{name} = {v}: use {min} to {max}")));
                default
            }
        };
        Limits {
            max_message_bytes: field(
                "max_message_bytes",
                s.max_message_bytes,
                d.max_message_bytes as u64,
                1024,
                256 * 1024 * 1024,
            ) as usize,
            max_concurrent_streams: field(
                "max_concurrent_streams",
                s.max_concurrent_streams,
                u64::from(d.max_concurrent_streams),
                1,
                100_000,
            ) as u32,
            request_timeout: Duration::from_secs(field(
                "request_timeout_secs",
                s.request_timeout_secs,
                d.request_timeout.as_secs(),
                1,
                86_400,
            )),
            max_connections: field(
                "max_connections",
                s.max_connections,
                d.max_connections as u64,
                1,
                1_000_000,
            ) as usize,
            max_connections_per_peer: field(
                "max_connections_per_peer",
                s.max_connections_per_peer,
                d.max_connections_per_peer as u64,
                1,
                1_000_000,
            ) as usize,
            // Keepalive pings go out at a third of it, so a live peer is never silent that long.
            idle_timeout: Duration::from_secs(field(
                "idle_timeout_secs",
                s.idle_timeout_secs,
                d.idle_timeout.as_secs(),
                3,
                86_400,
            )),
            admin_max_message_bytes: field(
                "admin.max_message_bytes",
                a.max_message_bytes,
                d.admin_max_message_bytes as u64,
                1024,
                256 * 1024 * 1024,
            ) as usize,
        }
    }
}

impl Settings {
    /// The settings from the config `file` (if any), the environment as `env` answers it, and
    /// `flags` over both. With a file, everything must be configured; without one, a missing
    /// token or TLS files are left to the embedded development environment.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: FileConfig,
    ) -> Result<Settings, Vec<ConfigError>> {
        let mut config = FileConfig::load(file, env).map_err(|e| vec![e])?;
        config.overlay(flags);
        config.resolve(file.is_some())
    }
}

impl FileConfig {
    /// Resolves the overlaid config into [`Settings`]. With `require_all` (a config file was
    /// given), a missing token or TLS file is an error; otherwise it is left to the dev default.
    pub fn resolve(&self, require_all: bool) -> Result<Settings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let default_listen = defaults::listen();
        let listen_text = self.server.listen.as_deref().unwrap_or(defaults::LISTEN);
        let listen = listen_text.parse().unwrap_or_else(|_| {
            errors.push(ConfigError(format!(
                "server.listen = {listen_text:?} is not an address; use IP:PORT, e.g. {default_listen}"
            )));
            default_listen
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

        let sessions = self.token.sessions.unwrap_or(defaults::sessions() as u64);
        if !(1..=defaults::SESSIONS_MAX as u64).contains(&sessions) {
            errors.push(ConfigError(format!(
                "token.sessions = {sessions}: use 1 to {}",
                defaults::SESSIONS_MAX
            )));
        }
        let rsa_bits = self.token.rsa_bits.unwrap_or(u64::from(defaults::RSA_BITS));
        if !u32::try_from(rsa_bits).is_ok_and(defaults::rsa_bits_allowed) {
            errors.push(ConfigError(format!(
                "token.rsa_bits = {rsa_bits}: use {}",
                defaults::rsa_bits_choices()
            )));
        }

        let unavailable_after_ms = self
            .token
            .unavailable_after_ms
            .unwrap_or(defaults::UNAVAILABLE_AFTER.as_millis() as u64);
        if !(1..=defaults::UNAVAILABLE_AFTER_MAX.as_millis() as u64).contains(&unavailable_after_ms)
        {
            errors.push(ConfigError(format!(
                "token.unavailable_after_ms = {unavailable_after_ms}: use 1 to {}",
                defaults::UNAVAILABLE_AFTER_MAX.as_millis()
            )));
        }
        let unavailable_after = Duration::from_millis(unavailable_after_ms);

        let idle_poll_us = self
            .token
            .idle_poll_us
            .unwrap_or(defaults::IDLE_POLL.as_micros() as u64);
        if idle_poll_us > defaults::IDLE_POLL_MAX.as_micros() as u64 {
            errors.push(ConfigError(format!(
                "token.idle_poll_us = {idle_poll_us}: use 0 (idle workers sleep at once) to {}",
                defaults::IDLE_POLL_MAX.as_micros()
            )));
        }
        let idle_poll = Duration::from_micros(idle_poll_us);

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
                    if let Err(e) = uri.refuse_inline_pin() {
                        errors.push(ConfigError(format!("token.uri: {e}")));
                    }
                    if uri.module_path.is_none() {
                        errors.push(ConfigError(format!(
                            "token.uri {:?} has no module-path; add ?module-path=/usr/lib/softhsm/libsofthsm2.so (or your HSM's module)",
                            Pkcs11Uri::redact(text)
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
                    config.unavailable_after = unavailable_after;
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

        let log_format = match self.log.format.as_deref().unwrap_or(defaults::LOG_FORMAT) {
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
            || defaults::LOG_LEVEL.to_owned(),
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

        let limits = Limits::resolve(&self.server, &self.admin, &mut errors);
        let runtime_threads = match self.server.runtime_threads {
            Some(n) if !(1..=defaults::RUNTIME_THREADS_MAX).contains(&n) => {
                errors.push(ConfigError(format!(
                    "server.runtime_threads = {n}: use 1 to {}, or leave it out for one per CPU",
                    defaults::RUNTIME_THREADS_MAX
                )));
                None
            }
            n => n.map(|n| n as usize),
        };

        let audit = self.audit.resolve().unwrap_or_else(|errs| {
            errors.extend(errs.into_iter().map(ConfigError));
            None
        });

        let metrics = self.metrics.resolve().unwrap_or_else(|e| {
            errors.push(ConfigError(e));
            None
        });

        if errors.is_empty() {
            Ok(Settings {
                listen,
                tls,
                token,
                sessions: sessions as usize,
                rsa_bits: rsa_bits as u32,
                unavailable_after,
                idle_poll,
                shutdown_grace: self
                    .server
                    .shutdown_grace_secs
                    .map(Duration::from_secs)
                    .unwrap_or(defaults::SHUTDOWN_GRACE),
                log_format,
                log_level,
                admin,
                audit,
                limits,
                metrics,
                runtime_threads,
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_level_with_blanks_before_non_ascii_is_checked_not_a_panic() {
        let resolve = |level: &str| {
            FileConfig {
                log: super::super::file::LogSection {
                    level: Some(level.into()),
                    ..Default::default()
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

    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn messages(errors: Vec<ConfigError>) -> Vec<String> {
        errors.into_iter().map(|e| e.0).collect()
    }

    #[test]
    fn admin_clients_from_the_environment_resolve() {
        let env: HashMap<&str, &str> = [
            (
                "SIGNERD_ADMIN_ADMIN_CLIENTS",
                r#"["CN=ops,O=example", "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"]"#,
            ),
            ("SIGNERD_ADMIN_SOCKET", "/run/signerd/admin.sock"),
        ]
        .into();
        let admin = Settings::load(
            None,
            |k| env.get(k).map(|v| v.to_string()),
            FileConfig::default(),
        )
        .unwrap()
        .admin;
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
    }

    #[test]
    fn bad_admin_clients_say_how_to_write_them() {
        let cfg = FileConfig::load(Some(&fixture("bad-admin.toml")), no_env).unwrap();
        assert_eq!(
            messages(cfg.resolve(false).unwrap_err()),
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
    fn missing_pieces_say_what_to_set() {
        let cfg = FileConfig::load(Some(&fixture("incomplete.toml")), no_env).unwrap();
        assert_eq!(
            messages(cfg.resolve(true).unwrap_err()),
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

    #[test]
    fn defaults_fill_what_nothing_sets() {
        let s = FileConfig::default().resolve(false).unwrap();
        assert_eq!(s.listen, defaults::listen());
        assert_eq!(s.sessions, defaults::sessions());
        assert_eq!(s.rsa_bits, defaults::RSA_BITS);
        assert_eq!(s.shutdown_grace, defaults::SHUTDOWN_GRACE);
        assert_eq!(s.log_level, defaults::LOG_LEVEL);
    }

    #[test]
    fn runtime_threads_and_the_admin_message_limit_resolve_and_are_checked() {
        let s = FileConfig::default().resolve(false).unwrap();
        assert_eq!(s.runtime_threads, None, "one per CPU unless set");
        assert_eq!(
            s.limits.admin_max_message_bytes as u64,
            defaults::ADMIN_MAX_MESSAGE_BYTES
        );
        let mut cfg = FileConfig::default();
        cfg.server.runtime_threads = Some(2);
        cfg.admin.max_message_bytes = Some(65536);
        let s = cfg.resolve(false).unwrap();
        assert_eq!(s.runtime_threads, Some(2));
        assert_eq!(s.limits.admin_max_message_bytes, 65536);
        let mut cfg = FileConfig::default();
        cfg.server.runtime_threads = Some(0);
        cfg.admin.max_message_bytes = Some(10);
        assert_eq!(
            messages(cfg.resolve(false).unwrap_err()),
            [
                "admin.max_message_bytes = 10: use 1024 to 268435456",
                "server.runtime_threads = 0: use 1 to 256, or leave it out for one per CPU",
            ]
        );
    }

    #[test]
    fn the_idle_poll_resolves_off_at_zero_and_is_checked() {
        let s = FileConfig::default().resolve(false).unwrap();
        assert_eq!(s.idle_poll, defaults::IDLE_POLL);
        for us in [0, 1000] {
            let mut cfg = FileConfig::default();
            cfg.token.idle_poll_us = Some(us);
            assert_eq!(
                cfg.resolve(false).unwrap().idle_poll,
                Duration::from_micros(us)
            );
        }
        let mut cfg = FileConfig::default();
        cfg.token.idle_poll_us = Some(1001);
        assert_eq!(
            messages(cfg.resolve(false).unwrap_err()),
            ["token.idle_poll_us = 1001: use 0 (idle workers sleep at once) to 1000"]
        );
    }

    #[test]
    fn every_allowed_rsa_size_resolves_and_no_other() {
        for bits in defaults::RSA_BITS_ALLOWED {
            let mut cfg = FileConfig::default();
            cfg.token.rsa_bits = Some(bits.into());
            assert_eq!(cfg.resolve(false).unwrap().rsa_bits, bits);
        }
        let mut cfg = FileConfig::default();
        cfg.token.rsa_bits = Some(8192);
        assert_eq!(
            messages(cfg.resolve(false).unwrap_err()),
            ["token.rsa_bits = 8192: use 2048, 3072 or 4096"]
        );
    }

    #[test]
    fn flags_over_a_file_are_what_resolves() {
        let mut flags = FileConfig::default();
        flags.server.listen = Some("127.0.0.1:9".into());
        let s = Settings::load(Some(&fixture("softhsm.toml")), no_env, flags).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9");
        let errors = Settings::load(
            Some(&fixture("unknown-field.toml")),
            no_env,
            FileConfig::default(),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].0.contains("unknown field `listn`"), "{errors:?}");
    }
}
