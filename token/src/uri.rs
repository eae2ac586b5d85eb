//! PKCS#11 URIs (RFC 7512): parsed, they name a token, the module that serves it, and the PIN
//! source; formatted (`ObjectUri`), they name one object in a token for the admin API.
//!
//! `pkcs11:token=signerd;manufacturer=SoftHSM%20project?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/signerd/pin`
//!
//! Path attributes (`;`-separated) select the token; query attributes (`&`-separated) say how to
//! reach it. signerd also accepts `pin-source=env:VAR` (an extension; RFC 7512 defines only
//! file URIs there) so container deployments can pass the PIN in the environment.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::pin::PinSource;

/// A token selector and module location parsed from a PKCS#11 URI.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token`: the token label.
    pub token: Option<String>,
    /// `manufacturer`: the token manufacturer ID.
    pub manufacturer: Option<String>,
    /// `serial`: the token serial number.
    pub serial: Option<String>,
    /// `model`: the token model.
    pub model: Option<String>,
    /// `slot-id`: the slot number (a last resort: slot numbers can change between runs).
    pub slot_id: Option<u64>,
    /// `object`: an object label (used by the admin tools, ignored when selecting a token).
    pub object: Option<String>,
    /// `id`: an object ID (raw bytes).
    pub id: Option<Vec<u8>>,
    /// `module-path`: the PKCS#11 module to load.
    pub module_path: Option<PathBuf>,
    /// `pin-source` (or `pin-value`): where the user PIN comes from.
    pub pin_source: Option<PinSource>,
}

/// Why a PKCS#11 URI was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UriError {
    /// The string does not start with `pkcs11:`.
    #[error("a PKCS#11 URI starts with 'pkcs11:', e.g. pkcs11:token=signerd?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path/to/pin")]
    Scheme,
    /// An attribute is not `name=value`.
    #[error("PKCS#11 URI attribute '{0}' is not name=value")]
    Malformed(String),
    /// An attribute is not one signerd understands.
    #[error("unknown PKCS#11 URI attribute '{0}'; path attributes: token, manufacturer, serial, model, slot-id, object, id, type; query attributes: module-path, module-name, pin-source, pin-value")]
    Unknown(String),
    /// A value is not valid for its attribute.
    #[error("PKCS#11 URI attribute '{name}' has an invalid value: {reason}")]
    Value {
        /// The attribute.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An attribute appears twice.
    #[error("PKCS#11 URI attribute '{0}' appears twice")]
    Duplicate(String),
}

impl FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.trim().strip_prefix("pkcs11:").ok_or(UriError::Scheme)?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut uri = Pkcs11Uri::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = split_attr(attr)?;
            match name {
                "token" => set(&mut uri.token, name, text(name, value)?)?,
                "manufacturer" => set(&mut uri.manufacturer, name, text(name, value)?)?,
                "serial" => set(&mut uri.serial, name, text(name, value)?)?,
                "model" => set(&mut uri.model, name, text(name, value)?)?,
                "object" => set(&mut uri.object, name, text(name, value)?)?,
                "id" => set(&mut uri.id, name, percent_decode_str(value).collect())?,
                "slot-id" => {
                    let n = value.parse().map_err(|_| UriError::Value {
                        name: name.into(),
                        reason: format!("'{value}' is not a slot number"),
                    })?;
                    set(&mut uri.slot_id, name, n)?
                }
                // Accepted for compatibility with URIs copied from other tools; a token
                // selector does not use them.
                "type"
                | "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer" => {}
                other if other.starts_with("x-") => {}
                other => return Err(UriError::Unknown(other.to_owned())),
            }
        }
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = split_attr(attr)?;
            match name {
                "module-path" => set(
                    &mut uri.module_path,
                    name,
                    PathBuf::from(text(name, value)?),
                )?,
                "module-name" => {
                    let module = text(name, value)?;
                    set(&mut uri.module_path, name, module_name_to_path(&module))?
                }
                "pin-source" => {
                    let source =
                        text(name, value)?
                            .parse()
                            .map_err(|e: String| UriError::Value {
                                name: name.into(),
                                reason: e,
                            })?;
                    set(&mut uri.pin_source, name, source)?
                }
                "pin-value" => {
                    let pin = text(name, value)?;
                    set(&mut uri.pin_source, name, PinSource::Value(pin.into()))?
                }
                other if other.starts_with("x-") => {}
                other => return Err(UriError::Unknown(other.to_owned())),
            }
        }
        Ok(uri)
    }
}

impl Pkcs11Uri {
    /// A short description of which token this URI selects, for messages.
    pub fn token_selector(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &self.token {
            parts.push(format!("token={t}"));
        }
        if let Some(m) = &self.manufacturer {
            parts.push(format!("manufacturer={m}"));
        }
        if let Some(s) = &self.serial {
            parts.push(format!("serial={s}"));
        }
        if let Some(m) = &self.model {
            parts.push(format!("model={m}"));
        }
        if let Some(s) = self.slot_id {
            parts.push(format!("slot-id={s}"));
        }
        if parts.is_empty() {
            "the first initialized token".to_owned()
        } else {
            parts.join(";")
        }
    }
}

/// Shows the URI without any PIN value.
impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Uri")
            .field("token", &self.token_selector())
            .field("module_path", &self.module_path)
            .field("pin_source", &self.pin_source)
            .finish()
    }
}

/// The RFC 7512 URI of one object in one token:
/// `pkcs11:token=..;manufacturer=..;serial=..;model=..;id=%..;object=..;type=..`.
pub(crate) struct ObjectUri<'a> {
    /// The token label.
    pub(crate) token: &'a str,
    /// The token manufacturer.
    pub(crate) manufacturer: &'a str,
    /// The token serial number.
    pub(crate) serial: &'a str,
    /// The token model.
    pub(crate) model: &'a str,
    /// `CKA_ID`, always percent-encoded byte by byte.
    pub(crate) id: &'a [u8],
    /// `CKA_LABEL`; left out when `None` or empty.
    pub(crate) object: Option<&'a str>,
    /// The `type` value (`private`, `public`, `cert`).
    pub(crate) kind: &'a str,
}

/// Characters left as they are in URI attribute values (RFC 7512 `pk11-pchar`, conservatively).
const URI_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl fmt::Display for ObjectUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn enc(v: &str) -> impl fmt::Display + '_ {
            utf8_percent_encode(v, URI_VALUE)
        }
        write!(
            f,
            "pkcs11:token={};manufacturer={};serial={};model={};id=",
            enc(self.token),
            enc(self.manufacturer),
            enc(self.serial),
            enc(self.model),
        )?;
        for b in self.id {
            write!(f, "%{b:02x}")?;
        }
        if let Some(label) = self.object.filter(|l| !l.is_empty()) {
            write!(f, ";object={}", enc(label))?;
        }
        write!(f, ";type={}", self.kind)
    }
}

fn split_attr(attr: &str) -> Result<(&str, &str), UriError> {
    attr.split_once('=')
        .ok_or_else(|| UriError::Malformed(attr.to_owned()))
}

fn text(name: &str, value: &str) -> Result<String, UriError> {
    percent_decode_str(value)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| UriError::Value {
            name: name.into(),
            reason: "not UTF-8".into(),
        })
}

fn set<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), UriError> {
    if slot.is_some() {
        return Err(UriError::Duplicate(name.to_owned()));
    }
    *slot = Some(value);
    Ok(())
}

/// RFC 7512 `module-name`: a library name the platform resolves (`softhsm2` -> `libsofthsm2.so`).
fn module_name_to_path(name: &str) -> PathBuf {
    if name.contains('/') || name.ends_with(".so") {
        PathBuf::from(name)
    } else {
        PathBuf::from(format!("lib{name}.so"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_module_and_pin_source() {
        let uri: Pkcs11Uri = "pkcs11:token=signer%20d;serial=abc?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin"
            .parse()
            .unwrap();
        assert_eq!(uri.token.as_deref(), Some("signer d"));
        assert_eq!(uri.serial.as_deref(), Some("abc"));
        assert_eq!(
            uri.module_path,
            Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(uri.pin_source, Some(PinSource::File("/run/pin".into())));
    }

    #[test]
    fn parses_env_pin_and_object_id() {
        let uri: Pkcs11Uri = "pkcs11:id=%01%ff;object=root?pin-source=env:MY_PIN"
            .parse()
            .unwrap();
        assert_eq!(uri.id, Some(vec![1, 0xff]));
        assert_eq!(uri.object.as_deref(), Some("root"));
        assert_eq!(uri.pin_source, Some(PinSource::Env("MY_PIN".into())));
        assert_eq!(uri.token_selector(), "the first initialized token");
    }

    #[test]
    fn refuses_bad_uris_with_reasons() {
        assert_eq!("token=x".parse::<Pkcs11Uri>(), Err(UriError::Scheme));
        assert_eq!(
            "pkcs11:tokn=x".parse::<Pkcs11Uri>(),
            Err(UriError::Unknown("tokn".into()))
        );
        assert_eq!(
            "pkcs11:token".parse::<Pkcs11Uri>(),
            Err(UriError::Malformed("token".into()))
        );
        assert_eq!(
            "pkcs11:token=a;token=b".parse::<Pkcs11Uri>(),
            Err(UriError::Duplicate("token".into()))
        );
        assert!(matches!(
            "pkcs11:slot-id=x".parse::<Pkcs11Uri>(),
            Err(UriError::Value { .. })
        ));
        assert!(matches!(
            "pkcs11:?pin-source=http://x".parse::<Pkcs11Uri>(),
            Err(UriError::Value { .. })
        ));
    }

    #[test]
    fn object_uris_format_and_parse_back() {
        let uri = ObjectUri {
            token: "signerd test",
            manufacturer: "SoftHSM project",
            serial: "abc",
            model: "SoftHSM v2",
            id: &[0x01, 0xff],
            object: Some("root@example.com/org/app"),
            kind: "cert",
        }
        .to_string();
        assert_eq!(
            uri,
            "pkcs11:token=signerd%20test;manufacturer=SoftHSM%20project;serial=abc;model=SoftHSM%20v2;id=%01%ff;object=root%40example.com%2Forg%2Fapp;type=cert"
        );
        let parsed: Pkcs11Uri = uri.parse().unwrap();
        assert_eq!(parsed.token.as_deref(), Some("signerd test"));
        assert_eq!(parsed.id, Some(vec![0x01, 0xff]));
        assert_eq!(parsed.object.as_deref(), Some("root@example.com/org/app"));
        let unlabelled = ObjectUri {
            object: Some(""),
            id: &[],
            kind: "private",
            ..ObjectUri {
                token: "t",
                manufacturer: "m",
                serial: "s",
                model: "x",
                id: &[],
                object: None,
                kind: "",
            }
        };
        assert_eq!(
            unlabelled.to_string(),
            "pkcs11:token=t;manufacturer=m;serial=s;model=x;id=;type=private"
        );
    }

    #[test]
    fn debug_never_shows_a_pin_value() {
        let uri: Pkcs11Uri = "pkcs11:token=t?pin-value=123456".parse().unwrap();
        assert!(!format!("{uri:?}").contains("123456"));
    }
}
