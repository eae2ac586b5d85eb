//! `CK_DATE` values: today's date for `CKA_START_DATE` of new objects, and dates read back as
//! text.
//!
//! The calendar maths is here, not a dependency: one function of H. Hinnant's, for a date
//! PKCS#11 stores as eight ASCII digits.

use std::time::{SystemTime, UNIX_EPOCH};

use cryptoki::types::Date;

/// Today's date (UTC) as a `CK_DATE`, for `CKA_START_DATE` of new objects.
pub(crate) fn today() -> Date {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(days as i64);
    let text = |n: i64, w: usize| format!("{n:0w$}");
    Date::new_from_str_slice(&text(y, 4), &text(m, 2), &text(d, 2))
        .unwrap_or_else(|_| Date::new_empty())
}

/// `YYYY-MM-DD` of a `CK_DATE`, or `None` when empty or not digits.
pub(crate) fn date_text(d: &Date) -> Option<String> {
    if d.is_empty() {
        return None;
    }
    let text = format!(
        "{}-{}-{}",
        String::from_utf8_lossy(&d.year),
        String::from_utf8_lossy(&d.month),
        String::from_utf8_lossy(&d.day)
    );
    text.chars()
        .all(|c| c.is_ascii_digit() || c == '-')
        .then_some(text)
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn dates_read_back_as_text() {
        let d = Date::new_from_str_slice("2024", "02", "29").unwrap();
        assert_eq!(date_text(&d).as_deref(), Some("2024-02-29"));
        assert_eq!(date_text(&Date::new_empty()), None);
        assert!(date_text(&today()).is_some_and(|t| t.len() == 10));
    }
}
