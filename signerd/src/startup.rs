//! Why `signerd serve` or `check-config` stopped, and the exit code that says which kind of
//! problem it was (README, "What each error means"): 2 for a configuration the user must fix
//! (fields, TLS files, the token's module, the dev environment), 1 for a failure while running
//! (the address is in use, the admin socket, the server itself).

use std::process::ExitCode;

use signerd_token::{TokenError, UriError};

use crate::config::ConfigError;
use crate::devenv::DevEnvError;

/// The kind of failure, as the process exit code scripts and service managers see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 1: signerd could not run (address in use, admin socket, the server failed).
    Runtime = 1,
    /// 2: the configuration is wrong; fix it (`signerd check-config` shows every problem).
    Config = 2,
}

impl From<Failure> for ExitCode {
    fn from(failure: Failure) -> ExitCode {
        ExitCode::from(failure as u8)
    }
}

/// Why signerd did not start, or stopped; each message says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// The configuration (file, environment, flags) has these problems, all found at once.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<ConfigError>),
    /// The embedded development environment could not be made or read.
    #[error("embedded dev environment: {0}")]
    DevEnv(#[source] DevEnvError),
    /// The development token's URI does not parse.
    #[error("dev token URI: {0}")]
    DevTokenUri(#[source] UriError),
    /// The TLS files cannot be read or do not make a mutual-TLS server.
    #[error("{0}")]
    Tls(String),
    /// The token's PKCS#11 module cannot be loaded.
    #[error("{0}")]
    Token(#[source] TokenError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The gRPC address cannot be listened on.
    #[error("{0}")]
    Listen(String),
    /// The admin API's socket cannot be served.
    #[error("{0}")]
    AdminSocket(String),
    /// The gRPC server failed while serving.
    #[error("{0}")]
    Server(String),
}

impl From<Vec<ConfigError>> for StartupError {
    fn from(errors: Vec<ConfigError>) -> StartupError {
        StartupError::Config(errors)
    }
}

impl StartupError {
    /// Which kind of failure this is.
    pub fn failure(&self) -> Failure {
        match self {
            StartupError::Config(_)
            | StartupError::DevEnv(_)
            | StartupError::DevTokenUri(_)
            | StartupError::Tls(_)
            | StartupError::Token(_) => Failure::Config,
            StartupError::Runtime(_)
            | StartupError::Listen(_)
            | StartupError::AdminSocket(_)
            | StartupError::Server(_) => Failure::Runtime,
        }
    }

    /// Each problem on its own line, as `check-config` lists them.
    pub fn problems(&self) -> Vec<String> {
        match self {
            StartupError::Config(errors) => errors.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }

    /// Says what went wrong on stderr (and in the log, once there is one) and gives the exit
    /// code.
    pub fn report(&self) -> ExitCode {
        eprint!("{}", self.stderr_text());
        if self.failure() == Failure::Runtime {
            tracing::error!("{self}");
        }
        self.failure().into()
    }

    /// What [`StartupError::report`] writes to stderr.
    fn stderr_text(&self) -> String {
        match self.failure() {
            Failure::Config => {
                let mut text: String = self
                    .problems()
                    .iter()
                    .map(|p| format!("signerd: config error: {p}\n"))
                    .collect();
                text.push_str(
                    "signerd: fix the above (signerd check-config shows every problem), then start again\n",
                );
                text
            }
            Failure::Runtime => format!("signerd: {self}\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_problems_exit_2_and_each_gets_a_line() {
        let e = StartupError::from(vec![
            ConfigError("token.sessions = 0: use 1 to 1024".into()),
            ConfigError("log.format = \"xml\": use human or json".into()),
        ]);
        assert_eq!(e.failure(), Failure::Config);
        assert_eq!(Failure::Config as u8, 2);
        assert_eq!(
            e.stderr_text(),
            "signerd: config error: token.sessions = 0: use 1 to 1024\n\
             signerd: config error: log.format = \"xml\": use human or json\n\
             signerd: fix the above (signerd check-config shows every problem), then start again\n"
        );
        assert_eq!(e.problems().len(), 2);
    }

    #[test]
    fn files_the_module_and_the_dev_environment_are_configuration() {
        let module = StartupError::Token(TokenError::NoModule);
        assert_eq!(module.failure(), Failure::Config);
        assert_eq!(
            module.problems(),
            ["the token URI has no module-path; add ?module-path=/path/to/module.so"]
        );
        let tls = StartupError::Tls("cannot read server.tls_key /x: No such file".into());
        assert_eq!(tls.failure(), Failure::Config);
        let dev = StartupError::DevEnv(DevEnvError::Random(std::io::Error::other("gone")));
        assert_eq!(dev.failure(), Failure::Config);
        assert_eq!(
            dev.problems(),
            ["embedded dev environment: cannot read /dev/urandom: gone"]
        );
        let uri = "token=x".parse::<signerd_token::Pkcs11Uri>().unwrap_err();
        assert_eq!(StartupError::DevTokenUri(uri).failure(), Failure::Config);
    }

    #[test]
    fn failures_while_running_exit_1_with_the_message() {
        let e = StartupError::Listen(
            "cannot listen on 127.0.0.1:7899: Address in use; pick another address with --listen or server.listen".into(),
        );
        assert_eq!(e.failure(), Failure::Runtime);
        assert_eq!(Failure::Runtime as u8, 1);
        assert_eq!(
            e.stderr_text(),
            "signerd: cannot listen on 127.0.0.1:7899: Address in use; pick another address with --listen or server.listen\n"
        );
        let runtime = StartupError::Runtime(std::io::Error::other("no threads"));
        assert_eq!(runtime.failure(), Failure::Runtime);
        assert_eq!(
            runtime.to_string(),
            "cannot start the async runtime: no threads"
        );
        assert_eq!(
            StartupError::AdminSocket("admin socket /x: in use".into()).failure(),
            Failure::Runtime
        );
    }
}
