//! `signerd migrate notary-signer` as a command: the token from signerd's own configuration
//! (or `--token`), the passphrases from the environment, the report on stdout.

use std::process::ExitCode;

use secrecy::SecretString;
use signerd_token::{PinSource, Token, TokenConfig};

use crate::bootstrap::Bootstrap;
use crate::cli::MigrateArgs;
use crate::config::{ConfigError, FileConfig, LogFormat, Settings};
use crate::startup::StartupError;

use super::source::{Backend, KeyDatabase};

/// Runs the migration; the exit code says whether every key is in the token.
pub fn notary_signer(args: &MigrateArgs) -> ExitCode {
    let backend = match args
        .backend
        .as_deref()
        .map(str::parse::<Backend>)
        .transpose()
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("signerd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match token_config(args) {
        Ok(c) => c,
        Err(e) => return e.report(),
    };
    crate::logging::init(LogFormat::Human, "warn");
    let token = match Token::open(config) {
        Ok(t) => t,
        Err(e) => return StartupError::Token(e).report(),
    };
    let passphrase = |alias: &str| {
        std::env::var(super::decrypt::passphrase_env(alias))
            .ok()
            .filter(|p| !p.is_empty())
            .map(SecretString::from)
    };
    let db = KeyDatabase {
        backend,
        db_url: args.db_url.clone(),
        ca_file: args.db_ca_file.clone(),
    };
    let result = super::migrate_notary_signer(&db, &token, args.dry_run, &passphrase);
    token.close();
    let reports = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("signerd: {e}");
            return ExitCode::FAILURE;
        }
    };
    match super::print_report(&reports, args.dry_run, &mut std::io::stdout()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("signerd: cannot write the report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The token the keys go into: `--token` (with `--pin-file`), else signerd's config file's
/// token, else the embedded development token.
fn token_config(args: &MigrateArgs) -> Result<TokenConfig, StartupError> {
    let pin = args.pin_file.clone().map(PinSource::File);
    if let Some(uri) = &args.token {
        let uri = uri.parse().map_err(|e| {
            StartupError::Config(vec![ConfigError(format!(
                "--token: {e}; give the token's PKCS#11 URI, as in token.uri"
            ))])
        })?;
        let mut config = TokenConfig::new(uri);
        config.pin = pin;
        return Ok(config);
    }
    let mut flags = FileConfig::default();
    flags.token.pin_file.clone_from(&args.pin_file);
    let settings = Settings::load(args.config.as_deref(), |k| std::env::var(k).ok(), flags)?;
    let bootstrap = Bootstrap::resolve(settings, &args.dev_dir)?;
    // Still one thread: the dev token's SoftHSM folder must be set before the module loads.
    bootstrap.prepare_process();
    Ok(bootstrap.token().clone())
}
