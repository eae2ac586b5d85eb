//! signerd's configuration: one TOML file, every field overridable by an environment variable
//! `SIGNERD_<SECTION>_<FIELD>`, and the common fields by command-line flags.
//!
//! Precedence, lowest first: built-in [`defaults`], the file, the environment, the flags. Without
//! a config file, what is still missing (token, TLS files) comes from the embedded development
//! environment under `.signerd/` (see [`crate::bootstrap`]); with a file, it is an error.
//!
//! [`file`](mod@file) is the file as written (one type per section), [`env`](mod@env) the environment layer,
//! [`settings`] the resolved and checked result, [`errors`] what a user sees when it is wrong.

pub mod audit;
pub mod defaults;
pub mod env;
pub mod errors;
pub mod file;
pub mod metrics;
pub mod policy;
pub mod settings;

pub use env::{env_var_name, EnvSection, FieldKind};
pub use errors::ConfigError;
pub use file::{
    env_var_names, AdminSection, FileConfig, LogSection, ServerSection, TokenSection, SECTIONS,
};
pub use policy::PolicyRule;
pub use settings::{AdminClient, AdminSettings, Limits, LogFormat, Settings, TlsFiles};
