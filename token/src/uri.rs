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
    /// The token's PIN is in the URI itself (`pin-value`), where `ps`, shell history and config
    /// backups show it: `signerd serve` refuses it.
    #[error("the token URI carries the PIN inline (pin-value), where ps, shell history and config backups show it; put the PIN in a file (mode 0600) and name it with pin-source=file:/path/to/pin in the URI or token.pin_file (--pin-file), or use pin-source=env:VAR / token.pin_env")]
    InlinePin,
    /// The string does not start with `pkcs11:`.
    #[error("a PKCS#11 URI starts with 'pkcs11:', e.g. pkcs11:token=signerd?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path/to/pin")]
    Scheme,
    /// An attribute is not `name=value`.
    #[error("PKCS#11 URI attribute '{0}' is not name=value")]
    Malformed(Redacted),
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

/// Formats the URI back to RFC 7512 text that parses to the same token, module and PIN source,
/// except that a `pin-value` is written as `pin-value=REDACTED`: this is what logs and errors
/// show. Attributes a token selector ignores (`type`, `library-*`, `x-*`) are left out.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn enc<'a>(v: &'a str, set: &'static AsciiSet) -> impl fmt::Display + 'a {
            utf8_percent_encode(v, set)
        }
        f.write_str("pkcs11:")?;
        let mut sep = "";
        let mut path_attr = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            let r = write!(f, "{sep}{name}={value}");
            sep = ";";
            r
        };
        let texts = [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("serial", &self.serial),
            ("model", &self.model),
        ];
        for (name, value) in texts {
            if let Some(v) = value {
                path_attr(f, name, &enc(v, URI_VALUE))?;
            }
        }
        if let Some(slot) = self.slot_id {
            path_attr(f, "slot-id", &slot)?;
        }
        if let Some(label) = &self.object {
            path_attr(f, "object", &enc(label, URI_VALUE))?;
        }
        if let Some(id) = &self.id {
            let hex: String = id.iter().map(|b| format!("%{b:02x}")).collect();
            path_attr(f, "id", &hex)?;
        }
        let mut sep = "?";
        let mut query_attr = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            let r = write!(f, "{sep}{name}={value}");
            sep = "&";
            r
        };
        if let Some(module) = &self.module_path {
            query_attr(
                f,
                "module-path",
                &enc(&module.to_string_lossy(), QUERY_VALUE),
            )?;
        }
        match &self.pin_source {
            // `file://` + path, not `file:` + path: the parser strips `file://` first, so a
            // path that starts with `//` comes back as it was.
            Some(PinSource::File(path)) => query_attr(
                f,
                "pin-source",
                &format_args!("file://{}", enc(&path.to_string_lossy(), QUERY_VALUE)),
            )?,
            Some(PinSource::Env(var)) => query_attr(
                f,
                "pin-source",
                &format_args!("env:{}", enc(var, QUERY_VALUE)),
            )?,
            Some(PinSource::Value(_)) => query_attr(f, "pin-value", &REDACTED)?,
            None => {}
        }
        Ok(())
    }
}

impl Pkcs11Uri {
    /// Whether the PIN is in the URI itself (`pin-value`).
    pub fn inline_pin(&self) -> bool {
        matches!(self.pin_source, Some(PinSource::Value(_)))
    }

    /// Refuses a URI that carries its PIN inline ([`UriError::InlinePin`], which says where to
    /// put the PIN instead): what `signerd serve` checks its token URI with.
    pub fn refuse_inline_pin(&self) -> Result<(), UriError> {
        if self.inline_pin() {
            Err(UriError::InlinePin)
        } else {
            Ok(())
        }
    }

    /// URI text as a user wrote it (parsed or not), with every `pin-value` replaced by
    /// [`REDACTED`]: for messages that must quote text that may not parse.
    pub fn redact(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        loop {
            // Attributes start after `:`, `;`, `?` or `&`; a pin value runs to the next of
            // `;`, `?`, `&`.
            let Some(at) = find_pin_value(rest) else {
                out.push_str(rest);
                return out;
            };
            let value_start = at + "pin-value=".len();
            out.push_str(&rest[..value_start]);
            out.push_str(REDACTED);
            let tail = &rest[value_start..];
            let end = tail.find([';', '?', '&']).unwrap_or(tail.len());
            rest = &tail[end..];
        }
    }
}

/// The byte offset of the next `pin-value=` attribute (any case) in `text`.
fn find_pin_value(text: &str) -> Option<usize> {
    const NAME: &str = "pin-value=";
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(NAME) {
        let at = from + i;
        let starts_attr = at == 0 || matches!(lower.as_bytes()[at - 1], b':' | b';' | b'?' | b'&');
        if starts_attr {
            return Some(at);
        }
        from = at + NAME.len();
    }
    None
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

/// Characters left as they are in query values (RFC 7512 `pk11-qchar` adds `/`, `:`, `@`), so
/// module paths and PIN files stay readable.
const QUERY_VALUE: &AsciiSet = &URI_VALUE.remove(b'/').remove(b':').remove(b'@');

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
        .ok_or_else(|| UriError::Malformed(Redacted::attribute(attr)))
}

/// What a PIN value is replaced with wherever a URI is shown.
pub const REDACTED: &str = "REDACTED";

/// URI text quoted in an error, with anything that may be a PIN value replaced by [`REDACTED`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    /// One attribute as written (without `=`): a mistyped `pin-value` (`pin-value:1234`) is
    /// still a PIN, so anything that starts like one is not quoted.
    fn attribute(attr: &str) -> Redacted {
        if attr.trim().to_ascii_lowercase().starts_with("pin") {
            Redacted(format!("pin... ({REDACTED})"))
        } else {
            Redacted(attr.to_owned())
        }
    }
}

impl From<&str> for Redacted {
    fn from(text: &str) -> Redacted {
        Redacted(text.to_owned())
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
            Err(UriError::Malformed(Redacted::from("token")))
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
    fn display_formats_a_uri_that_parses_back_the_same() {
        for text in [
            "pkcs11:token=signer%20d;manufacturer=SoftHSM%20project;serial=abc;model=m;slot-id=3;object=root%40x%2Fy;id=%01%ff?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
            "pkcs11:?module-name=softhsm2&pin-source=env:MY_PIN",
            "pkcs11:token=;id=?pin-source=file:////double/slash",
            "pkcs11:",
        ] {
            let uri: Pkcs11Uri = text.parse().unwrap();
            let shown = uri.to_string();
            assert_eq!(shown.parse::<Pkcs11Uri>().unwrap(), uri, "{text} -> {shown}");
        }
        let uri: Pkcs11Uri = "pkcs11:token=t?module-path=/m.so&pin-source=file:/run/pin"
            .parse()
            .unwrap();
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=t?module-path=/m.so&pin-source=file:///run/pin"
        );
    }

    #[test]
    fn inline_pins_are_found_refused_and_never_shown() {
        let uri: Pkcs11Uri = "pkcs11:token=t?module-path=/m.so&pin-value=123456"
            .parse()
            .unwrap();
        assert!(uri.inline_pin());
        assert_eq!(uri.refuse_inline_pin(), Err(UriError::InlinePin));
        let message = UriError::InlinePin.to_string();
        assert!(
            message.contains("pin-source=file:") && message.contains("token.pin_file"),
            "{message}"
        );
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=t?module-path=/m.so&pin-value=REDACTED"
        );
        assert!(!format!("{uri:?}").contains("123456"));
        let file: Pkcs11Uri = "pkcs11:token=t?pin-source=file:/p".parse().unwrap();
        assert!(!file.inline_pin());
        assert_eq!(file.refuse_inline_pin(), Ok(()));
    }

    #[test]
    fn raw_uri_text_is_redacted_wherever_a_pin_value_may_be() {
        assert_eq!(
            Pkcs11Uri::redact("pkcs11:token=t?pin-value=123456&module-path=/m.so"),
            "pkcs11:token=t?pin-value=REDACTED&module-path=/m.so"
        );
        assert_eq!(
            Pkcs11Uri::redact("pkcs11:PIN-VALUE=1;x=2?pin-value=3"),
            "pkcs11:PIN-VALUE=REDACTED;x=2?pin-value=REDACTED"
        );
        assert_eq!(
            Pkcs11Uri::redact("pkcs11:object=my-pin-value=1"),
            "pkcs11:object=my-pin-value=1"
        );
        // Errors that quote URI text: a mistyped pin-value is not quoted.
        let err = "pkcs11:token=t?pin-value:123456"
            .parse::<Pkcs11Uri>()
            .unwrap_err();
        assert!(!err.to_string().contains("123456"), "{err}");
        let dup = "pkcs11:?pin-value=123456&pin-value=654321"
            .parse::<Pkcs11Uri>()
            .unwrap_err();
        assert!(!dup.to_string().contains("123456") && !dup.to_string().contains("654321"));
        let both = "pkcs11:?pin-value=123456&pin-source=x://y"
            .parse::<Pkcs11Uri>()
            .unwrap_err()
            .to_string();
        assert!(!both.contains("123456"), "{both}");
    }

    #[test]
    fn debug_never_shows_a_pin_value() {
        let uri: Pkcs11Uri = "pkcs11:token=t?pin-value=123456".parse().unwrap();
        assert!(!format!("{uri:?}").contains("123456"));
    }
}
