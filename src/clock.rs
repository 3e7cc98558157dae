//! Wall-clock time as the API and the store use it: milliseconds since the Unix epoch,
//! shown as RFC 3339 UTC with millisecond fractions.

use time::OffsetDateTime;
use time::macros::format_description;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `2026-11-22T03:06:19.123Z`.
pub fn format_ms(ms: i64) -> String {
    match rfc3339_ms(ms) {
        Some(text) => text.as_str().to_string(),
        None => format_ms_slowly(ms),
    }
}

/// [`format_ms`] as a JSON string, written without allocating (a `/search` page holds
/// hundreds of them).
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339Ms(pub i64);

impl Rfc3339Ms {
    /// Appends the JSON string (the text never needs escaping).
    pub fn write_json(self, json: &mut Vec<u8>) {
        json.push(b'"');
        match rfc3339_ms(self.0) {
            Some(text) => json.extend_from_slice(&text.0),
            None => json.extend_from_slice(format_ms_slowly(self.0).as_bytes()),
        }
        json.push(b'"');
    }
}

/// The text of a time in years 0000–9999, on the stack.
struct Rfc3339Text([u8; 24]);

impl Rfc3339Text {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

const MS_PER_DAY: i64 = 86_400_000;
/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
const FIRST_FAST_MS: i64 = -62_167_219_200_000;
const LAST_FAST_MS: i64 = 253_402_300_799_999;

/// Formats years 0000–9999 by hand (civil-from-days, H. Hinnant); `None` outside them.
fn rfc3339_ms(ms: i64) -> Option<Rfc3339Text> {
    if !(FIRST_FAST_MS..=LAST_FAST_MS).contains(&ms) {
        return None;
    }
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);

    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: i64| {
        for index in (at..at + width).rev() {
            text[index] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, in_day / 3_600_000);
    put(14, 2, in_day / 60_000 % 60);
    put(17, 2, in_day / 1000 % 60);
    put(20, 3, in_day % 1000);
    Some(Rfc3339Text(text))
}

fn format_ms_slowly(ms: i64) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|time| time.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_with_millisecond_fractions_in_utc() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_ms(FIRST_FAST_MS), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_ms(LAST_FAST_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert!(now_ms() > 1_700_000_000_000);
    }

    #[test]
    fn times_outside_the_fast_years_still_format_as_before() {
        for ms in [FIRST_FAST_MS - 1, LAST_FAST_MS + 1, i64::MIN, i64::MAX] {
            assert_eq!(format_ms(ms), format_ms_slowly(ms), "{ms}");
        }
    }

    #[test]
    fn the_json_forms_are_the_same_text() {
        for ms in [1_795_000_000_123, LAST_FAST_MS + 1] {
            let json = serde_json::to_vec(&format_ms(ms)).expect("encodes");
            let mut written = Vec::new();
            Rfc3339Ms(ms).write_json(&mut written);
            assert_eq!(written, json);
        }
    }

    proptest! {
        #[test]
        fn the_fast_path_matches_the_time_crate(ms in FIRST_FAST_MS - 86_400_000..=LAST_FAST_MS + 86_400_000) {
            prop_assert_eq!(format_ms(ms), format_ms_slowly(ms));
        }

        #[test]
        fn recent_times_match_the_time_crate(ms in 0i64..4_102_444_800_000) {
            prop_assert_eq!(format_ms(ms), format_ms_slowly(ms));
        }
    }
}
