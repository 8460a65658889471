//! The vendor's own answer, read from an upstream response's rate-limit
//! headers (`"upstream": "vendor"`): the org's limit, what is left of it, and
//! how long until it resets *by the vendor's clock*. Epoch resets (Okta,
//! Auth0) are turned into seconds left with the response's own `Date`, so a
//! skewed local clock never shortens or stretches a window.

use crate::response::Dialect;

/// One usable answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub limit: u64,
    /// 0 when the vendor refused the request (its own 429).
    pub remaining: u64,
    /// Seconds until the vendor's counter resets, by the vendor's clock.
    pub secs_left: u64,
    /// The response's `Date` (epoch seconds), 0 when absent (OneLogin only:
    /// its reset is already in seconds left): orders answers, newest wins.
    pub date_secs: u64,
    /// The vendor answered 429.
    pub refused: bool,
}

/// Why an answer cannot be used; the filter falls back to its own count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// The response carries none of the vendor's rate-limit headers.
    Absent,
    /// Some are there but are not what the vendor sends (names the header).
    Garbled(&'static str),
}

/// A reset further away than this is not a rate-limit window of any of the
/// three vendors (the longest, Auth0's per-day limits, is one day).
const MAX_SECS_LEFT: u64 = 2 * 86_400;

/// Reads the answer in `dialect` from a response with `status`; `header`
/// returns a response header by lower-case name.
pub fn read(
    dialect: Dialect,
    status: u32,
    header: &dyn Fn(&str) -> Option<String>,
) -> Result<Answer, Unusable> {
    let (limit_name, remaining_name, reset_name) = dialect.rate_header_names();
    let (limit, remaining, reset) = (
        header(limit_name),
        header(remaining_name),
        header(reset_name),
    );
    if limit.is_none() && remaining.is_none() && reset.is_none() {
        return Err(Unusable::Absent);
    }
    let number = |value: Option<String>, name: &'static str| {
        value
            .as_deref()
            .and_then(whole_number)
            .ok_or(Unusable::Garbled(name))
    };
    let limit = number(limit, limit_name)?;
    let remaining = number(remaining, remaining_name)?;
    let reset = number(reset, reset_name)?;
    if limit == 0 || limit > u64::from(u32::MAX) {
        return Err(Unusable::Garbled(limit_name));
    }
    if remaining > limit {
        return Err(Unusable::Garbled(remaining_name));
    }
    let refused = status == 429;
    let date = header("date").as_deref().and_then(crate::httpdate::parse);
    let secs_left = match dialect {
        Dialect::OneLogin => reset,
        Dialect::Okta | Dialect::Auth0 => {
            let by_reset = reset.saturating_sub(date.ok_or(Unusable::Garbled("date"))?);
            // Auth0's 429 also says Retry-After; it is the sharper figure.
            let retry_after = header("retry-after")
                .filter(|_| refused && dialect == Dialect::Auth0)
                .map(|v| whole_number(&v).ok_or(Unusable::Garbled("retry-after")))
                .transpose()?;
            retry_after.unwrap_or(by_reset)
        }
    };
    if secs_left > MAX_SECS_LEFT {
        return Err(Unusable::Garbled(reset_name));
    }
    Ok(Answer {
        limit,
        remaining: if refused { 0 } else { remaining },
        secs_left,
        date_secs: date.unwrap_or(0),
        refused,
    })
}

/// A header value that is exactly a decimal number (no sign, no list).
fn whole_number(v: &str) -> Option<u64> {
    let v = v.trim();
    (!v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| v.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Mon, 23 Nov 2026 00:00:00 GMT"; // 1795392000

    fn answer(dialect: Dialect, status: u32, headers: &[(&str, &str)]) -> Result<Answer, Unusable> {
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        };
        read(dialect, status, &lookup)
    }

    #[test]
    fn okta_epoch_reset_is_read_against_the_vendors_date() {
        let a = answer(
            Dialect::Okta,
            200,
            &[
                ("x-rate-limit-limit", "600"),
                ("x-rate-limit-remaining", "9"),
                ("x-rate-limit-reset", "1795392042"),
                ("date", DATE),
            ],
        );
        assert_eq!(
            a,
            Ok(Answer {
                limit: 600,
                remaining: 9,
                secs_left: 42,
                date_secs: 1_795_392_000,
                refused: false
            })
        );
        // A reset the vendor's clock already passed: nothing left to wait.
        let past = answer(
            Dialect::Okta,
            200,
            &[
                ("x-rate-limit-limit", "600"),
                ("x-rate-limit-remaining", "9"),
                ("x-rate-limit-reset", "1795391990"),
                ("date", DATE),
            ],
        );
        assert_eq!(past.map(|a| a.secs_left), Ok(0));
    }

    #[test]
    fn auth0_429_waits_out_retry_after() {
        let h = [
            ("x-ratelimit-limit", "10"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1795392009"),
            ("retry-after", "5"),
            ("date", DATE),
        ];
        let a = answer(Dialect::Auth0, 429, &h).unwrap();
        assert_eq!(
            (a.limit, a.remaining, a.secs_left, a.refused),
            (10, 0, 5, true)
        );
        // On a 200, Retry-After means nothing; the reset does.
        assert_eq!(answer(Dialect::Auth0, 200, &h).unwrap().secs_left, 9);
        let mut garbled = h;
        garbled[3].1 = "soon";
        assert_eq!(
            answer(Dialect::Auth0, 429, &garbled),
            Err(Unusable::Garbled("retry-after"))
        );
    }

    #[test]
    fn onelogin_reset_is_seconds_left_and_needs_no_date() {
        let a = answer(
            Dialect::OneLogin,
            429,
            &[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "17"),
                ("x-ratelimit-reset", "5"),
            ],
        )
        .unwrap();
        assert_eq!((a.remaining, a.secs_left, a.date_secs), (0, 5, 0));
    }

    #[test]
    fn absent_and_garbled_answers_are_refused() {
        assert_eq!(
            answer(Dialect::Okta, 200, &[("date", DATE)]),
            Err(Unusable::Absent)
        );
        let ok = [
            ("x-rate-limit-limit", "600"),
            ("x-rate-limit-remaining", "9"),
            ("x-rate-limit-reset", "1795392042"),
            ("date", DATE),
        ];
        for (i, bad, why) in [
            (0, "six hundred", "x-rate-limit-limit"),
            (0, "0", "x-rate-limit-limit"),
            (0, "-600", "x-rate-limit-limit"),
            (0, "600, 600", "x-rate-limit-limit"),
            (0, "99999999999", "x-rate-limit-limit"),
            (1, "601", "x-rate-limit-remaining"),
            (1, "", "x-rate-limit-remaining"),
            (2, "1.5", "x-rate-limit-reset"),
            (2, "99999999999999999999999", "x-rate-limit-reset"),
            (2, "1895392042", "x-rate-limit-reset"),
            (3, "yesterday", "date"),
        ] {
            let mut h = ok;
            h[i].1 = bad;
            assert_eq!(
                answer(Dialect::Okta, 200, &h),
                Err(Unusable::Garbled(why)),
                "{h:?}"
            );
        }
        // One header missing out of three is garbled, not absent.
        assert_eq!(
            answer(Dialect::Okta, 200, &ok[1..]),
            Err(Unusable::Garbled("x-rate-limit-limit"))
        );
        // Another vendor's headers are not this vendor's answer.
        assert_eq!(answer(Dialect::Auth0, 200, &ok), Err(Unusable::Absent));
    }
}
