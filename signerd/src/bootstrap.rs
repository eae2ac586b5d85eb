//! What signerd runs on, decided once at startup: everything configured, or (no config file
//! given and a part missing) the embedded development environment filling the gaps. The
//! bootstrap owns what differs between the two: the process environment the dev SoftHSM token
//! needs, the banner that tells a newcomer where everything is, and where the admin API is
//! served and which PINs its logins check.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use signerd_token::{PinSource, TokenConfig};

use crate::admin::login::LoginPins;
use crate::admin::serving::AdminServing;
use crate::config::{Settings, TlsFiles};
use crate::devenv::{DevEnv, DEV_TOKEN_LABEL};
use crate::startup::StartupError;

/// What signerd runs on.
#[derive(Debug)]
pub enum Bootstrap {
    /// The token and the TLS files are configured (file, environment or flags).
    Configured(Configured),
    /// No config file and a part missing: the embedded development environment fills it.
    Dev(Dev),
}

/// A start on configured parts only.
#[derive(Debug)]
pub struct Configured {
    settings: Settings,
    tls: TlsFiles,
    token: TokenConfig,
}

/// A start on the embedded development environment, with whatever was configured beside it.
#[derive(Debug)]
pub struct Dev {
    settings: Settings,
    env: DevEnv,
    tls: TlsFiles,
    token: TokenConfig,
    /// The token is the dev SoftHSM token (not one configured beside the dev certificates).
    dev_token: bool,
}

impl Bootstrap {
    /// Decides what signerd runs on; makes (or reuses) the development environment in
    /// `dev_dir` when a part is missing. Touches no process state: see
    /// [`Bootstrap::prepare_process`].
    pub fn resolve(settings: Settings, dev_dir: &Path) -> Result<Bootstrap, StartupError> {
        let (tls, token) = match (settings.tls.clone(), settings.token.clone()) {
            (Some(tls), Some(token)) => {
                return Ok(Bootstrap::Configured(Configured {
                    settings,
                    tls,
                    token,
                }))
            }
            parts => parts,
        };
        let env = DevEnv::ensure(dev_dir).map_err(StartupError::DevEnv)?;
        let dev_token = token.is_none();
        let token = match token {
            Some(token) => token,
            None => {
                let mut config =
                    TokenConfig::new(env.token_uri.parse().map_err(StartupError::DevTokenUri)?);
                config.sessions = settings.sessions;
                config.unavailable_after = settings.unavailable_after;
                config.rsa_bits = settings.rsa_bits;
                config
            }
        };
        Ok(Bootstrap::Dev(Dev {
            tls: tls.unwrap_or_else(|| env.pki.server_files()),
            settings,
            env,
            token,
            dev_token,
        }))
    }

    /// Sets what the token's module reads from the process environment: on the dev token,
    /// `SOFTHSM2_CONF` pointing at the dev SoftHSM folder (SoftHSM finds its tokens only
    /// through it, and reads it when the module initializes). Call once, from `main`'s thread,
    /// before the runtime or anything else starts a thread: changing the environment while
    /// another thread may read it is undefined behaviour in libc.
    pub fn prepare_process(&self) {
        if let Bootstrap::Dev(dev) = self {
            if dev.dev_token {
                std::env::set_var("SOFTHSM2_CONF", &dev.env.softhsm_conf);
            }
        }
    }

    /// The resolved settings.
    pub fn settings(&self) -> &Settings {
        match self {
            Bootstrap::Configured(c) => &c.settings,
            Bootstrap::Dev(d) => &d.settings,
        }
    }

    /// The TLS files signerd serves with.
    pub fn tls(&self) -> &TlsFiles {
        match self {
            Bootstrap::Configured(c) => &c.tls,
            Bootstrap::Dev(d) => &d.tls,
        }
    }

    /// The token signerd opens.
    pub fn token(&self) -> &TokenConfig {
        match self {
            Bootstrap::Configured(c) => &c.token,
            Bootstrap::Dev(d) => &d.token,
        }
    }

    /// The development environment, when signerd runs on it.
    pub fn dev_env(&self) -> Option<&DevEnv> {
        match self {
            Bootstrap::Configured(_) => None,
            Bootstrap::Dev(d) => Some(&d.env),
        }
    }

    /// Where and for whom the admin API is served: the configured socket (the dev default
    /// puts it in the dev folder), the allow lists (default: signerd's own uid), and the login
    /// PINs: `admin.user_pin_file` and `admin.so_pin_file`, never the token's PIN source (a
    /// Login would be an oracle for it). On the dev token alone they default to its PIN files,
    /// which sit beside the socket readable by the only uid the socket admits by default.
    pub fn admin_plan(&self) -> AdminPlan {
        let settings = self.settings();
        let admin = &settings.admin;
        let socket = admin
            .socket
            .clone()
            .or_else(|| self.dev_env().map(DevEnv::admin_socket));
        let (dev_user_pin, dev_so_pin) = match self {
            Bootstrap::Dev(d) if d.dev_token => (
                self.token().uri.pin_source.clone(),
                Some(PinSource::File(d.env.so_pin_file())),
            ),
            _ => (None, None),
        };
        AdminPlan {
            socket,
            summary: admin_summary(admin),
            pins: LoginPins::new(
                admin.user_pin.clone().or(dev_user_pin),
                admin.so_pin.clone().or(dev_so_pin),
            ),
        }
    }

    /// On the development environment, tells where everything is and prints notary-server's
    /// `trust_service` block; configured starts print nothing (the log says it).
    pub fn print_banner(&self, local: SocketAddr) {
        if let Bootstrap::Dev(dev) = self {
            print!("{}", dev_banner(local, &dev.env));
        }
    }
}

/// The admin API as planned, before its socket is bound.
pub struct AdminPlan {
    socket: Option<PathBuf>,
    summary: String,
    pins: LoginPins,
}

impl AdminPlan {
    /// The socket it will be served on, if any.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// Who may use it, in words (for `check-config`).
    pub fn describe_policy(&self) -> String {
        self.summary.clone()
    }

    /// Binds the socket (inside the runtime).
    pub fn bind(self) -> Result<AdminServing, StartupError> {
        let socket = match &self.socket {
            Some(path) => {
                Some(crate::admin::socket::bind(path).map_err(StartupError::AdminSocket)?)
            }
            None => None,
        };
        Ok(AdminServing::new(self.pins, socket))
    }
}

/// The admin API's built-in allow lists, in one line (the `[admin]` part of the policy).
fn admin_summary(admin: &crate::config::AdminSettings) -> String {
    let uids = admin
        .allow_uids
        .clone()
        .unwrap_or_else(|| vec![nix::unistd::geteuid().as_raw()]);
    format!(
        "socket peers with uid {uids:?} or gid {:?}; {} admin client certificate(s) on the mTLS port",
        admin.allow_gids,
        admin.admin_clients.len()
    )
}

/// The banner of a development start.
fn dev_banner(local: SocketAddr, dev: &DevEnv) -> String {
    let abs = |p: &Path| {
        std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local.ip().to_string()
    };
    let snippet = serde_json::json!({
        "trust_service": {
            "type": "remote",
            "hostname": host,
            "port": local.port().to_string(),
            "key_algorithm": "ecdsa",
            "tls_ca_file": abs(&dev.pki.ca),
            "tls_client_cert": abs(&dev.pki.client_cert),
            "tls_client_key": abs(&dev.pki.client_key),
        }
    });
    let mut banner = format!(
        "signerd (development setup, not for production) listening on {local} with mutual TLS\n"
    );
    let mut line = |what: &str, value: String| banner.push_str(&format!("  {what:<10} {value}\n"));
    line(
        "token",
        format!(
            "SoftHSM token '{DEV_TOKEN_LABEL}' in {}",
            abs(&dev.root.join("softhsm"))
        ),
    );
    line("CA file", abs(&dev.pki.ca));
    line(
        "admin",
        format!(
            "{} (signerd key list, signerd ca init, ...)",
            abs(&dev.admin_socket())
        ),
    );
    line(
        "client",
        format!(
            "{} / {}",
            abs(&dev.pki.client_cert),
            abs(&dev.pki.client_key)
        ),
    );
    banner.push_str("notary-server config (merge into its JSON config):\n");
    banner.push_str(&serde_json::to_string_pretty(&snippet).unwrap_or_default());
    banner.push('\n');
    banner
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn settings(config: FileConfig) -> Settings {
        config.resolve(false).expect("valid settings")
    }

    #[test]
    fn a_configured_start_makes_no_dev_environment() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = FileConfig::default();
        config.server.tls_cert = Some("/etc/signerd/server.pem".into());
        config.server.tls_key = Some("/etc/signerd/server-key.pem".into());
        config.server.client_ca = Some("/etc/signerd/ca.pem".into());
        config.token.uri = Some(
            "pkcs11:token=t?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/signerd/pin"
                .into(),
        );
        let dev_dir = dir.path().join("dev");
        let bootstrap = Bootstrap::resolve(settings(config), &dev_dir).unwrap();
        assert!(matches!(bootstrap, Bootstrap::Configured(_)));
        assert!(!dev_dir.exists(), "nothing made in the dev folder");
        assert!(bootstrap.dev_env().is_none());
        let plan = bootstrap.admin_plan();
        assert_eq!(plan.socket(), None, "no admin socket unless configured");
        bootstrap.print_banner("127.0.0.1:1".parse().unwrap());
    }

    #[test]
    fn the_dev_environment_fills_only_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let dev_dir = dir.path().join("dev");
        let mut config = FileConfig::default();
        config.server.tls_cert = Some("/etc/signerd/server.pem".into());
        config.server.tls_key = Some("/etc/signerd/server-key.pem".into());
        config.server.client_ca = Some("/etc/signerd/ca.pem".into());
        config.token.sessions = Some(3);
        let bootstrap = Bootstrap::resolve(settings(config), &dev_dir).unwrap();
        let Bootstrap::Dev(dev) = &bootstrap else {
            panic!("no token configured: the dev token")
        };
        assert!(dev.dev_token);
        assert_eq!(
            bootstrap.tls().cert,
            PathBuf::from("/etc/signerd/server.pem")
        );
        assert_eq!(
            bootstrap.token().sessions,
            3,
            "the settings reach the dev token"
        );
        assert_eq!(
            bootstrap.admin_plan().socket(),
            Some(dev_dir.join(crate::devenv::ADMIN_SOCKET_FILE).as_path())
        );

        // A token configured beside the dev certificates: not the dev token.
        let mut config = FileConfig::default();
        config.token.uri = Some(
            "pkcs11:token=t?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/signerd/pin"
                .into(),
        );
        let bootstrap = Bootstrap::resolve(settings(config), &dev_dir).unwrap();
        let Bootstrap::Dev(dev) = &bootstrap else {
            panic!("no TLS configured: the dev certificates")
        };
        assert!(!dev.dev_token);
        assert_eq!(bootstrap.tls().cert, dev_dir.join("tls/server.pem"));
        assert_eq!(bootstrap.token().uri.token.as_deref(), Some("t"));
    }

    #[test]
    fn the_dev_banner_says_where_everything_is() {
        let dir = tempfile::tempdir().unwrap();
        let env = DevEnv::ensure(dir.path()).unwrap();
        let banner = dev_banner("0.0.0.0:7899".parse().unwrap(), &env);
        let ca = std::fs::canonicalize(&env.pki.ca).unwrap();
        assert!(
            banner.contains(&format!("  CA file    {}\n", ca.display())),
            "{banner}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&banner[banner.find('{').unwrap()..]).unwrap();
        assert_eq!(json["trust_service"]["hostname"], "127.0.0.1");
        assert_eq!(json["trust_service"]["port"], "7899");
    }
}
