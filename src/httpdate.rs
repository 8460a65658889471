//! IMF-fixdate (`Mon, 02 Jan 2006 15:04:05 GMT`), the only `Date` form every
//! Okta SDK parses.

use crate::divide::divide;
use crate::text::push_padded;

pub fn format(epoch_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // One real division (divide.rs); the rest in 32 bits.
    let days = divide(epoch_secs, 86_400);
    let secs = (epoch_secs - days * 86_400) as u32;
    let (y, m, d) = civil_from_days(days as i64);
    // Pushed piece by piece: no `core::fmt` on the request path (text.rs).
    let mut out = String::with_capacity(29);
    out.push_str(DAYS[(days - divide(days, 7) * 7) as usize]);
    out.push_str(", ");
    push_padded(&mut out, u64::from(d), 2);
    out.push(' ');
    out.push_str(
        MONTHS
            .get((m as usize).wrapping_sub(1))
            .copied()
            .unwrap_or("Jan"),
    );
    out.push(' ');
    push_padded(&mut out, y.max(0) as u64, 4);
    out.push(' ');
    push_padded(&mut out, u64::from(secs / 3600), 2);
    out.push(':');
    push_padded(&mut out, u64::from(secs % 3600 / 60), 2);
    out.push(':');
    push_padded(&mut out, u64::from(secs % 60), 2);
    out.push_str(" GMT");
    out
}

/// Parses an IMF-fixdate (`Mon, 23 Nov 2026 00:00:00 GMT`) to epoch seconds;
/// `None` for anything else (the obsolete RFC 850 and asctime forms included).
pub fn parse(text: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_weekday, rest) = text.trim().split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u32 = digits(parts.next()?, 2)?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year: u32 = digits(parts.next()?, 4)?;
    let mut hms = parts.next()?.split(':');
    let h: u32 = digits(hms.next()?, 2)?;
    let m: u32 = digits(hms.next()?, 2)?;
    let s: u32 = digits(hms.next()?, 2)?;
    if parts.next() != Some("GMT") || parts.next().is_some() || hms.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(h * 3600 + m * 60 + s);
    u64::try_from(secs).ok()
}

/// Exactly `n` ASCII digits.
fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Howard Hinnant's civil-to-days (the inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil: (year, month 1-12, day 1-31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_dates() {
        assert_eq!(super::format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            super::format(1_136_214_245),
            "Mon, 02 Jan 2006 15:04:05 GMT"
        );
        assert_eq!(super::format(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            super::format(1_795_392_000),
            "Mon, 23 Nov 2026 00:00:00 GMT"
        );
    }

    #[test]
    fn parse_inverts_format() {
        for t in [0, 951_782_400, 1_136_214_245, 1_795_392_000, 1_795_431_341] {
            assert_eq!(super::parse(&super::format(t)), Some(t), "{t}");
        }
        for bad in [
            "",
            "Mon, 23 Nov 2026 00:00:00",
            "Mon, 23 Nov 2026 00:00:00 UTC",
            "Monday, 23-Nov-26 00:00:00 GMT",
            "Mon Nov 23 00:00:00 2026",
            "Mon, 3 Nov 2026 00:00:00 GMT",
            "Mon, 23 Nov 2026 24:00:00 GMT",
            "Mon, 23 Xyz 2026 00:00:00 GMT",
            "Mon, +3 Nov 2026 00:00:00 GMT",
        ] {
            assert_eq!(super::parse(bad), None, "{bad:?}");
        }
    }
}
