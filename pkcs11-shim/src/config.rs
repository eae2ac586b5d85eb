//! Where signerd is and how the shim behaves: an optional TOML file named by
//! `SIGNERD_SHIM_CONFIG`, overridden field by field by environment variables.
//!
//! | file key | environment | meaning |
//! | --- | --- | --- |
//! | `socket` | `SIGNERD_SOCKET` | signerd's admin Unix socket (default `/run/signerd/admin.sock`; the dev setup's is `$PWD/.signerd/admin.sock`) |
//! | `server_uid` | `SIGNERD_SERVER_UID` | the uid signerd runs as: the socket's peer must be it (default: root or the socket file's owner) |
//! | `addr` | `SIGNERD_ADDR` | signerd's admin mTLS address, `host:port` or `https://host:port` |
//! | `client_cert`, `client_key` | `SIGNERD_CLIENT_CERT`, `SIGNERD_CLIENT_KEY` | admin client certificate and key (PEM), for `addr` |
//! | `ca` | `SIGNERD_SERVER_CA` (or `SIGNERD_CA`) | CA that signed signerd's certificate (PEM), for `addr` |
//! | `tls_domain` | `SIGNERD_SERVER_NAME` (or `SIGNERD_TLS_DOMAIN`) | name to check signerd's certificate against (default: the host of `addr`) |
//! | `timeout_secs` | `SIGNERD_SHIM_TIMEOUT_SECS` | longest one call to signerd may take (default 15) |
//! | `log` | `SIGNERD_SHIM_LOG` | `stderr` (default), `off`, or a file to append to |
//! | `log_level` | `SIGNERD_SHIM_LOG_LEVEL` | `error`, `warn` (default), `info`, `debug` |
//! | `hide_key_types` | `SIGNERD_SHIM_HIDE_KEY_TYPES` | key types whose objects the shim does not show, e.g. `["ed25519"]` (env: comma-separated) |
//! | `max_id_len` | `SIGNERD_SHIM_MAX_ID_LEN` | hide objects whose `CKA_ID` is longer (e.g. `1` for the notary CLI's view) |
//! | `disable` | `SIGNERD_SHIM_DISABLE` | `1`/`true`: show no token at all (for a process that loads the shim but must not use signerd) |

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signerd_proto::admin::KeyType;

/// The variable naming the optional config file.
pub const CONFIG_ENV: &str = "SIGNERD_SHIM_CONFIG";

/// The socket used when nothing says where signerd is: an absolute path, never one relative
/// to the folder a host program happens to run in (a fake socket there would receive its PIN
/// and imported keys).
pub const DEFAULT_SOCKET: &str = signerd_vocab::DEFAULT_ADMIN_SOCKET;

pub use signerd_client::{Endpoint, SocketPeer, TlsEndpoint};

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error of the host process.
    Stderr,
    /// Appended to this file.
    File(PathBuf),
    /// Nowhere.
    Off,
}

/// How much is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Failures only.
    Error,
    /// Failures and why signerd could not be used.
    Warn,
    /// Plus sessions, logins (never the PIN) and key operations.
    Info,
    /// Plus every call's result.
    Debug,
}

/// The shim's resolved configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// How to reach signerd.
    pub endpoint: Endpoint,
    /// Longest one call to signerd may take, retries included.
    pub timeout: Duration,
    /// Log destination.
    pub log: LogTarget,
    /// Log level.
    pub log_level: LogLevel,
    /// Key types whose objects are not shown.
    pub hide_key_types: Vec<KeyType>,
    /// Objects with a longer `CKA_ID` are not shown.
    pub max_id_len: Option<usize>,
    /// Show no token at all.
    pub disabled: bool,
    /// Who must be serving the admin socket.
    pub socket_peer: SocketPeer,
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    socket: Option<PathBuf>,
    addr: Option<String>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    ca: Option<PathBuf>,
    tls_domain: Option<String>,
    timeout_secs: Option<u64>,
    log: Option<String>,
    log_level: Option<String>,
    hide_key_types: Option<Vec<String>>,
    max_id_len: Option<usize>,
    disable: Option<bool>,
    server_uid: Option<u32>,
}

/// A configuration the user must fix, said so they can.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads the configuration from the process environment (and the file it names).
    pub fn from_env() -> Result<Config, ConfigError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let file = match env(CONFIG_ENV) {
            Some(path) => {
                let path = PathBuf::from(path);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ConfigError(format!("{CONFIG_ENV}: cannot read {}: {e}", path.display()))
                })?;
                Some((path, text))
            }
            None => None,
        };
        Config::resolve(file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())), env)
    }

    /// Resolves a config file's text (if any) overlaid by the environment as `env` answers it.
    pub fn resolve(
        file: Option<(&Path, &str)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let f: FileConfig = match file {
            Some((path, text)) => toml::from_str(text).map_err(|e| {
                ConfigError(format!(
                    "{}: {}",
                    path.display(),
                    e.to_string().trim().replace('\n', " ")
                ))
            })?,
            None => FileConfig::default(),
        };
        let pick = |var: &str, from_file: Option<String>| env(var).or(from_file);
        let pick_path = |var: &str, from_file: &Option<PathBuf>| {
            env(var).map(PathBuf::from).or_else(|| from_file.clone())
        };

        let socket = pick_path("SIGNERD_SOCKET", &f.socket);
        let addr = pick("SIGNERD_ADDR", f.addr.clone());
        let endpoint = match (socket, addr) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "both a socket (SIGNERD_SOCKET / socket) and an address (SIGNERD_ADDR / addr) are set: keep one".into(),
                ))
            }
            (Some(socket), None) => Endpoint::Unix(socket),
            (None, None) => Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET)),
            (None, Some(addr)) => {
                let need = |var: &str, key: &str, v: Option<PathBuf>| {
                    v.ok_or_else(|| {
                        ConfigError(format!(
                            "SIGNERD_ADDR needs {var} (or `{key}` in the config file)"
                        ))
                    })
                };
                let client_cert = need(
                    "SIGNERD_CLIENT_CERT",
                    "client_cert",
                    pick_path("SIGNERD_CLIENT_CERT", &f.client_cert),
                )?;
                let client_key = need(
                    "SIGNERD_CLIENT_KEY",
                    "client_key",
                    pick_path("SIGNERD_CLIENT_KEY", &f.client_key),
                )?;
                // The admin CLI's names first, then the short ones.
                let ca = need(
                    "SIGNERD_SERVER_CA",
                    "ca",
                    pick_path("SIGNERD_SERVER_CA", &f.ca).or_else(|| env("SIGNERD_CA").map(PathBuf::from)),
                )?;
                let uri = if addr.contains("://") {
                    addr.clone()
                } else {
                    format!("https://{addr}")
                };
                let host = host_of(&uri).ok_or_else(|| {
                    ConfigError(format!(
                        "SIGNERD_ADDR = {addr:?} is not host:port or https://host:port"
                    ))
                })?;
                let domain = env("SIGNERD_SERVER_NAME")
                    .or_else(|| env("SIGNERD_TLS_DOMAIN"))
                    .or(f.tls_domain.clone())
                    .unwrap_or(host);
                Endpoint::Tls(TlsEndpoint {
                    uri,
                    domain,
                    client_cert,
                    client_key,
                    ca,
                })
            }
        };

        let timeout_secs = match env("SIGNERD_SHIM_TIMEOUT_SECS") {
            Some(v) => v.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "SIGNERD_SHIM_TIMEOUT_SECS = {v:?} is not a whole number"
                ))
            })?,
            None => f.timeout_secs.unwrap_or(15),
        };
        if !(1..=600).contains(&timeout_secs) {
            return Err(ConfigError(format!(
                "timeout_secs = {timeout_secs}: use 1 to 600"
            )));
        }

        let log = match pick("SIGNERD_SHIM_LOG", f.log.clone()).as_deref() {
            None | Some("stderr") => LogTarget::Stderr,
            Some("off") | Some("none") => LogTarget::Off,
            Some(path) => LogTarget::File(PathBuf::from(path)),
        };
        let log_level = match pick("SIGNERD_SHIM_LOG_LEVEL", f.log_level.clone()).as_deref() {
            None | Some("warn") => LogLevel::Warn,
            Some("error") => LogLevel::Error,
            Some("info") => LogLevel::Info,
            Some("debug") => LogLevel::Debug,
            Some(other) => {
                return Err(ConfigError(format!(
                    "log_level = {other:?}: use error, warn, info or debug"
                )))
            }
        };

        let hide_names: Vec<String> = match env("SIGNERD_SHIM_HIDE_KEY_TYPES") {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            None => f.hide_key_types.clone().unwrap_or_default(),
        };
        let mut hide_key_types = Vec::new();
        for name in hide_names {
            hide_key_types.push(match name.to_ascii_lowercase().as_str() {
                "ed25519" => KeyType::Ed25519,
                "ecdsa" | "ec" | "p256" => KeyType::EcP256,
                "rsa" => KeyType::Rsa,
                other => {
                    return Err(ConfigError(format!(
                        "hide_key_types: {other:?} is not a key type; use ecdsa, ed25519 or rsa"
                    )))
                }
            });
        }

        let max_id_len = match env("SIGNERD_SHIM_MAX_ID_LEN") {
            Some(v) => Some(v.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "SIGNERD_SHIM_MAX_ID_LEN = {v:?} is not a whole number"
                ))
            })?),
            None => f.max_id_len,
        };

        let disabled = match env("SIGNERD_SHIM_DISABLE") {
            Some(v) => matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"),
            None => f.disable.unwrap_or(false),
        };

        let socket_peer = match env("SIGNERD_SERVER_UID") {
            Some(v) => SocketPeer::Uid(v.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "SIGNERD_SERVER_UID = {v:?} is not a uid (a whole number, e.g. `id -u signerd`)"
                ))
            })?),
            None => f
                .server_uid
                .map_or(SocketPeer::RootOrOwner, SocketPeer::Uid),
        };

        Ok(Config {
            endpoint,
            timeout: Duration::from_secs(timeout_secs),
            log,
            log_level,
            hide_key_types,
            max_id_len,
            disabled,
            socket_peer,
        })
    }

    /// Where signerd is, for log lines.
    pub fn describe_endpoint(&self) -> String {
        match &self.endpoint {
            Endpoint::Unix(path) => format!("unix socket {}", path.display()),
            Endpoint::Tls(t) => format!("{} (mTLS)", t.uri),
        }
    }
}

/// The host part of `https://host:port/...`.
fn host_of(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?.to_owned()
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_owned()
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_to_the_absolute_socket_and_warnings_on_stderr() {
        let c = Config::resolve(None, env_of(&[])).unwrap();
        assert_eq!(
            c.endpoint,
            Endpoint::Unix(PathBuf::from("/run/signerd/admin.sock"))
        );
        assert!(Path::new(DEFAULT_SOCKET).is_absolute());
        assert_eq!(c.socket_peer, SocketPeer::RootOrOwner);
        let c = Config::resolve(None, env_of(&[("SIGNERD_SERVER_UID", "998")])).unwrap();
        assert_eq!(c.socket_peer, SocketPeer::Uid(998));
        let e = Config::resolve(None, env_of(&[("SIGNERD_SERVER_UID", "signerd")])).unwrap_err();
        assert!(e.0.contains("is not a uid"), "{e}");
        assert_eq!(c.log, LogTarget::Stderr);
        assert_eq!(c.log_level, LogLevel::Warn);
        assert_eq!(c.timeout, Duration::from_secs(15));
        assert!(!c.disabled);
    }

    #[test]
    fn env_overrides_the_file() {
        let file = "socket = \"/run/signerd/admin.sock\"\nlog_level = \"debug\"\nhide_key_types = [\"ed25519\"]\n";
        let c = Config::resolve(
            Some((Path::new("shim.toml"), file)),
            env_of(&[
                ("SIGNERD_SOCKET", "/tmp/x.sock"),
                ("SIGNERD_SHIM_MAX_ID_LEN", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.endpoint, Endpoint::Unix(PathBuf::from("/tmp/x.sock")));
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.hide_key_types, vec![KeyType::Ed25519]);
        assert_eq!(c.max_id_len, Some(1));
    }

    #[test]
    fn tls_needs_its_files_and_takes_the_host_as_name() {
        let err =
            Config::resolve(None, env_of(&[("SIGNERD_ADDR", "signer.example:7900")])).unwrap_err();
        assert_eq!(
            err.0,
            "SIGNERD_ADDR needs SIGNERD_CLIENT_CERT (or `client_cert` in the config file)"
        );
        let c = Config::resolve(
            None,
            env_of(&[
                ("SIGNERD_ADDR", "signer.example:7900"),
                ("SIGNERD_CLIENT_CERT", "c.pem"),
                ("SIGNERD_CLIENT_KEY", "k.pem"),
                ("SIGNERD_SERVER_CA", "ca.pem"),
            ]),
        )
        .unwrap();
        let Endpoint::Tls(t) = c.endpoint else {
            panic!("expected TLS")
        };
        assert_eq!(t.uri, "https://signer.example:7900");
        assert_eq!(t.domain, "signer.example");
    }

    #[test]
    fn mistakes_are_named() {
        let both = Config::resolve(
            None,
            env_of(&[("SIGNERD_SOCKET", "/a"), ("SIGNERD_ADDR", "h:1")]),
        )
        .unwrap_err();
        assert!(both.0.starts_with("both a socket"), "{}", both.0);
        let unknown = Config::resolve(
            Some((Path::new("shim.toml"), "sockt = \"/a\"\n")),
            env_of(&[]),
        )
        .unwrap_err();
        assert!(unknown.0.contains("unknown field `sockt`"), "{}", unknown.0);
        let level =
            Config::resolve(None, env_of(&[("SIGNERD_SHIM_LOG_LEVEL", "loud")])).unwrap_err();
        assert_eq!(
            level.0,
            "log_level = \"loud\": use error, warn, info or debug"
        );
        let hide =
            Config::resolve(None, env_of(&[("SIGNERD_SHIM_HIDE_KEY_TYPES", "dsa")])).unwrap_err();
        assert!(hide.0.contains("\"dsa\" is not a key type"), "{}", hide.0);
    }

    #[test]
    fn disable_switch() {
        let c = Config::resolve(None, env_of(&[("SIGNERD_SHIM_DISABLE", "1")])).unwrap();
        assert!(c.disabled);
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://[::1]:7900").as_deref(), Some("::1"));
        assert_eq!(
            host_of("https://127.0.0.1:7900").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(host_of("https://:7900"), None);
    }
}
