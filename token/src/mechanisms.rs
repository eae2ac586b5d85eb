//! The mechanisms a token offers, as the admin API lists them (and the shim, behind it, offers
//! them to PKCS#11 clients).

use signerd_vocab::ckm;

use crate::connection::Token;
use crate::error::TokenError;

/// A mechanism the token offers (or signerd adds), as `C_GetMechanismInfo` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MechanismFacts {
    /// `CKM_*` number.
    pub mechanism: u64,
    /// Smallest key size.
    pub min_key_bits: u64,
    /// Largest key size.
    pub max_key_bits: u64,
    /// `CKF_*` flags.
    pub flags: u64,
}

impl Token {
    /// The mechanisms the token supports, plus `CKM_ECDSA_SHA256` when the token has only
    /// `CKM_ECDSA` (signerd hashes first).
    pub fn list_mechanisms(&self) -> Result<Vec<MechanismFacts>, TokenError> {
        self.run(|conn, _session| {
            let mut facts = Vec::new();
            for mech in self.module.get_mechanism_list(conn.slot)? {
                let info = self.module.get_mechanism_info(conn.slot, mech)?;
                facts.push(MechanismFacts {
                    mechanism: u64::from(mech),
                    min_key_bits: info.min_key_size() as u64,
                    max_key_bits: info.max_key_size() as u64,
                    flags: mechanism_flags(&info),
                });
            }
            let has = |m| facts.iter().any(|f| f.mechanism == m);
            if has(ckm::ECDSA) && !has(ckm::ECDSA_SHA256) {
                if let Some(ecdsa) = facts.iter().find(|f| f.mechanism == ckm::ECDSA).copied() {
                    facts.push(MechanismFacts {
                        mechanism: ckm::ECDSA_SHA256,
                        flags: ecdsa.flags & (CKF_SIGN | CKF_VERIFY),
                        ..ecdsa
                    });
                }
            }
            facts.sort_by_key(|f| f.mechanism);
            Ok(facts)
        })
    }
}

const CKF_HW: u64 = 0x1;
const CKF_ENCRYPT: u64 = 0x100;
const CKF_DECRYPT: u64 = 0x200;
const CKF_DIGEST: u64 = 0x400;
const CKF_SIGN: u64 = 0x800;
const CKF_SIGN_RECOVER: u64 = 0x1000;
const CKF_VERIFY: u64 = 0x2000;
const CKF_VERIFY_RECOVER: u64 = 0x4000;
const CKF_GENERATE: u64 = 0x8000;
const CKF_GENERATE_KEY_PAIR: u64 = 0x10000;
const CKF_WRAP: u64 = 0x20000;
const CKF_UNWRAP: u64 = 0x40000;
const CKF_DERIVE: u64 = 0x80000;
const CKF_EC_F_P: u64 = 0x100000;
const CKF_EC_OID: u64 = 0x800000;
const CKF_EC_UNCOMPRESS: u64 = 0x1000000;
const CKF_EC_COMPRESS: u64 = 0x2000000;

/// The `CKF_*` bits of a mechanism (cryptoki exposes them one by one).
fn mechanism_flags(info: &cryptoki::mechanism::MechanismInfo) -> u64 {
    [
        (info.hardware(), CKF_HW),
        (info.encrypt(), CKF_ENCRYPT),
        (info.decrypt(), CKF_DECRYPT),
        (info.digest(), CKF_DIGEST),
        (info.sign(), CKF_SIGN),
        (info.sign_recover(), CKF_SIGN_RECOVER),
        (info.verify(), CKF_VERIFY),
        (info.verify_recover(), CKF_VERIFY_RECOVER),
        (info.generate(), CKF_GENERATE),
        (info.generate_key_pair(), CKF_GENERATE_KEY_PAIR),
        (info.wrap(), CKF_WRAP),
        (info.unwrap(), CKF_UNWRAP),
        (info.derive(), CKF_DERIVE),
        (info.ec_f_p(), CKF_EC_F_P),
        (info.ec_from_oid(), CKF_EC_OID),
        (info.ec_uncompressed(), CKF_EC_UNCOMPRESS),
        (info.ec_compressed(), CKF_EC_COMPRESS),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |acc, (_, bit)| acc | bit)
}
