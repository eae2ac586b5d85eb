//! X.509 certificates stored as token objects, beside the keys they certify.

use cryptoki::object::{Attribute, CertificateType, ObjectClass};
use der::{Decode as _, Encode as _};

use crate::connection::Token;
use crate::date::today;
use crate::error::{refused_input, OpError, TokenError};
use crate::key::{public_key_from_spki, KeyId};
use crate::objects::{describe, TokenObject};

impl Token {
    /// Stores a DER X.509 certificate as a token object. With no `id`, its `CKA_ID` is the TUF
    /// key ID of its subject public key, the `CKA_ID` signerd gives that key's pair.
    pub fn store_certificate(
        &self,
        id: Option<Vec<u8>>,
        label: &str,
        certificate_der: &[u8],
    ) -> Result<TokenObject, TokenError> {
        let cert = x509_cert::Certificate::from_der(certificate_der).map_err(|e| {
            TokenError::InvalidRequest(format!("the certificate is not DER X.509: {e}"))
        })?;
        let tbs = &cert.tbs_certificate;
        let der = |what: &str, r: der::Result<Vec<u8>>| {
            r.map_err(|e| TokenError::InvalidRequest(format!("certificate {what}: {e}")))
        };
        let subject = der("subject", tbs.subject.to_der())?;
        let issuer = der("issuer", tbs.issuer.to_der())?;
        let serial = der("serial", tbs.serial_number.to_der())?;
        let id = match id.filter(|i| !i.is_empty()) {
            Some(id) => id,
            None => {
                let spki = der("public key", tbs.subject_public_key_info.to_der())?;
                let (alg, public) = public_key_from_spki(&spki).map_err(|e| {
                    TokenError::InvalidRequest(format!(
                        "no CKA_ID given and none can be derived from the certificate's key: {e}"
                    ))
                })?;
                KeyId::of_public_key(alg, &public).as_bytes().to_vec()
            }
        };
        let template = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Id(id),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Subject(subject),
            Attribute::Issuer(issuer),
            Attribute::SerialNumber(serial),
            Attribute::Value(certificate_der.to_vec()),
            Attribute::StartDate(today()),
        ];
        self.run(|conn, session| {
            let handle = session.create_object(&template)?;
            describe(conn, session, handle)?.ok_or_else(|| {
                OpError::Final(TokenError::Cryptoki(
                    "the new certificate has no class".into(),
                ))
            })
        })
        .map_err(refused_input)
    }
}
