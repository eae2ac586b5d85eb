//! What each command does: `serve` and `check-config` run on a [`Bootstrap`]; the admin and
//! shim commands go to their modules.

use std::process::ExitCode;
use std::sync::Arc;

use signerd_token::Token;

use crate::audit::AuditSink;
use crate::bootstrap::Bootstrap;
use crate::cli::{Cli, Command, ServeArgs};
use crate::config::{FileConfig, LogFormat, Settings};
use crate::edge::policy::{Policy, PolicyHandle};
use crate::edge::Edge;
use crate::keys::KeyStore;
use crate::metrics::{Metrics, ProcessFacts, TimedSink};
use crate::startup::{Failure, StartupError};
use crate::tls::TlsMaterial;

/// Runs the command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => match serve(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => e.report(),
        },
        Command::CheckConfig(args) => check_config(&args),
        Command::Admin(command) => crate::admin_cli::run(command),
        Command::Shim(command) => crate::shim_install::run(command),
        Command::Audit(command) => crate::audit::cli::run(command),
        Command::Migrate(crate::cli::MigrateCommand::NotarySigner(args)) => {
            crate::migrate::command::notary_signer(&args)
        }
    }
}

/// Settings from the file, the environment and the flags, and what they leave to the dev
/// environment.
fn bootstrap(args: &ServeArgs) -> Result<Bootstrap, StartupError> {
    let settings = Settings::load(args.config_file(), |k| std::env::var(k).ok(), args.flags())?;
    Bootstrap::resolve(settings, args.dev_dir())
}

/// `signerd serve`: serves until SIGTERM or SIGINT.
fn serve(args: &ServeArgs) -> Result<(), StartupError> {
    // First: no core dump may ever hold key material (with SoftHSM the keys are in this
    // process's memory), and descriptors up to the hard limit.
    let hardened =
        crate::hardening::harden_process().map_err(|e| StartupError::Server(e.to_string()))?;
    let bootstrap = bootstrap(args)?;
    // Still one thread: nothing has started one yet.
    bootstrap.prepare_process();
    let settings = bootstrap.settings();
    crate::logging::init(settings.log_format, &settings.log_level);
    tracing::info!("{hardened}");
    let material = crate::tls::load(bootstrap.tls()).map_err(StartupError::Tls)?;
    let admin = bootstrap.admin_plan();
    let token = Arc::new(Token::open(bootstrap.token().clone()).map_err(StartupError::Token)?);
    match token.connect() {
        Ok(d) => {
            tracing::info!(token = %d.label, slot = d.slot, serial = %d.serial, "token ready");
            // Key pairs a killed signerd left half-made (signerd_token::gc).
            token.spawn_pending_collection();
        }
        // Keep running: health says NOT_SERVING and requests say why until the token is back.
        Err(e) => tracing::error!(error = %e, "token not usable yet; serving errors until it is"),
    }
    let scheduling = crate::scheduling::Scheduling::new();
    let runtime = crate::server::runtime(settings.runtime_threads, &scheduling)
        .map_err(StartupError::Runtime)?;
    let keys = KeyStore::new(token, settings.idle_poll)
        .map_err(|e| StartupError::Server(format!("cannot start the token workers: {e}")))?;
    let audit = crate::audit::open_trail(settings.audit.as_ref(), &keys)
        .map_err(|e| StartupError::Config(vec![crate::config::ConfigError(e)]))?;
    let policy = load_policy(args).map_err(|errors| {
        StartupError::Config(errors.into_iter().map(crate::config::ConfigError).collect())
    })?;
    let metrics = Metrics::new(
        ProcessFacts {
            started: std::time::Instant::now(),
            audit_path: settings.audit.as_ref().map(|a| a.path.clone()),
        },
        Some(crate::metrics::store::StoreCollector::of(keys.clone())),
    );
    // Records go to the audit trail when one is configured, else to the operational log;
    // either way each write is timed.
    let sink: Arc<dyn AuditSink> = match &audit {
        Some(trail) => Arc::clone(trail) as Arc<dyn AuditSink>,
        None => Arc::new(crate::edge::audit::LogSink),
    };
    let sink = Arc::new(TimedSink::new(sink, metrics.clone()));
    let edge = Edge::new(PolicyHandle::new(policy), sink)
        .with_metrics(metrics.clone())
        .with_admission(
            crate::edge::admission::Admission::for_workers(keys.stats().workers)
                .following(keys.serving())
                .informing(scheduling),
        );
    let result = runtime.block_on(async {
        let listener = crate::server::bind(settings.listen)
            .await
            .map_err(StartupError::Listen)?;
        let local = listener
            .local_addr()
            .map_err(|e| StartupError::Listen(e.to_string()))?;
        let admin = admin.bind()?;
        let metrics_listener = match settings.metrics {
            Some(listen) => Some(
                crate::metrics::http::bind(listen)
                    .await
                    .map_err(StartupError::Listen)?,
            ),
            None => None,
        };
        bootstrap.print_banner(local);
        tracing::info!(listen = %local, "signerd serving the Notary signer API over mutual TLS");
        // These tasks end with the runtime.
        if let Some(listener) = metrics_listener {
            tracing::info!(at = %crate::metrics::http::describe(&listener), "metrics served");
            tokio::spawn(crate::metrics::http::serve(listener, metrics));
        }
        spawn_reload(edge.policy().clone(), material.clone(), args.clone());
        crate::server::serve(
            listener,
            &material,
            keys.clone(),
            Some(admin),
            edge,
            settings.limits,
            settings.shutdown_grace,
            crate::server::shutdown_signal(),
        )
        .await
        .map_err(StartupError::Server)
    });
    if let Some(trail) = &audit {
        runtime.block_on(trail.close());
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    crate::server::close_token(keys);
    result
}

/// On every SIGHUP, reloads the TLS certificate, key and client CA (new connections get them,
/// open ones keep theirs), then the policy (calls in flight keep the one they started under).
/// Whatever fails to load is logged with why, and what is in force stays.
fn spawn_reload(
    policy: PolicyHandle,
    tls: TlsMaterial,
    args: ServeArgs,
) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGHUP; restart signerd to change its TLS material or policy");
                return;
            }
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(served) => tracing::info!(
                    certificate = %served,
                    "SIGHUP: TLS certificate, key and client CA reloaded; new connections use them, open ones keep theirs"
                ),
                Err(e) => tracing::error!(
                    "SIGHUP: TLS not reloaded: {e}; the certificate in force stays. Fix the files (signerd check-config) and send SIGHUP again"
                ),
            }
            match load_policy(&args) {
                Ok(new) => {
                    let summary = new.describe();
                    policy.replace(new);
                    tracing::info!(policy = %summary, "SIGHUP: policy reloaded");
                }
                Err(errors) => {
                    for e in &errors {
                        tracing::error!("SIGHUP: config error: {e}");
                    }
                    tracing::error!(
                        "SIGHUP: the new config is refused; the policy in force stays. Fix it (signerd check-config) and send SIGHUP again"
                    );
                }
            }
        }
    })
}

/// The policy the config (file, environment, flags) gives: its `[[policy]]` rules and the
/// built-in rules of `[admin]`. Read at start, on SIGHUP and by `check-config`.
fn load_policy(args: &ServeArgs) -> Result<Policy, Vec<String>> {
    let text = |errors: Vec<crate::config::ConfigError>| {
        errors
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    };
    let mut file = FileConfig::load(args.config_file(), |k| std::env::var(k).ok())
        .map_err(|e| vec![e.to_string()])?;
    file.overlay(args.flags());
    let settings = file.resolve(args.config_file().is_some()).map_err(text)?;
    let rules = crate::edge::policy::config::compile(&file.policy)?;
    Ok(Policy::new(
        rules,
        &settings.admin,
        nix::unistd::geteuid().as_raw(),
    ))
}

/// `signerd check-config`: one line per part, `ok` or `FAIL` and why.
fn check_config(args: &ServeArgs) -> ExitCode {
    let mut failed = false;
    let mut report = |ok: bool, what: &str| {
        failed |= !ok;
        println!("{} {what}", if ok { "ok  " } else { "FAIL" });
    };
    let bootstrap = match bootstrap(args) {
        Ok(b) => b,
        Err(e) => {
            let problems = e.problems();
            for p in &problems {
                report(false, p);
            }
            println!("configuration has {} problem(s)", problems.len());
            return e.failure().into();
        }
    };
    // Still one thread: nothing has started one yet.
    bootstrap.prepare_process();
    let settings = bootstrap.settings();
    let source = match args.config_file() {
        Some(p) => format!("config file {}", p.display()),
        None => "flags and environment (no config file)".to_string(),
    };
    report(
        true,
        &format!("{source} parsed; listen {}", settings.listen),
    );
    if let Some(dev) = bootstrap.dev_env() {
        report(
            true,
            &format!("embedded development environment in {}", dev.root.display()),
        );
    }
    let tls = bootstrap.tls();
    match crate::tls::load(tls) {
        Ok(_) => report(
            true,
            &format!(
                "TLS: {} with key {}; clients must chain to {}",
                tls.cert.display(),
                tls.key.display(),
                tls.client_ca.display()
            ),
        ),
        Err(e) => report(false, &format!("TLS: {e}")),
    }
    match Token::open(bootstrap.token().clone()) {
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
    let plan = bootstrap.admin_plan();
    report(
        true,
        &format!(
            "admin API: {}; {}",
            match plan.socket() {
                Some(p) => format!("socket {}", p.display()),
                None => "no socket (set admin.socket)".into(),
            },
            plan.describe_policy()
        ),
    );
    match load_policy(args) {
        Ok(p) => report(true, &format!("policy: {}", p.describe())),
        Err(errors) => {
            for e in errors {
                report(false, &e);
            }
        }
    }
    if settings.log_format == LogFormat::Json {
        report(true, "logs: JSON");
    }
    if failed {
        Failure::Config.into()
    } else {
        println!("configuration is good");
        ExitCode::SUCCESS
    }
}
