//! Certificates and names as notary wants them, built with `x509-cert`; nothing here talks
//! to the token.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use der::EncodePem as _;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use crate::admin_cli::output::file_stem;
use crate::admin_cli::{CliError, Exit};

/// How far back a new certificate's notBefore goes, for clocks a little behind.
pub(super) const BACKDATE: Duration = Duration::from_secs(300);

/// The file `root new` and `ca issue` write a GUN's root certificate to by default.
pub fn default_certificate_file(gun: &str) -> PathBuf {
    PathBuf::from(format!("{}.crt", file_stem(gun)))
}

/// `path` made absolute, for JSON output scripts read.
pub(super) fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// `CN=<value>` as a name, the value escaped as RFC 4514 wants.
pub(super) fn common_name(value: &str) -> Result<Name, CliError> {
    let mut escaped = String::new();
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Name::from_str(&format!("CN={escaped}")).map_err(|e| {
        CliError::new(
            Exit::BadInput,
            format!("'{value}' cannot be a certificate CN: {e}"),
        )
    })
}

/// A random positive 128-bit serial number.
pub(super) fn random_serial() -> Result<SerialNumber, CliError> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot read /dev/urandom: {e}")))?;
    // Positive and 16 bytes long: clear the top bit, set the next one.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::new(&bytes).map_err(|e| CliError::new(Exit::Failed, e.to_string()))
}

/// `days` from now (backdated by [`BACKDATE`]), never past `not_after_cap`.
pub(super) fn validity(days: u32, not_after_cap: Option<SystemTime>) -> Result<Validity, CliError> {
    if days == 0 {
        return Err(CliError::new(Exit::BadInput, "--days must be at least 1"));
    }
    let now = SystemTime::now();
    let mut end = now + Duration::from_secs(u64::from(days) * 86_400);
    if let Some(cap) = not_after_cap {
        if end > cap {
            eprintln!(
                "signerd: the certificate ends when the CA does ({})",
                Time::try_from(cap)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            );
            end = cap;
        }
    }
    let time = |t: SystemTime| {
        Time::try_from(t).map_err(|e| CliError::new(Exit::BadInput, format!("validity: {e}")))
    };
    Ok(Validity {
        not_before: time(now - BACKDATE)?,
        not_after: time(end)?,
    })
}

/// The certificate as PEM.
pub(super) fn cert_pem(cert: &Certificate) -> Result<String, CliError> {
    cert.to_pem(der::pem::LineEnding::LF)
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot encode the certificate: {e}")))
}

/// The CN of a name, if it has one.
pub(super) fn common_name_of(name: &Name) -> Option<String> {
    const CN: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == CN)
        .and_then(|atv| {
            der::asn1::Utf8StringRef::try_from(&atv.value)
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    der::asn1::PrintableStringRef::try_from(&atv.value)
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gun_common_names_escape_what_rfc4514_needs() {
        let name = common_name("example.com/acme/app").unwrap();
        assert_eq!(
            common_name_of(&name).as_deref(),
            Some("example.com/acme/app")
        );
        let odd = common_name("a,b+c").unwrap();
        assert_eq!(common_name_of(&odd).as_deref(), Some("a,b+c"));
    }

    #[test]
    fn validity_is_backdated_and_capped() {
        let cap = SystemTime::now() + Duration::from_secs(86_400);
        let v = validity(30, Some(cap)).unwrap();
        assert!(v.not_after.to_system_time() <= cap);
        assert!(v.not_before.to_system_time() < SystemTime::now());
        assert!(validity(0, None).is_err());
    }
}
