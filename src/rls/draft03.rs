//! Limitador's rate-limit headers (`-H DRAFT_VERSION_03`, the IETF
//! draft-polli-ratelimit-headers-03 style), as `CheckResult::response_header`
//! in `limitador/src/lib.rs` writes them for the counter with the least
//! remaining:
//!
//! ```text
//! X-RateLimit-Limit: 600, 600;w=60;name="okta.management.users", 1000;w=60;name="…"
//! X-RateLimit-Remaining: 12
//! X-RateLimit-Reset: 31
//! ```
//!
//! The first number is the tightest counter's limit; the list that follows
//! names every counter, tightest first. Reset is whole seconds left (absent
//! when the counter has no expiry yet).

/// The tightest counter, as the headers describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft03 {
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: Option<u64>,
    /// `w=` of the first listed counter.
    pub window_secs: Option<u64>,
    /// `name=` of the first listed counter: the bucket id, in the generated limits.
    pub name: Option<String>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Parses the three headers; `None` unless Limit and Remaining are there
/// and numeric.
pub fn parse(headers: &[(String, String)]) -> Option<Draft03> {
    let limit_field = header(headers, "x-ratelimit-limit")?;
    let remaining = header(headers, "x-ratelimit-remaining")?.parse().ok()?;
    let reset_secs = match header(headers, "x-ratelimit-reset") {
        None => None,
        Some(v) => Some(v.parse().ok()?),
    };
    let mut items = limit_field.split(',');
    let limit = items.next()?.trim().parse().ok()?;
    let (mut window_secs, mut name) = (None, None);
    if let Some(first) = items.next() {
        let mut params = first.split(';');
        // The counter's own limit leads the item; it must agree.
        if params.next()?.trim().parse::<u64>().ok()? != limit {
            return None;
        }
        for p in params {
            let (k, v) = p.trim().split_once('=')?;
            match k.trim() {
                "w" => window_secs = Some(v.trim().parse().ok()?),
                "name" => name = Some(v.trim().trim_matches('"').to_string()),
                _ => {}
            }
        }
    }
    Some(Draft03 {
        limit,
        remaining,
        reset_secs,
        window_secs,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_tightest_counter_with_its_name_and_window() {
        let d = parse(&h(&[
            (
                "X-RateLimit-Limit",
                "600, 600;w=60;name=\"okta.management.users\", 5000;w=3600",
            ),
            ("X-RateLimit-Remaining", "12"),
            ("X-RateLimit-Reset", "31"),
        ]))
        .unwrap();
        assert_eq!(
            d,
            Draft03 {
                limit: 600,
                remaining: 12,
                reset_secs: Some(31),
                window_secs: Some(60),
                name: Some("okta.management.users".into()),
            }
        );
    }

    #[test]
    fn unnamed_counters_and_missing_reset() {
        let d = parse(&h(&[
            ("x-ratelimit-limit", "5, 5;w=1"),
            ("x-ratelimit-remaining", "0"),
        ]))
        .unwrap();
        assert_eq!((d.limit, d.remaining, d.reset_secs), (5, 0, None));
        assert_eq!((d.window_secs, d.name), (Some(1), None));
        assert_eq!(
            parse(&h(&[
                ("x-ratelimit-limit", "5"),
                ("x-ratelimit-remaining", "4")
            ]))
            .unwrap()
            .window_secs,
            None
        );
    }

    #[test]
    fn anything_malformed_is_none_not_a_guess() {
        for (limit, remaining, reset) in [
            ("x", "1", "1"),
            ("5, 6;w=1", "1", "1"),
            ("5, 5;w=x", "1", "1"),
            ("5", "-1", "1"),
            ("5", "1", "soon"),
            ("", "1", "1"),
        ] {
            let hs = h(&[
                ("x-ratelimit-limit", limit),
                ("x-ratelimit-remaining", remaining),
                ("x-ratelimit-reset", reset),
            ]);
            assert_eq!(parse(&hs), None, "{limit} {remaining} {reset}");
        }
        assert_eq!(parse(&h(&[("x-ratelimit-remaining", "1")])), None);
    }
}
