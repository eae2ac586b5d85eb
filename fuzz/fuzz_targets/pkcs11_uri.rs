//! The PKCS#11 URI parser, with any text a config file, flag or admin request carries: it
//! answers Ok or Err (never panics); what parses formats to a URI that parses to the same
//! token, module and PIN source; no `Display`, `Debug` or error shows a `pin-value`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signerd_token::{PinSource, Pkcs11Uri};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let redacted = Pkcs11Uri::redact(text);
    assert_eq!(Pkcs11Uri::redact(&redacted), redacted, "{text:?}");
    match text.parse::<Pkcs11Uri>() {
        Ok(uri) => {
            let shown = uri.to_string();
            let again: Pkcs11Uri = shown
                .parse()
                .unwrap_or_else(|e| panic!("{text:?} formats as {shown:?}, which fails: {e}"));
            if uri.inline_pin() {
                // The formatted URI carries the placeholder, never the PIN itself.
                assert!(again.inline_pin());
                assert!(shown.ends_with("pin-value=REDACTED"), "{shown}");
                let mut without = uri.clone();
                without.pin_source = None;
                let mut again_without = again.clone();
                again_without.pin_source = None;
                assert_eq!(again_without, without, "{text:?} -> {shown:?}");
                assert!(matches!(uri.pin_source, Some(PinSource::Value(_))));
                assert!(uri.refuse_inline_pin().is_err());
            } else {
                assert_eq!(again, uri, "{text:?} -> {shown:?}");
                assert_eq!(again.to_string(), shown);
                assert!(uri.refuse_inline_pin().is_ok());
            }
            let _ = format!("{uri:?}");
            let _ = uri.token_selector();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
