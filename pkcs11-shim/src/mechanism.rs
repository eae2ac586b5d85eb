//! Signing mechanisms: which the shim offers, how their parameters parse, and what goes to
//! signerd for each.
//!
//! Hash-then-sign mechanisms (`CKM_ECDSA_SHA256`, `CKM_SHA256_RSA_PKCS`,
//! `CKM_SHA256_RSA_PKCS_PSS`) are hashed here, incrementally, and signed by signerd with the
//! raw mechanism: `C_SignUpdate` streams any amount of data, and the shim can offer
//! `CKM_ECDSA_SHA256` on tokens that lack it (SoftHSM 2.6).

use cryptoki_sys::*;
use sha2::{Digest, Sha256};
use signerd_proto::admin::{KeyType, MechanismInfo, PssParams};
use zeroize::Zeroizing;

use crate::error::Error;

/// Most data the shim buffers for one signature with a mechanism it cannot hash itself
/// (EdDSA, raw digests): it must fit in one gRPC message to signerd.
pub const MAX_BUFFERED: usize = 1024 * 1024;

/// DER prefix of a SHA-256 `DigestInfo` (PKCS#1 v1.5 signatures).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Every signing mechanism the shim offers (when signerd can do the raw one underneath).
pub const SIGN_MECHANISMS: [CK_MECHANISM_TYPE; 7] = [
    CKM_ECDSA,
    CKM_ECDSA_SHA256,
    CKM_EDDSA,
    CKM_RSA_PKCS,
    CKM_SHA256_RSA_PKCS,
    CKM_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
];

/// Key generation mechanisms, each with the raw signing mechanism its keys use.
pub const KEYGEN_MECHANISMS: [(CK_MECHANISM_TYPE, CK_MECHANISM_TYPE); 3] = [
    (CKM_EC_KEY_PAIR_GEN, CKM_ECDSA),
    (CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA),
    (CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS),
];

/// The raw mechanism signerd performs for an offered one.
pub fn raw_of(mechanism: CK_MECHANISM_TYPE) -> CK_MECHANISM_TYPE {
    match mechanism {
        CKM_ECDSA_SHA256 => CKM_ECDSA,
        CKM_SHA256_RSA_PKCS => CKM_RSA_PKCS,
        CKM_SHA256_RSA_PKCS_PSS => CKM_RSA_PKCS_PSS,
        other => other,
    }
}

/// The mechanisms the shim offers, given what signerd lists: a signing mechanism when its raw
/// form is listed, a key generation mechanism when signerd lists it or its keys' raw signing
/// mechanism.
pub fn offered(listed: &[MechanismInfo]) -> Vec<(CK_MECHANISM_TYPE, CK_MECHANISM_INFO)> {
    let find = |m: CK_MECHANISM_TYPE| listed.iter().find(|i| i.mechanism == m as u64);
    // What the token says of itself (hardware or not) carries over; what the shim does with
    // the mechanism (sign, generate) is the shim's to say.
    let info = |i: &MechanismInfo, flags: CK_FLAGS| CK_MECHANISM_INFO {
        ulMinKeySize: i.min_key_bits as CK_ULONG,
        ulMaxKeySize: i.max_key_bits as CK_ULONG,
        flags: (i.flags as CK_FLAGS & CKF_HW) | flags,
    };
    let ec_flags = |m| match m {
        CKM_ECDSA | CKM_ECDSA_SHA256 | CKM_EC_KEY_PAIR_GEN => {
            CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS
        }
        _ => 0,
    };
    let mut out = Vec::new();
    for m in SIGN_MECHANISMS {
        if let Some(raw) = find(raw_of(m)) {
            out.push((m, info(raw, CKF_SIGN | ec_flags(m))));
        }
    }
    for (gen, raw) in KEYGEN_MECHANISMS {
        if let Some(i) = find(gen).or_else(|| find(raw)) {
            out.push((gen, info(i, CKF_GENERATE_KEY_PAIR | ec_flags(gen))));
        }
    }
    out
}

/// PSS parameters as `CK_RSA_PKCS_PSS_PARAMS` gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pss {
    hash: CK_MECHANISM_TYPE,
    mgf: CK_RSA_PKCS_MGF_TYPE,
    salt_len: CK_ULONG,
}

/// A signing mechanism with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignMechanism {
    /// ECDSA over a digest the caller made.
    Ecdsa,
    /// ECDSA over SHA-256 of the data (hashed here).
    EcdsaSha256,
    /// Pure Ed25519 over the data.
    Eddsa,
    /// RSA PKCS#1 v1.5 over a `DigestInfo` the caller made.
    RsaPkcs,
    /// RSA PKCS#1 v1.5 over SHA-256 of the data (hashed here).
    Sha256RsaPkcs,
    /// RSA-PSS over a digest the caller made.
    RsaPkcsPss(Pss),
    /// RSA-PSS over SHA-256 of the data (hashed here).
    Sha256RsaPkcsPss(Pss),
}

impl SignMechanism {
    /// Parses `mechanism` and its parameter bytes (copied from `pParameter`).
    pub fn parse(mechanism: CK_MECHANISM_TYPE, param: &[u8]) -> Result<SignMechanism, Error> {
        let no_params = |m: SignMechanism| {
            if param.is_empty() {
                Ok(m)
            } else {
                Err(Error::MechanismParamInvalid(
                    "this mechanism takes no parameters",
                ))
            }
        };
        match mechanism {
            CKM_ECDSA => no_params(SignMechanism::Ecdsa),
            CKM_ECDSA_SHA256 => no_params(SignMechanism::EcdsaSha256),
            CKM_RSA_PKCS => no_params(SignMechanism::RsaPkcs),
            CKM_SHA256_RSA_PKCS => no_params(SignMechanism::Sha256RsaPkcs),
            CKM_EDDSA => {
                // CK_EDDSA_PARAMS { CK_BBOOL phFlag; CK_ULONG ulContextDataLen; CK_BYTE_PTR }:
                // only pure Ed25519 without a context is Ed25519 as TUF and signerd know it.
                if !param.is_empty() {
                    let ulong = std::mem::size_of::<CK_ULONG>();
                    let pre_hash = param.first().copied().unwrap_or(0) != 0;
                    let context_len = param
                        .get(ulong..2 * ulong)
                        .and_then(|b| b.try_into().ok())
                        .map(CK_ULONG::from_ne_bytes)
                        .ok_or(Error::MechanismParamInvalid("CK_EDDSA_PARAMS too short"))?;
                    if pre_hash || context_len != 0 {
                        return Err(Error::MechanismParamInvalid(
                            "only pure Ed25519 (no pre-hash, no context) is supported",
                        ));
                    }
                }
                Ok(SignMechanism::Eddsa)
            }
            CKM_RSA_PKCS_PSS | CKM_SHA256_RSA_PKCS_PSS => {
                let ulong = std::mem::size_of::<CK_ULONG>();
                if param.len() != 3 * ulong {
                    return Err(Error::MechanismParamInvalid(
                        "PSS needs CK_RSA_PKCS_PSS_PARAMS",
                    ));
                }
                let field = |i: usize| {
                    param[i * ulong..(i + 1) * ulong]
                        .try_into()
                        .map(CK_ULONG::from_ne_bytes)
                        .map_err(|_| Error::MechanismParamInvalid("PSS parameters"))
                };
                let pss = Pss {
                    hash: field(0)?,
                    mgf: field(1)?,
                    salt_len: field(2)?,
                };
                if mechanism == CKM_SHA256_RSA_PKCS_PSS && pss.hash != CKM_SHA256 {
                    return Err(Error::MechanismParamInvalid(
                        "CKM_SHA256_RSA_PKCS_PSS needs hashAlg = CKM_SHA256",
                    ));
                }
                Ok(if mechanism == CKM_RSA_PKCS_PSS {
                    SignMechanism::RsaPkcsPss(pss)
                } else {
                    SignMechanism::Sha256RsaPkcsPss(pss)
                })
            }
            other => Err(Error::MechanismInvalid(other)),
        }
    }

    /// The `CKM_*` value.
    pub fn mechanism_type(&self) -> CK_MECHANISM_TYPE {
        match self {
            SignMechanism::Ecdsa => CKM_ECDSA,
            SignMechanism::EcdsaSha256 => CKM_ECDSA_SHA256,
            SignMechanism::Eddsa => CKM_EDDSA,
            SignMechanism::RsaPkcs => CKM_RSA_PKCS,
            SignMechanism::Sha256RsaPkcs => CKM_SHA256_RSA_PKCS,
            SignMechanism::RsaPkcsPss(_) => CKM_RSA_PKCS_PSS,
            SignMechanism::Sha256RsaPkcsPss(_) => CKM_SHA256_RSA_PKCS_PSS,
        }
    }

    /// The key type this mechanism signs with.
    pub fn key_type(&self) -> KeyType {
        match self {
            SignMechanism::Ecdsa | SignMechanism::EcdsaSha256 => KeyType::EcP256,
            SignMechanism::Eddsa => KeyType::Ed25519,
            _ => KeyType::Rsa,
        }
    }

    /// The PSS parameters for signerd, if any.
    fn pss(&self) -> Option<PssParams> {
        match self {
            SignMechanism::RsaPkcsPss(p) | SignMechanism::Sha256RsaPkcsPss(p) => Some(PssParams {
                hash_mechanism: p.hash as u64,
                mgf: p.mgf as u64,
                salt_length: p.salt_len as u64,
            }),
            _ => None,
        }
    }

    fn hashes_here(&self) -> bool {
        matches!(
            self,
            SignMechanism::EcdsaSha256
                | SignMechanism::Sha256RsaPkcs
                | SignMechanism::Sha256RsaPkcsPss(_)
        )
    }
}

/// The data of a signature being made: hashed as it comes, or buffered.
enum Input {
    Hash(Sha256),
    Buffer(Zeroizing<Vec<u8>>),
}

/// A signing operation started by `C_SignInit`.
pub struct SignOperation {
    mechanism: SignMechanism,
    input: Input,
    /// `C_SignUpdate` was called: only `C_SignFinal` may end the operation.
    pub multipart: bool,
}

impl SignOperation {
    /// Starts an operation.
    pub fn new(mechanism: SignMechanism) -> SignOperation {
        let input = if mechanism.hashes_here() {
            Input::Hash(Sha256::new())
        } else {
            Input::Buffer(Zeroizing::new(Vec::new()))
        };
        SignOperation {
            mechanism,
            input,
            multipart: false,
        }
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) -> Result<(), Error> {
        match &mut self.input {
            Input::Hash(h) => h.update(data),
            Input::Buffer(b) => {
                if b.len() + data.len() > MAX_BUFFERED {
                    return Err(Error::DataLenRange(
                        "more than 1 MiB to sign with a mechanism that does not hash",
                    ));
                }
                b.extend_from_slice(data);
            }
        }
        Ok(())
    }

    /// What signerd signs: `(raw mechanism, data, PSS parameters)`.
    pub fn request(&self) -> Result<(CK_MECHANISM_TYPE, Vec<u8>, Option<PssParams>), Error> {
        let data = match &self.input {
            Input::Hash(h) => {
                let digest = h.clone().finalize();
                match self.mechanism {
                    SignMechanism::Sha256RsaPkcs => [SHA256_DIGEST_INFO, &digest].concat(),
                    _ => digest.to_vec(),
                }
            }
            Input::Buffer(b) => {
                if b.is_empty() && self.mechanism != SignMechanism::Eddsa {
                    return Err(Error::DataLenRange("nothing to sign"));
                }
                b.to_vec()
            }
        };
        Ok((
            raw_of(self.mechanism.mechanism_type()),
            data,
            self.mechanism.pss(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pss_bytes(hash: CK_ULONG, mgf: CK_ULONG, salt: CK_ULONG) -> Vec<u8> {
        [hash, mgf, salt]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }

    #[test]
    fn hashed_mechanisms_send_the_digest_with_the_raw_mechanism() {
        let mut op = SignOperation::new(SignMechanism::parse(CKM_ECDSA_SHA256, &[]).unwrap());
        op.update(b"hello ").unwrap();
        op.update(b"world").unwrap();
        let (mech, data, pss) = op.request().unwrap();
        assert_eq!(mech, CKM_ECDSA);
        assert_eq!(data, Sha256::digest(b"hello world").to_vec());
        assert!(pss.is_none());

        let mut op = SignOperation::new(SignMechanism::parse(CKM_SHA256_RSA_PKCS, &[]).unwrap());
        op.update(b"x").unwrap();
        let (mech, data, _) = op.request().unwrap();
        assert_eq!(mech, CKM_RSA_PKCS);
        assert_eq!(data.len(), 19 + 32);

        let params = pss_bytes(CKM_SHA256, CKG_MGF1_SHA256, 32);
        let mut op =
            SignOperation::new(SignMechanism::parse(CKM_SHA256_RSA_PKCS_PSS, &params).unwrap());
        op.update(b"x").unwrap();
        let (mech, _, pss) = op.request().unwrap();
        assert_eq!(mech, CKM_RSA_PKCS_PSS);
        assert_eq!(pss.unwrap().salt_length, 32);
    }

    #[test]
    fn parameters_are_checked() {
        assert!(matches!(
            SignMechanism::parse(CKM_ECDSA, &[1]),
            Err(Error::MechanismParamInvalid(_))
        ));
        assert!(matches!(
            SignMechanism::parse(CKM_RSA_PKCS_PSS, &[0; 4]),
            Err(Error::MechanismParamInvalid(_))
        ));
        assert!(matches!(
            SignMechanism::parse(CKM_SHA256_RSA_PKCS_PSS, &pss_bytes(CKM_SHA384, 2, 48)),
            Err(Error::MechanismParamInvalid(_))
        ));
        assert!(matches!(
            SignMechanism::parse(CKM_AES_CBC, &[]),
            Err(Error::MechanismInvalid(_))
        ));
        let mut eddsa_ph = vec![1u8; 1];
        eddsa_ph.resize(24, 0);
        assert!(SignMechanism::parse(CKM_EDDSA, &eddsa_ph).is_err());
    }

    #[test]
    fn offered_mechanisms_follow_signerd() {
        let listed = [
            MechanismInfo {
                mechanism: CKM_ECDSA as u64,
                min_key_bits: 256,
                max_key_bits: 256,
                flags: CKF_SIGN as u64,
            },
            MechanismInfo {
                mechanism: CKM_EDDSA as u64,
                min_key_bits: 256,
                max_key_bits: 256,
                flags: CKF_SIGN as u64,
            },
        ];
        let offered: Vec<_> = offered(&listed).into_iter().map(|(m, _)| m).collect();
        assert_eq!(
            offered,
            vec![
                CKM_ECDSA,
                CKM_ECDSA_SHA256,
                CKM_EDDSA,
                CKM_EC_KEY_PAIR_GEN,
                CKM_EC_EDWARDS_KEY_PAIR_GEN
            ]
        );
    }

    #[test]
    fn buffers_are_bounded() {
        let mut op = SignOperation::new(SignMechanism::Eddsa);
        assert!(op.update(&vec![0; MAX_BUFFERED]).is_ok());
        assert!(matches!(op.update(&[0]), Err(Error::DataLenRange(_))));
    }
}
