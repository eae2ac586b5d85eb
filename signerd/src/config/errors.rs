//! The one error type of configuration: a sentence a user can act on.

/// Something wrong with the configuration, said so a user can fix it: the field, what is
/// wrong with it, and how to set it right.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl From<String> for ConfigError {
    fn from(message: String) -> ConfigError {
        ConfigError(message)
    }
}
