//! Slots and tokens: one slot per token signerd exposes, and the mechanisms it offers.

use std::time::{Duration, Instant};

use cryptoki_sys::*;
use signerd_proto::admin::{
    ListMechanismsRequest, ListMechanismsResponse, ListTokensRequest, ListTokensResponse, TokenInfo,
};

use super::{library_version, padded, Shim};
use crate::error::Error;
use crate::log::shim_log;
use crate::mechanism;

#[derive(Default)]
pub(super) struct Slots {
    pub(super) tokens: Vec<TokenInfo>,
    pub(super) reachable: bool,
    pub(super) why_not: String,
    pub(super) asked: Option<Instant>,
}

/// How long an answer about signerd's tokens is reused: one `pkcs11-tool -L` asks for the slot
/// list, each slot and each token in a row.
const SLOTS_FRESH_FOR: Duration = Duration::from_millis(1000);

impl Shim {
    /// Asks signerd for its tokens and remembers the answer (or why there was none).
    fn refresh_slots(&self) -> Result<(), Error> {
        if self.config.disabled {
            let mut slots = self.slots.lock()?;
            slots.reachable = false;
            slots.why_not = "the shim is disabled (SIGNERD_SHIM_DISABLE)".into();
            return Ok(());
        }
        if let Some(asked) = self.slots.lock()?.asked {
            if asked.elapsed() < SLOTS_FRESH_FOR {
                return Ok(());
            }
        }
        let answer: Result<ListTokensResponse, Error> = self.bridge.call(ListTokensRequest {});
        let mut slots = self.slots.lock()?;
        slots.asked = Some(Instant::now());
        match answer {
            Ok(r) => {
                if r.tokens.is_empty() {
                    slots.reachable = false;
                    slots.why_not = "signerd exposes no token".into();
                } else {
                    slots.tokens = r.tokens;
                    slots.reachable = true;
                    slots.why_not.clear();
                }
            }
            Err(e) => {
                shim_log!(Warn, "C_GetSlotList", "no token: {e}");
                slots.reachable = false;
                slots.why_not = e.to_string();
            }
        }
        Ok(())
    }

    /// `C_GetSlotList`.
    pub fn slot_list(&self, token_present: bool) -> Result<Vec<CK_SLOT_ID>, Error> {
        self.refresh_slots()?;
        if self.config.disabled {
            return Ok(Vec::new());
        }
        let slots = self.slots.lock()?;
        let count = slots.tokens.len().max(1);
        Ok(if slots.reachable || !token_present {
            (0..count as CK_SLOT_ID).collect()
        } else {
            Vec::new()
        })
    }

    /// Fails unless `slot` is a slot the shim has shown.
    pub(super) fn check_slot(&self, slot: CK_SLOT_ID) -> Result<(), Error> {
        let slots = self.slots.lock()?;
        if self.config.disabled || slot as usize >= slots.tokens.len().max(1) {
            return Err(Error::SlotIdInvalid(slot));
        }
        Ok(())
    }

    /// The token in `slot`, asking signerd first; `CKR_TOKEN_NOT_PRESENT` with the reason
    /// when it cannot be reached.
    pub(super) fn token(&self, slot: CK_SLOT_ID) -> Result<TokenInfo, Error> {
        self.check_slot(slot)?;
        self.refresh_slots()?;
        let slots = self.slots.lock()?;
        if !slots.reachable {
            return Err(Error::TokenNotPresent(slots.why_not.clone()));
        }
        slots
            .tokens
            .get(slot as usize)
            .cloned()
            .ok_or(Error::SlotIdInvalid(slot))
    }

    /// `C_GetSlotInfo`.
    pub fn slot_info(&self, slot: CK_SLOT_ID) -> Result<CK_SLOT_INFO, Error> {
        self.check_slot(slot)?;
        self.refresh_slots()?;
        let slots = self.slots.lock()?;
        let mut flags = CKF_REMOVABLE_DEVICE | CKF_HW_SLOT;
        if slots.reachable {
            flags |= CKF_TOKEN_PRESENT;
        }
        let description = match slots.tokens.get(slot as usize) {
            Some(t) => format!("signerd token {} via {}", t.label, self.bridge.describe()),
            None => format!("signerd via {}", self.bridge.describe()),
        };
        Ok(CK_SLOT_INFO {
            slotDescription: padded(&description),
            manufacturerID: padded("signerd"),
            flags,
            hardwareVersion: library_version(),
            firmwareVersion: library_version(),
        })
    }

    /// `C_GetTokenInfo`.
    pub fn token_info(&self, slot: CK_SLOT_ID) -> Result<CK_TOKEN_INFO, Error> {
        let token = self.token(slot)?;
        let (mut sessions, mut rw_sessions) = (0, 0);
        for s in self.sessions.lock()?.open.values() {
            let s = s.lock()?;
            if s.slot == slot {
                sessions += 1;
                if s.read_write {
                    rw_sessions += 1;
                }
            }
        }
        Ok(CK_TOKEN_INFO {
            label: padded(&token.label),
            manufacturerID: padded(&token.manufacturer),
            model: padded(&token.model),
            serialNumber: padded(&token.serial),
            flags: CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_LOGIN_REQUIRED,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: sessions,
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: rw_sessions,
            ulMaxPinLen: 255,
            ulMinPinLen: 1,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: library_version(),
            firmwareVersion: library_version(),
            utcTime: [b' '; 16],
        })
    }

    /// The mechanisms offered, asked of signerd once.
    pub(super) fn mechanisms(&self) -> Result<Vec<(CK_MECHANISM_TYPE, CK_MECHANISM_INFO)>, Error> {
        if let Some(m) = self.mechanisms.lock()?.as_ref() {
            return Ok(m.clone());
        }
        let listed: ListMechanismsResponse = self.bridge.call(ListMechanismsRequest {})?;
        let offered = mechanism::offered(&listed.mechanisms);
        *self.mechanisms.lock()? = Some(offered.clone());
        Ok(offered)
    }

    /// `C_GetMechanismList`.
    pub fn mechanism_list(&self, slot: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>, Error> {
        self.token(slot)?;
        Ok(self.mechanisms()?.into_iter().map(|(m, _)| m).collect())
    }

    /// `C_GetMechanismInfo`.
    pub fn mechanism_info(
        &self,
        slot: CK_SLOT_ID,
        mechanism: CK_MECHANISM_TYPE,
    ) -> Result<CK_MECHANISM_INFO, Error> {
        self.token(slot)?;
        self.mechanisms()?
            .into_iter()
            .find(|(m, _)| *m == mechanism)
            .map(|(_, info)| info)
            .ok_or(Error::MechanismInvalid(mechanism))
    }
}
