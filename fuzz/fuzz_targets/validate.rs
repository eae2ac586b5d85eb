//! Request validation at the Notary edge: any bytes as each request message notary-server
//! sends (prost decodes them, as tonic would), then the checks signerd runs before anything
//! reaches the token: GUN and role (`edge::validate`), algorithm name, key ID. None may panic,
//! an accepted name is what the rules say, and a refusal's message, which reaches logs and the
//! caller, carries no control character whatever the request held.
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use signerd::edge::validate::{self, MAX_NAME_BYTES};
use signerd_proto::notary::{CreateKeyRequest, KeyId as KeyIdMsg, SignatureRequest};
use signerd_token::{KeyAlgorithm, KeyId};

fn no_controls(message: &str) {
    assert!(
        !message.chars().any(char::is_control),
        "a control character in {message:?}"
    );
}

fn check_name(what: &str, value: &str) {
    let ok = value.len() <= MAX_NAME_BYTES && value.bytes().all(|b| b.is_ascii_graphic());
    match validate::name(what, value) {
        Ok(()) => assert!(ok, "{what} {value:?} accepted"),
        Err(e) => {
            assert!(!ok, "{what} {value:?} refused: {e}");
            no_controls(&e.to_string());
        }
    }
}

fn check_key_id(id: &str) {
    match KeyId::from_str(id) {
        Ok(parsed) => assert_eq!(parsed.to_string(), id.to_ascii_lowercase()),
        Err(e) => no_controls(&e.to_string()),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = CreateKeyRequest::decode(data) {
        check_name("gun", &req.gun);
        check_name("role", &req.role);
        if let Err(e) = validate::usage(&req.gun, &req.role) {
            no_controls(&e.to_string());
        }
        match KeyAlgorithm::from_str(&req.algorithm) {
            Ok(a) => assert_eq!(KeyAlgorithm::from_str(a.as_str()).ok(), Some(a)),
            Err(e) => no_controls(&e.to_string()),
        }
    }
    if let Ok(req) = KeyIdMsg::decode(data) {
        check_key_id(&req.id);
    }
    if let Ok(req) = SignatureRequest::decode(data) {
        if let Some(id) = &req.key_id {
            check_key_id(&id.id);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_name("gun", text);
    }
});
