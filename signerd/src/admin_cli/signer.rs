//! A key in the token as the signer `x509-cert`'s builders want: [`signature::Keypair`],
//! [`signature::Signer`] and the signature algorithm identifier. Each signature is one admin
//! `Sign` call; the private key never leaves the token.

use der::asn1::ObjectIdentifier;
use der::{Decode as _, Encode as _};
use signature::{Keypair, SignatureEncoding};
use signerd_proto::admin as pb;
use signerd_token::objects::ckm;
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SubjectPublicKeyInfoOwned,
};

use super::client::AdminClient;
use super::{CliError, Exit};

/// ecdsa-with-SHA256 (RFC 5758).
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// sha256WithRSAEncryption (RFC 4055).
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

/// Which X.509 signature a token key makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// ECDSA P-256 with SHA-256, DER signature.
    EcdsaSha256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaSha256,
}

/// A private key in the token, signing X.509 structures through the admin API.
pub struct TokenSigner<'c> {
    client: &'c AdminClient,
    key: pb::ObjectRef,
    public: PublicKey,
    scheme: Scheme,
}

/// The public half, as the builders encode it.
#[derive(Clone, Debug)]
pub struct PublicKey(SubjectPublicKeyInfoOwned);

impl EncodePublicKey for PublicKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::encode_msg(&self.0)?)
    }
}

impl<'c> TokenSigner<'c> {
    /// The signer for `private_key` (an object from FindObjects or GenerateKeyPair).
    pub fn new(
        client: &'c AdminClient,
        private_key: &pb::Object,
    ) -> Result<TokenSigner<'c>, CliError> {
        let scheme = match pb::KeyType::try_from(private_key.key_type) {
            Ok(pb::KeyType::EcP256) => Scheme::EcdsaSha256,
            Ok(pb::KeyType::Rsa) => Scheme::RsaSha256,
            _ => {
                return Err(CliError::new(
                    Exit::BadInput,
                    "certificates and CSRs are signed with ECDSA P-256 or RSA keys; this key is neither",
                ))
            }
        };
        let spki = SubjectPublicKeyInfoOwned::from_der(&private_key.public_key_spki).map_err(|e| {
            CliError::new(
                Exit::Failed,
                format!("the token gave no usable public key for this key ({e}); its public key object may be missing"),
            )
        })?;
        let key = private_key.r#ref.clone().ok_or_else(|| {
            CliError::new(
                Exit::Failed,
                "signerd returned an object without a reference",
            )
        })?;
        Ok(TokenSigner {
            client,
            key,
            public: PublicKey(spki),
            scheme,
        })
    }

    /// The DER SubjectPublicKeyInfo of the key.
    pub fn spki(&self) -> &SubjectPublicKeyInfoOwned {
        &self.public.0
    }
}

impl Keypair for TokenSigner<'_> {
    type VerifyingKey = PublicKey;

    fn verifying_key(&self) -> PublicKey {
        self.public.clone()
    }
}

impl DynSignatureAlgorithmIdentifier for TokenSigner<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(match self.scheme {
            Scheme::EcdsaSha256 => AlgorithmIdentifierOwned {
                oid: ECDSA_WITH_SHA256,
                parameters: None,
            },
            Scheme::RsaSha256 => AlgorithmIdentifierOwned {
                oid: SHA256_WITH_RSA,
                parameters: Some(der::asn1::Any::null()),
            },
        })
    }
}

impl signature::Signer<X509Signature> for TokenSigner<'_> {
    fn try_sign(&self, message: &[u8]) -> Result<X509Signature, signature::Error> {
        let mechanism = match self.scheme {
            Scheme::EcdsaSha256 => ckm::ECDSA_SHA256,
            Scheme::RsaSha256 => ckm::SHA256_RSA_PKCS,
        };
        let raw = self
            .client
            .sign(&self.key, mechanism, None, message)
            .map_err(|e| signature::Error::from_source(e.message))?;
        let bytes = match self.scheme {
            // The token gives raw r||s; X.509 wants the DER SEQUENCE.
            Scheme::EcdsaSha256 => p256::ecdsa::Signature::from_slice(&raw)?
                .to_der()
                .as_bytes()
                .to_vec(),
            Scheme::RsaSha256 => raw,
        };
        Ok(X509Signature(bytes.into_boxed_slice()))
    }
}

/// A signature as it goes into a certificate or CSR (DER ECDSA or raw RSA bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X509Signature(Box<[u8]>);

impl TryFrom<&[u8]> for X509Signature {
    type Error = signature::Error;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Ok(X509Signature(bytes.into()))
    }
}

impl From<X509Signature> for Box<[u8]> {
    fn from(s: X509Signature) -> Box<[u8]> {
        s.0
    }
}

impl SignatureEncoding for X509Signature {
    type Repr = Box<[u8]>;
}

impl spki::SignatureBitStringEncoding for X509Signature {
    fn to_bitstring(&self) -> der::Result<der::asn1::BitString> {
        der::asn1::BitString::from_bytes(&self.0)
    }
}

/// Checks the signature of a CSR (its proof of possession) with its own public key.
pub fn verify_csr(csr: &x509_cert::request::CertReq) -> Result<(), String> {
    let message = csr.info.to_der().map_err(|e| e.to_string())?;
    let signature = csr
        .signature
        .as_bytes()
        .ok_or("the CSR signature is not a whole number of bytes")?;
    let spki = csr.info.public_key.to_der().map_err(|e| e.to_string())?;
    let oid = csr.algorithm.oid;
    if oid == ECDSA_WITH_SHA256 {
        use p256::ecdsa::signature::Verifier as _;
        use p256::pkcs8::DecodePublicKey as _;
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
            .map_err(|e| format!("an ecdsa-with-SHA256 CSR needs a P-256 key: {e}"))?;
        let sig = p256::ecdsa::DerSignature::from_bytes(signature).map_err(|e| e.to_string())?;
        key.verify(&message, &sig)
            .map_err(|_| "the CSR's signature does not verify".to_string())
    } else if oid == SHA256_WITH_RSA {
        use rsa::pkcs8::DecodePublicKey as _;
        use sha2::Digest as _;
        let key = rsa::RsaPublicKey::from_public_key_der(&spki).map_err(|e| e.to_string())?;
        key.verify(
            rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            &sha2::Sha256::digest(&message),
            signature,
        )
        .map_err(|_| "the CSR's signature does not verify".to_string())
    } else {
        Err(format!(
            "CSR signature algorithm {oid} is not ecdsa-with-SHA256 or sha256WithRSAEncryption"
        ))
    }
}
