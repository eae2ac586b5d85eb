//! Signing mechanisms: which the shim offers, how their C parameters parse, and what goes to
//! signerd for each. The mechanisms themselves (numbers, key types, which hash first) are
//! [`signerd_vocab`]'s table, the one the token layer signs with.
//!
//! Hash-then-sign mechanisms (`CKM_ECDSA_SHA256`, `CKM_SHA256_RSA_PKCS`,
//! `CKM_SHA256_RSA_PKCS_PSS`) are hashed here, incrementally, and signed by signerd with the
//! raw mechanism: `C_SignUpdate` streams any amount of data, and the shim can offer
//! `CKM_ECDSA_SHA256` on tokens that lack it (SoftHSM 2.6).

use cryptoki_sys::*;
use sha2::{Digest, Sha256};
use signerd_proto::admin::{MechanismInfo, PssParams as WirePss};
use signerd_vocab::{KeyType, PssParams, SignMechanism, SHA256_DIGEST_INFO};
use zeroize::Zeroizing;

use crate::error::Error;

/// Most data the shim buffers for one signature with a mechanism it cannot hash itself
/// (EdDSA, raw digests): it must fit in one gRPC message to signerd.
pub const MAX_BUFFERED: usize = 1024 * 1024;

/// The raw mechanism signerd performs for an offered one.
fn raw_of(mechanism: u64) -> Option<u64> {
    // Only the number matters here, so any PSS parameters do.
    SignMechanism::from_ckm(mechanism, Some(PssParams::NOTARY))
        .ok()
        .map(|m| m.raw().ckm())
}

/// The mechanisms the shim offers, given what signerd lists: a signing mechanism when its raw
/// form is listed, a key generation mechanism when signerd lists it or its keys' raw signing
/// mechanism.
pub fn offered(listed: &[MechanismInfo]) -> Vec<(CK_MECHANISM_TYPE, CK_MECHANISM_INFO)> {
    let find = |m: u64| listed.iter().find(|i| i.mechanism == m);
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
    // RSA sizes as signerd enforces them, not as the token could make them (SoftHSM says
    // 512-16384): a client that trusts the range gets no refusal it could not foresee.
    let sizes = |key_type: KeyType, mut info: CK_MECHANISM_INFO| {
        if key_type == KeyType::Rsa {
            let (min, max) = rsa_bits_range();
            info.ulMinKeySize = info.ulMinKeySize.max(min);
            info.ulMaxKeySize = info.ulMaxKeySize.min(max);
        }
        info
    };
    let mut out = Vec::new();
    for m in SignMechanism::ALL_CKM {
        let Ok(parsed) = SignMechanism::from_ckm(m, Some(PssParams::NOTARY)) else {
            continue;
        };
        if let Some(raw) = raw_of(m).and_then(find) {
            let m = m as CK_MECHANISM_TYPE;
            let i = info(raw, CKF_SIGN | CKF_VERIFY | ec_flags(m));
            out.push((m, sizes(parsed.key_type(), i)));
        }
    }
    for key_type in KeyType::ALL {
        let gen = key_type.keygen_ckm();
        if let Some(i) = find(gen).or_else(|| find(key_type.raw_mechanism().ckm())) {
            let gen = gen as CK_MECHANISM_TYPE;
            let i = info(i, CKF_GENERATE_KEY_PAIR | ec_flags(gen));
            out.push((gen, sizes(key_type, i)));
        }
    }
    out
}

/// The smallest and largest RSA modulus signerd makes and uses, in bits.
pub fn rsa_bits_range() -> (CK_ULONG, CK_ULONG) {
    let allowed = signerd_vocab::defaults::RSA_BITS_ALLOWED;
    let min = allowed.iter().min().copied().unwrap_or(2048);
    let max = allowed.iter().max().copied().unwrap_or(4096);
    (min as CK_ULONG, max as CK_ULONG)
}

/// Parses `mechanism` and its parameter bytes (copied from `pParameter`).
pub fn parse(mechanism: CK_MECHANISM_TYPE, param: &[u8]) -> Result<SignMechanism, Error> {
    let pss = match mechanism {
        CKM_RSA_PKCS_PSS | CKM_SHA256_RSA_PKCS_PSS => Some(pss_params(mechanism, param)?),
        CKM_EDDSA => {
            eddsa_params(param)?;
            None
        }
        _ => None,
    };
    let parsed = SignMechanism::from_ckm(mechanism as u64, pss)
        .map_err(|_| Error::MechanismInvalid(mechanism))?;
    if pss.is_none() && mechanism != CKM_EDDSA && !param.is_empty() {
        return Err(Error::MechanismParamInvalid(
            "this mechanism takes no parameters",
        ));
    }
    Ok(parsed)
}

/// Checks `CK_EDDSA_PARAMS { CK_BBOOL phFlag; CK_ULONG ulContextDataLen; CK_BYTE_PTR }`: only
/// pure Ed25519 without a context is Ed25519 as TUF and signerd know it.
fn eddsa_params(param: &[u8]) -> Result<(), Error> {
    if param.is_empty() {
        return Ok(());
    }
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
    Ok(())
}

/// Reads `CK_RSA_PKCS_PSS_PARAMS { hashAlg, mgf, sLen }`.
fn pss_params(mechanism: CK_MECHANISM_TYPE, param: &[u8]) -> Result<PssParams, Error> {
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
    let pss = PssParams {
        hash: field(0)? as u64,
        mgf: field(1)? as u64,
        salt_len: field(2)? as u64,
    };
    if mechanism == CKM_SHA256_RSA_PKCS_PSS && pss.hash != CKM_SHA256 as u64 {
        return Err(Error::MechanismParamInvalid(
            "CKM_SHA256_RSA_PKCS_PSS needs hashAlg = CKM_SHA256",
        ));
    }
    Ok(pss)
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
        let input = if mechanism.hashes() {
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
    pub fn request(&self) -> Result<(CK_MECHANISM_TYPE, Vec<u8>, Option<WirePss>), Error> {
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
        let raw = self.mechanism.raw();
        Ok((
            raw.ckm() as CK_MECHANISM_TYPE,
            data,
            raw.pss().map(signerd_client::wire::pss),
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
        let mut op = SignOperation::new(parse(CKM_ECDSA_SHA256, &[]).unwrap());
        op.update(b"hello ").unwrap();
        op.update(b"world").unwrap();
        let (mech, data, pss) = op.request().unwrap();
        assert_eq!(mech, CKM_ECDSA);
        assert_eq!(data, Sha256::digest(b"hello world").to_vec());
        assert!(pss.is_none());

        let mut op = SignOperation::new(parse(CKM_SHA256_RSA_PKCS, &[]).unwrap());
        op.update(b"x").unwrap();
        let (mech, data, _) = op.request().unwrap();
        assert_eq!(mech, CKM_RSA_PKCS);
        assert_eq!(data.len(), 19 + 32);

        let params = pss_bytes(CKM_SHA256, CKG_MGF1_SHA256, 32);
        let mut op = SignOperation::new(parse(CKM_SHA256_RSA_PKCS_PSS, &params).unwrap());
        op.update(b"x").unwrap();
        let (mech, _, pss) = op.request().unwrap();
        assert_eq!(mech, CKM_RSA_PKCS_PSS);
        assert_eq!(pss.unwrap().salt_length, 32);
    }

    #[test]
    fn parameters_are_checked() {
        assert!(matches!(
            parse(CKM_ECDSA, &[1]),
            Err(Error::MechanismParamInvalid(_))
        ));
        assert!(matches!(
            parse(CKM_RSA_PKCS_PSS, &[0; 4]),
            Err(Error::MechanismParamInvalid(_))
        ));
        assert!(matches!(
            parse(CKM_SHA256_RSA_PKCS_PSS, &pss_bytes(CKM_SHA384, 2, 48)),
            Err(Error::MechanismParamInvalid(_))
        ));
        assert!(matches!(
            parse(CKM_AES_CBC, &[]),
            Err(Error::MechanismInvalid(_))
        ));
        let mut eddsa_ph = vec![1u8; 1];
        eddsa_ph.resize(24, 0);
        assert!(parse(CKM_EDDSA, &eddsa_ph).is_err());
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
    fn rsa_sizes_are_the_ones_signerd_enforces() {
        let listed = [MechanismInfo {
            mechanism: CKM_RSA_PKCS as u64,
            min_key_bits: 512,
            max_key_bits: 16384,
            flags: CKF_SIGN as u64,
        }];
        let offered = offered(&listed);
        assert!(!offered.is_empty());
        for (m, info) in offered {
            assert_eq!(
                (info.ulMinKeySize, info.ulMaxKeySize),
                (2048, 4096),
                "mechanism {m:#x}"
            );
            if info.flags & CKF_SIGN != 0 {
                assert_ne!(info.flags & CKF_VERIFY, 0, "verifies what it signs");
            }
        }
    }

    #[test]
    fn buffers_are_bounded() {
        let mut op = SignOperation::new(SignMechanism::Eddsa);
        assert!(op.update(&vec![0; MAX_BUFFERED]).is_ok());
        assert!(matches!(op.update(&[0]), Err(Error::DataLenRange(_))));
    }
}
