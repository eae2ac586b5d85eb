//! The requests that carry secrets: a PIN (`Login`) and a private key (`ImportPrivateKey`).
//!
//! They encode exactly as the generated `signerd.admin.v1` messages do, but hold the secret in
//! a [`Zeroizing`] buffer, so it is wiped when the request (and each retry's copy) is dropped,
//! and their `Debug` never shows it.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};
use zeroize::Zeroizing;

/// `LoginRequest` whose PIN is wiped when the message is dropped.
#[derive(Clone, Default)]
pub struct LoginRequest {
    /// `UserType` as its wire number.
    pub user_type: i32,
    /// The PIN, for the length of one call.
    pub pin: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user_type", &self.user_type)
            .field("pin", &"[redacted]")
            .finish()
    }
}

impl Message for LoginRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.user_type != 0 {
            encoding::int32::encode(1, &self.user_type, buf);
        }
        if !self.pin.is_empty() {
            encoding::bytes::encode(2, &*self.pin, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Sent, never received.
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        (if self.user_type != 0 {
            encoding::int32::encoded_len(1, &self.user_type)
        } else {
            0
        }) + if self.pin.is_empty() {
            0
        } else {
            encoding::bytes::encoded_len(2, &*self.pin)
        }
    }

    fn clear(&mut self) {
        *self = LoginRequest::default();
    }
}

/// `ImportPrivateKeyRequest` whose PKCS#8 bytes are wiped when the message is dropped.
#[derive(Clone, Default)]
pub struct ImportPrivateKeyRequest {
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// `CKA_LABEL`.
    pub label: String,
    /// `KeyType` as its wire number.
    pub key_type: i32,
    /// Unencrypted PKCS#8 DER.
    pub pkcs8_der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ImportPrivateKeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportPrivateKeyRequest")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("key_type", &self.key_type)
            .field("pkcs8_der", &"[redacted]")
            .finish()
    }
}

impl Message for ImportPrivateKeyRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.id.is_empty() {
            encoding::bytes::encode(1, &self.id, buf);
        }
        if !self.label.is_empty() {
            encoding::string::encode(2, &self.label, buf);
        }
        if self.key_type != 0 {
            encoding::int32::encode(3, &self.key_type, buf);
        }
        if !self.pkcs8_der.is_empty() {
            encoding::bytes::encode(4, &*self.pkcs8_der, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        let mut n = 0;
        if !self.id.is_empty() {
            n += encoding::bytes::encoded_len(1, &self.id);
        }
        if !self.label.is_empty() {
            n += encoding::string::encoded_len(2, &self.label);
        }
        if self.key_type != 0 {
            n += encoding::int32::encoded_len(3, &self.key_type);
        }
        if !self.pkcs8_der.is_empty() {
            n += encoding::bytes::encoded_len(4, &*self.pkcs8_der);
        }
        n
    }

    fn clear(&mut self) {
        *self = ImportPrivateKeyRequest::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signerd_proto::admin;

    #[test]
    fn secret_requests_encode_like_the_generated_ones() {
        let ours = LoginRequest {
            user_type: 2,
            pin: Zeroizing::new(b"0102".to_vec()),
        };
        let generated = admin::LoginRequest {
            user_type: 2,
            pin: b"0102".to_vec(),
        };
        assert_eq!(ours.encode_to_vec(), generated.encode_to_vec());
        assert!(!format!("{ours:?}").contains("0102"));

        let ours = ImportPrivateKeyRequest {
            id: vec![2],
            label: "root".into(),
            key_type: 1,
            pkcs8_der: Zeroizing::new(vec![0x30, 0x01, 0x00]),
        };
        let generated = admin::ImportPrivateKeyRequest {
            id: vec![2],
            label: "root".into(),
            key_type: 1,
            pkcs8_der: vec![0x30, 0x01, 0x00],
        };
        assert_eq!(ours.encode_to_vec(), generated.encode_to_vec());
        assert_eq!(ours.encoded_len(), generated.encoded_len());
        assert!(!format!("{ours:?}").contains("48, 1, 0"));
    }
}
