//! RFC 3339 timestamps in UTC with milliseconds, without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`. Times before 1970 print as the epoch.
pub(crate) fn rfc3339_millis(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339(&mut out, t, 3);
    out
}

/// Appends `t` in RFC 3339 UTC with `digits` (3 or 6) fractional digits.
///
/// The date and time of day change once a second; each thread keeps the last
/// second it formatted, so a busy logger formats only the fraction.
pub(crate) fn push_rfc3339(out: &mut String, t: SystemTime, digits: u8) {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let cached = LAST.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return false;
        };
        if last.0 != secs {
            last.1.clear();
            push_seconds(&mut last.1, secs);
            last.0 = secs;
        }
        out.push_str(&last.1);
        true
    });
    if !cached {
        push_seconds(out, secs);
    }
    if digits >= 6 {
        crate::json::push_padded(out, d.subsec_micros(), 6);
    } else {
        crate::json::push_padded(out, d.subsec_millis(), 3);
    }
    out.push('Z');
}

/// Appends `YYYY-MM-DDTHH:MM:SS.` for `secs` since the epoch.
fn push_seconds(out: &mut String, secs: u64) {
    use std::fmt::Write;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day),
/// counting in 400-year eras of 146,097 days.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn known_instants() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
        assert_eq!(rfc3339_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(at(951_782_400, 7)),
            "2000-02-29T00:00:00.007Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_795_255_200, 999)),
            "2026-11-21T10:00:00.999Z"
        );
        assert_eq!(
            rfc3339_millis(at(4_107_542_399, 0)),
            "2100-02-28T23:59:59.000Z"
        );
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn cached_second_gives_the_same_text() {
        let at = |us: u64| UNIX_EPOCH + Duration::from_micros(us);
        let mut out = String::new();
        for us in [
            1_795_255_200_000_001,
            1_795_255_200_999_999,
            1_795_255_201_000_000,
            1_795_255_200_500_000,
        ] {
            out.clear();
            push_rfc3339(&mut out, at(us), 6);
            let mut fresh = String::new();
            push_seconds(&mut fresh, us / 1_000_000);
            fresh.push_str(&format!("{:06}Z", us % 1_000_000));
            assert_eq!(out, fresh);
        }
        out.clear();
        push_rfc3339(&mut out, at(1_795_255_200_999_999), 6);
        assert_eq!(out, "2026-11-21T10:00:00.999999Z");
    }
}
