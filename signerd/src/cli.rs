//! The command line: `signerd serve` and `signerd check-config`, and the admin commands
//! (`signerd key|ca|csr|root|trust-pinning|sign`, in [`crate::admin_cli`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use signerd_token::{Token, TokenConfig};

use crate::config::{FileConfig, LogFormat, Settings, TlsFiles};
use crate::devenv::DevEnv;
use crate::keys::KeyStore;

/// signerd: a Notary signer whose keys live in a PKCS#11 token.
#[derive(Debug, Parser)]
#[command(name = "signerd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the signer (with no configuration: on a dev SoftHSM token and dev certs in .signerd/).
    Serve(ServeArgs),
    /// Check the configuration, the TLS files and the token, and say exactly what is wrong.
    CheckConfig(ServeArgs),
    #[command(flatten)]
    Admin(crate::admin_cli::AdminCommand),
    /// Install the PKCS#11 shim as libykcs11.so for the notary CLI (or remove it).
    #[command(subcommand)]
    Shim(crate::shim_install::ShimCommand),
}

/// Where the configuration comes from; flags override the file and the environment.
#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML config file (fields can also be set by SIGNERD_<SECTION>_<FIELD> variables).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7899].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Server certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// CA certificate(s) client certificates must chain to (PEM).
    #[arg(long, value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// PKCS#11 URI of the token, e.g. 'pkcs11:token=signerd?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/signerd/pin'.
    #[arg(long, value_name = "URI")]
    token: Option<String>,
    /// File holding the token's user PIN (overrides the URI's pin-source).
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_name = "FORMAT", value_parser = ["human", "json"])]
    log_format: Option<String>,
    /// Unix socket of the admin API [default: admin.socket; with no config, <dev-dir>/admin.sock].
    #[arg(long, value_name = "PATH")]
    admin_socket: Option<PathBuf>,
    /// Folder for the embedded development token and certificates.
    #[arg(long, value_name = "DIR", default_value = ".signerd")]
    dev_dir: PathBuf,
}

/// Exit code for a configuration the user must fix.
const EXIT_CONFIG: u8 = 2;

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Admin(command) => crate::admin_cli::run(command),
        Command::Shim(command) => crate::shim_install::run(command),
    }
}

impl ServeArgs {
    fn file_config(&self) -> Result<FileConfig, String> {
        let mut cfg =
            FileConfig::load(self.config.as_deref(), |k| std::env::var(k).ok()).map_err(|e| e.0)?;
        let s = &mut cfg.server;
        overlay(&mut s.listen, &self.listen);
        overlay(&mut s.tls_cert, &self.tls_cert);
        overlay(&mut s.tls_key, &self.tls_key);
        overlay(&mut s.client_ca, &self.client_ca);
        overlay(&mut cfg.token.uri, &self.token);
        if self.pin_file.is_some() {
            cfg.token.pin_env = None;
            overlay(&mut cfg.token.pin_file, &self.pin_file);
        }
        overlay(&mut cfg.log.format, &self.log_format);
        overlay(&mut cfg.admin.socket, &self.admin_socket);
        Ok(cfg)
    }

    fn settings(&self) -> Result<Settings, Vec<String>> {
        let cfg = self.file_config().map_err(|e| vec![e])?;
        cfg.resolve(self.config.is_some())
            .map_err(|errs| errs.into_iter().map(|e| e.0).collect())
    }
}

fn overlay<T: Clone>(field: &mut Option<T>, flag: &Option<T>) {
    if flag.is_some() {
        field.clone_from(flag);
    }
}

/// Settings with the embedded development parts filled in where nothing was configured.
struct Resolved {
    settings: Settings,
    tls: TlsFiles,
    token: TokenConfig,
    dev: Option<DevEnv>,
}

fn resolve(args: &ServeArgs) -> Result<Resolved, Vec<String>> {
    let settings = args.settings()?;
    let dev = if settings.tls.is_none() || settings.token.is_none() {
        Some(
            DevEnv::ensure(&args.dev_dir)
                .map_err(|e| vec![format!("embedded dev environment: {e}")])?,
        )
    } else {
        None
    };
    let tls = match (&settings.tls, &dev) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => d.pki.server_files(),
        (None, None) => unreachable!("dev env exists when TLS is not configured"),
    };
    let token = match (&settings.token, &dev) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => {
            // Only the dev token lives in our own SoftHSM folder: point the module at it. This
            // runs before any thread starts.
            std::env::set_var("SOFTHSM2_CONF", &d.softhsm_conf);
            let mut config = TokenConfig::new(
                d.token_uri
                    .parse()
                    .map_err(|e| vec![format!("dev token URI: {e}")])?,
            );
            config.sessions = settings.sessions;
            config.rsa_bits = settings.rsa_bits;
            config
        }
        (None, None) => unreachable!("dev env exists when no token is configured"),
    };
    Ok(Resolved {
        settings,
        tls,
        token,
        dev,
    })
}

fn report_config_errors(errors: &[String]) -> ExitCode {
    for e in errors {
        eprintln!("signerd: config error: {e}");
    }
    eprintln!(
        "signerd: fix the above (signerd check-config shows every problem), then start again"
    );
    ExitCode::from(EXIT_CONFIG)
}

fn serve(args: ServeArgs) -> ExitCode {
    let resolved = match resolve(&args) {
        Ok(r) => r,
        Err(errors) => return report_config_errors(&errors),
    };
    let Resolved {
        settings,
        tls,
        token,
        dev,
    } = resolved;
    crate::logging::init(settings.log_format, &settings.log_level);
    let material = match crate::tls::load(&tls) {
        Ok(m) => m,
        Err(e) => return report_config_errors(&[e]),
    };
    let admin = admin_plan(&settings, &token, dev.as_ref());
    let token = match Token::open(token) {
        Ok(t) => Arc::new(t),
        Err(e) => return report_config_errors(&[e.to_string()]),
    };
    match token.connect() {
        Ok(d) => tracing::info!(token = %d.label, slot = d.slot, serial = %d.serial, "token ready"),
        // Keep running: health says NOT_SERVING and requests say why until the token is back.
        Err(e) => tracing::error!(error = %e, "token not usable yet; serving errors until it is"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("signerd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let keys = match KeyStore::new(token) {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("signerd: cannot start the token workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = crate::server::bind(settings.listen).await?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let admin = admin.bind()?;
        if let Some(dev) = &dev {
            print_dev_banner(local, dev);
        }
        tracing::info!(listen = %local, "signerd serving the Notary signer API over mutual TLS");
        crate::server::serve(
            listener,
            &material,
            keys.clone(),
            Some(admin),
            settings.shutdown_grace,
            crate::server::shutdown_signal(),
        )
        .await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    crate::server::close_token(keys);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("signerd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The admin API as configured, before its socket is bound.
struct AdminPlan {
    socket: Option<PathBuf>,
    policy: crate::admin::policy::AdminPolicy,
    pins: crate::admin::login::LoginPins,
}

impl AdminPlan {
    /// Binds the socket (inside the runtime).
    fn bind(self) -> Result<crate::admin::serving::AdminServing, String> {
        let socket = match &self.socket {
            Some(path) => Some(crate::admin::socket::bind(path)?),
            None => None,
        };
        Ok(crate::admin::serving::AdminServing::new(
            self.policy,
            self.pins,
            socket,
        ))
    }
}

/// Where and for whom the admin API is served: the configured socket (the dev default puts it
/// in the dev folder), the allow lists (default: signerd's own uid), and the login PINs (USER:
/// admin.user_pin_file or the token's PIN source; SO: admin.so_pin_file, or on the dev token
/// its SO PIN file).
fn admin_plan(settings: &Settings, token: &TokenConfig, dev: Option<&DevEnv>) -> AdminPlan {
    let admin = &settings.admin;
    let socket = admin
        .socket
        .clone()
        .or_else(|| dev.map(|d| d.root.join("admin.sock")));
    let user_pin = admin
        .user_pin
        .clone()
        .or_else(|| token.pin.clone())
        .or_else(|| token.uri.pin_source.clone())
        // Config checks refuse a token without a PIN source before this point; were one to
        // get here, every USER login fails with the unreadable file named.
        .unwrap_or_else(|| signerd_token::PinSource::File(PathBuf::from("/nonexistent/user-pin")));
    let dev_so_pin = match (dev, &settings.token) {
        (Some(d), None) => Some(signerd_token::PinSource::File(d.root.join("so-pin"))),
        _ => None,
    };
    AdminPlan {
        socket,
        policy: crate::admin::policy::AdminPolicy::from_settings(
            admin,
            nix::unistd::geteuid().as_raw(),
        ),
        pins: crate::admin::login::LoginPins::new(user_pin, admin.so_pin.clone().or(dev_so_pin)),
    }
}

fn print_dev_banner(local: std::net::SocketAddr, dev: &DevEnv) {
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
    println!(
        "signerd (development setup, not for production) listening on {local} with mutual TLS"
    );
    println!(
        "  token      SoftHSM token '{}' in {}",
        crate::devenv::DEV_TOKEN_LABEL,
        abs(&dev.root.join("softhsm"))
    );
    println!("  CA file    {}", abs(&dev.pki.ca));
    println!(
        "  admin      {} (signerd key list, signerd ca init, ...)",
        abs(&dev.root.join("admin.sock"))
    );
    println!(
        "  client     {} / {}",
        abs(&dev.pki.client_cert),
        abs(&dev.pki.client_key)
    );
    println!("notary-server config (merge into its JSON config):");
    println!(
        "{}",
        serde_json::to_string_pretty(&snippet).unwrap_or_default()
    );
}

fn check_config(args: ServeArgs) -> ExitCode {
    let mut failed = false;
    let mut report = |ok: bool, what: &str| {
        failed |= !ok;
        println!("{} {what}", if ok { "ok  " } else { "FAIL" });
    };
    let resolved = match resolve(&args) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                report(false, e);
            }
            println!("configuration has {} problem(s)", errors.len());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let source = match &args.config {
        Some(p) => format!("config file {}", p.display()),
        None => "flags and environment (no config file)".to_string(),
    };
    report(
        true,
        &format!("{source} parsed; listen {}", resolved.settings.listen),
    );
    if let Some(dev) = &resolved.dev {
        report(
            true,
            &format!("embedded development environment in {}", dev.root.display()),
        );
    }
    match crate::tls::load(&resolved.tls) {
        Ok(_) => report(
            true,
            &format!(
                "TLS: {} with key {}; clients must chain to {}",
                resolved.tls.cert.display(),
                resolved.tls.key.display(),
                resolved.tls.client_ca.display()
            ),
        ),
        Err(e) => report(false, &format!("TLS: {e}")),
    }
    let plan = admin_plan(&resolved.settings, &resolved.token, resolved.dev.as_ref());
    match Token::open(resolved.token) {
        Ok(token) => {
            match token.connect() {
                Ok(d) => report(
                    true,
                    &format!(
                        "token '{}' (serial {}, slot {}) via {}: logged in",
                        d.label,
                        d.serial,
                        d.slot,
                        token.module_path()
                    ),
                ),
                Err(e) => report(false, &format!("token: {e}")),
            }
            token.close();
        }
        Err(e) => report(false, &format!("token: {e}")),
    }
    report(
        true,
        &format!(
            "admin API: {}; {}",
            match &plan.socket {
                Some(p) => format!("socket {}", p.display()),
                None => "no socket (set admin.socket)".into(),
            },
            plan.policy.describe()
        ),
    );
    if resolved.settings.log_format == LogFormat::Json {
        report(true, "logs: JSON");
    }
    if failed {
        ExitCode::from(EXIT_CONFIG)
    } else {
        println!("configuration is good");
        ExitCode::SUCCESS
    }
}
