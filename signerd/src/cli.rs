//! The command line as typed: `signerd serve`, `signerd check-config`, the admin commands
//! (`signerd key|ca|csr|root|trust-pinning|sign`, in [`crate::admin_cli`]) and `signerd shim`.
//! Parsing only: the flags become a config layer ([`ServeArgs::flags`]) that
//! [`crate::config`] lays over the file and the environment, and [`crate::commands`] runs what
//! was asked for.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::FileConfig;

/// signerd: a Notary signer whose keys live in a PKCS#11 token.
#[derive(Debug, Parser)]
#[command(name = "signerd", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the signer (with no configuration: on a dev SoftHSM token and dev certs in .signerd/).
    ///
    /// Exit codes: 2 = the configuration is wrong (fix it; check-config shows every problem),
    /// 1 = signerd could not run (e.g. the address is in use).
    Serve(ServeArgs),
    /// Check the configuration, the TLS files and the token, and say exactly what is wrong.
    ///
    /// Exit codes: 0 = good, 2 = a problem to fix (each one is listed).
    CheckConfig(ServeArgs),
    /// The admin commands, over signerd's admin API.
    #[command(flatten)]
    Admin(crate::admin_cli::AdminCommand),
    /// Check (verify) or follow (tail) the audit trail.
    #[command(subcommand)]
    Audit(crate::audit::cli::AuditCommand),
    /// Install the PKCS#11 shim as libykcs11.so for the notary CLI (or remove it).
    #[command(subcommand)]
    Shim(crate::shim_install::ShimCommand),
    /// Move keys from another signer into the token.
    #[command(subcommand)]
    Migrate(MigrateCommand),
}

/// Where `signerd migrate` takes keys from.
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Import the keys of a Go notary-signer's database (PostgreSQL) into the token, each
    /// verified by a signature, without deleting them there. Passphrases are read from
    /// NOTARY_SIGNER_<ALIAS>, as notary-signer reads them.
    ///
    /// Exit codes: 0 = every key is in the token, 1 = some key was not moved (each line says
    /// why; the database still has it), 2 = the configuration is wrong.
    NotarySigner(MigrateArgs),
}

/// `signerd migrate notary-signer`: the database, and the token the keys go into.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// notary-signer's storage.db_url, e.g. postgres://signer@127.0.0.1:5432/notarysigner?sslmode=disable or signer:PASSWORD@tcp(127.0.0.1:3306)/notarysigner?parseTime=True
    #[arg(long, value_name = "URL", env = "NOTARY_SIGNER_STORAGE_DB_URL")]
    pub db_url: String,
    /// notary-signer's storage.backend (mysql or postgres) [default: from the URL's shape].
    #[arg(long, value_name = "BACKEND", env = "NOTARY_SIGNER_STORAGE_BACKEND")]
    pub backend: Option<String>,
    /// CA certificates (PEM) for a verified TLS connection to the database (MySQL tls=true;
    /// PostgreSQL sslmode=verify-ca/verify-full without sslrootcert).
    #[arg(long, value_name = "FILE")]
    pub db_ca_file: Option<PathBuf>,
    /// List what would move; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// signerd's config file: the keys go into its [token].
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "token")]
    pub config: Option<PathBuf>,
    /// PKCS#11 URI of the token, instead of a config file.
    #[arg(long, value_name = "URI")]
    pub token: Option<String>,
    /// File holding the token's user PIN (overrides the URI's pin-source).
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
    /// With neither --config nor --token: the embedded development token in this folder.
    #[arg(long, value_name = "DIR", default_value = crate::devenv::DEFAULT_DEV_DIR)]
    pub dev_dir: PathBuf,
}

/// Where the configuration comes from; flags override the file and the environment.
// The field docs are `--help` text, where `<FIELD>` is a placeholder, not an HTML tag.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
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
    /// Serve Prometheus metrics at http://ADDR/metrics (IP:PORT, or a bare PORT for loopback) [default: metrics.listen; none: off].
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Folder for the embedded development token and certificates.
    #[arg(long, value_name = "DIR", default_value = crate::devenv::DEFAULT_DEV_DIR)]
    dev_dir: PathBuf,
}

impl ServeArgs {
    /// The config file named on the command line.
    pub fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// Where the embedded development environment lives.
    pub fn dev_dir(&self) -> &Path {
        &self.dev_dir
    }

    /// The flags as a config layer, the top one.
    pub fn flags(&self) -> FileConfig {
        let mut flags = FileConfig::default();
        flags.server.listen.clone_from(&self.listen);
        flags.server.tls_cert.clone_from(&self.tls_cert);
        flags.server.tls_key.clone_from(&self.tls_key);
        flags.server.client_ca.clone_from(&self.client_ca);
        flags.token.uri.clone_from(&self.token);
        flags.token.pin_file.clone_from(&self.pin_file);
        flags.log.format.clone_from(&self.log_format);
        flags.admin.socket.clone_from(&self.admin_socket);
        flags.metrics.listen.clone_from(&self.metrics_listen);
        flags
    }
}

/// Parses the process's arguments (exiting with clap's usage message, code 2, on a mistake).
pub fn parse() -> Cli {
    Cli::parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(["signerd", "serve"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Serve(args) => args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn flags_become_the_top_config_layer() {
        let args = serve_args(&[
            "--listen",
            "127.0.0.1:1",
            "--pin-file",
            "/p",
            "-c",
            "x.toml",
        ]);
        assert_eq!(args.config_file(), Some(Path::new("x.toml")));
        assert_eq!(args.dev_dir(), Path::new(crate::devenv::DEFAULT_DEV_DIR));
        let flags = args.flags();
        assert_eq!(flags.server.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(flags.token.pin_file, Some(PathBuf::from("/p")));
        assert_eq!(flags.server.tls_cert, None, "unset flags set nothing");
        assert_eq!(serve_args(&[]).flags(), FileConfig::default());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
