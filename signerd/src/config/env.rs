//! The environment as a config layer: every field of the file can be set by a variable
//! `SIGNERD_<SECTION>_<FIELD>`. Each section lists its fields beside its type (its `ENV`
//! constant), so a section another module owns brings its own list.

use super::errors::ConfigError;

/// The kind of value a field holds, for reading it from an environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Any text (paths, addresses, URIs).
    Text,
    /// A whole number.
    Number,
    /// Whole numbers: `1000,1001` or a TOML array `[1000, 1001]`.
    NumberList,
    /// Strings: one value, or a TOML array `["CN=a,O=b", "sha256:..."]` (subjects hold commas).
    TextList,
}

/// A config section's fields the environment can set.
#[derive(Clone, Copy, Debug)]
pub struct EnvSection {
    /// The section's name in the file, e.g. `server`.
    pub name: &'static str,
    /// Its fields and their kinds.
    pub fields: &'static [(&'static str, FieldKind)],
}

/// The environment variable that overrides `section.field`.
pub fn env_var_name(section: &str, field: &str) -> String {
    format!("SIGNERD_{}_{}", section, field).to_uppercase()
}

/// Overlays onto `table` (the file as parsed) every variable of `sections` that `env` knows.
pub(super) fn overlay_env(
    table: &mut toml::Table,
    sections: &[EnvSection],
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for section in sections {
        for (field, kind) in section.fields {
            let var = env_var_name(section.name, field);
            let Some(raw) = env(&var) else { continue };
            let value = env_value(&var, *kind, raw)?;
            let entry = table
                .entry(section.name.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => {
                    t.insert(field.to_string(), value);
                }
                _ => {
                    return Err(ConfigError(format!(
                        "[{}] in the config file must be a table",
                        section.name
                    )))
                }
            }
        }
    }
    Ok(())
}

/// An environment variable's text as the TOML value of a field of `kind`.
fn env_value(var: &str, kind: FieldKind, raw: String) -> Result<toml::Value, ConfigError> {
    let number = |text: &str| {
        text.trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| ConfigError(format!("{var}={raw:?} is not a whole number")))
    };
    let toml_array = |text: &str| {
        format!("v = {text}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(toml::Value::is_array)
            .ok_or_else(|| ConfigError(format!("{var}={raw:?} is not a TOML array")))
    };
    match kind {
        FieldKind::Text => Ok(toml::Value::String(raw)),
        FieldKind::Number => number(&raw),
        FieldKind::NumberList if raw.trim_start().starts_with('[') => toml_array(&raw),
        FieldKind::NumberList => raw
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(number)
            .collect::<Result<Vec<_>, _>>()
            .map(toml::Value::Array),
        FieldKind::TextList if raw.trim_start().starts_with('[') => toml_array(&raw),
        FieldKind::TextList => Ok(toml::Value::Array(vec![toml::Value::String(raw)])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_are_section_and_field_in_upper_case() {
        assert_eq!(
            env_var_name("server", "tls_cert"),
            "SIGNERD_SERVER_TLS_CERT"
        );
    }

    #[test]
    fn values_are_read_by_kind() {
        let v = |kind, raw: &str| env_value("V", kind, raw.to_string());
        assert_eq!(v(FieldKind::Number, " 7 "), Ok(toml::Value::Integer(7)));
        assert_eq!(
            v(FieldKind::NumberList, "1, 2,"),
            Ok(toml::Value::Array(vec![
                toml::Value::Integer(1),
                toml::Value::Integer(2)
            ]))
        );
        assert_eq!(
            v(FieldKind::TextList, "CN=a,O=b"),
            Ok(toml::Value::Array(vec![toml::Value::String(
                "CN=a,O=b".into()
            )]))
        );
        assert_eq!(
            v(FieldKind::TextList, "[1"),
            Err(ConfigError("V=\"[1\" is not a TOML array".into()))
        );
    }
}
