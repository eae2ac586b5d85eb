//! `SignMechanism::from_ckm` with any mechanism number and PSS parameters, as the shim and the
//! admin API pass them from a caller: it answers Ok or Err, never panics, and what it accepts
//! describes itself consistently.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use signerd_vocab::{PssParams, SignMechanism};

#[derive(Arbitrary, Debug)]
struct Input {
    mechanism: u64,
    pss: Option<(u64, u64, u64)>,
    /// Picks a known mechanism number half of the time, so the accepting paths are reached.
    known: Option<u8>,
}

fuzz_target!(|input: Input| {
    let mechanism = match input.known {
        Some(i) => SignMechanism::ALL_CKM[usize::from(i) % SignMechanism::ALL_CKM.len()],
        None => input.mechanism,
    };
    let pss = input.pss.map(|(hash, mgf, salt_len)| PssParams {
        hash,
        mgf,
        salt_len,
    });
    let name = SignMechanism::name_of(mechanism);
    match SignMechanism::from_ckm(mechanism, pss) {
        Ok(m) => {
            assert_eq!(m.ckm(), mechanism);
            assert_eq!(Some(m.name()), name);
            assert!(SignMechanism::ALL_CKM.contains(&mechanism));
            if let Some(p) = m.pss() {
                assert_eq!(Some(p), pss);
                let _ = p.digest_len();
            }
            let raw = m.raw();
            assert!(!raw.hashes());
            assert_eq!(raw.key_type(), m.key_type());
            let _ = m.to_string();
            let _ = SignMechanism::notary(m.key_type());
        }
        Err(e) => {
            let _ = e.to_string();
            if pss.is_some() {
                assert!(!SignMechanism::ALL_CKM.contains(&mechanism));
            }
        }
    }
});
