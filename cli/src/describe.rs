//! How a bucket reads to a person (`600/min`, `fixed window`, `per host`)
//! and to a machine (JSON), shared by `explain` and `routes`.

use idp_ratelimit::catalog::auth0::Edition;
use idp_ratelimit::limiter::{Algorithm, Limit, MICROS_PER_SEC};
use idp_ratelimit::policy::Mode;
use idp_ratelimit::policy::{Bucket, Scope};
use serde_json::{json, Value};

/// `600/min`, `10/s`, `5/day`, `100/90s`; `2 active` for a concurrency limit,
/// `75 in flight` for requests in flight.
pub fn limit(l: &Limit) -> String {
    if l.algorithm == Algorithm::Concurrency {
        return format!("{} active", l.limit);
    }
    if l.algorithm == Algorithm::InFlight {
        return format!("{} in flight", l.limit);
    }
    if let Some(rate) = refill_rate(l) {
        return format!("{}, then {rate}", l.limit);
    }
    format!("{}/{}", l.limit, window(l.window_us))
}

/// A token bucket whose window is no unit but which refills a whole number
/// a second or a minute (a published burst and sustained rate, as Auth0's
/// 50 and 16/s, or 5 and 150/min) as that rate: `16/s`, `150/min`.
fn refill_rate(l: &Limit) -> Option<String> {
    let unit_window = [1, 60, 3600, 86_400]
        .iter()
        .any(|s| s * MICROS_PER_SEC == l.window_us);
    if l.algorithm != Algorithm::TokenBucket || unit_window {
        return None;
    }
    [(1, "s"), (60, "min")]
        .into_iter()
        .find_map(|(secs, unit)| {
            let rate = l.limit as f64 * (secs * MICROS_PER_SEC) as f64 / l.window_us as f64;
            ((rate - rate.round()).abs() < 1e-3 && rate >= 1.0)
                .then(|| format!("{}/{unit}", rate.round() as u64))
        })
}

/// A window as a unit: `s`, `min`, `h`, `day`, or a number of seconds
/// (with its fraction: a bucket of 50 refilled 16 a second is `50/3.125s`).
pub fn window(window_us: u64) -> String {
    if window_us % MICROS_PER_SEC != 0 {
        return format!("{}s", window_seconds_fraction(window_us));
    }
    match window_us / MICROS_PER_SEC {
        1 => "s".to_string(),
        60 => "min".to_string(),
        3600 => "h".to_string(),
        86_400 => "day".to_string(),
        n => format!("{n}s"),
    }
}

pub fn mode(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "enforce",
        Mode::Shadow => "shadow",
    }
}

/// `1 bucket`, `21 buckets`.
pub fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

pub fn algorithm(a: Algorithm) -> &'static str {
    match a {
        Algorithm::FixedWindow => "fixed window",
        Algorithm::TokenBucket => "token bucket",
        Algorithm::Concurrency => "concurrency",
        Algorithm::InFlight => "in flight",
    }
}

fn algorithm_id(a: Algorithm) -> &'static str {
    match a {
        Algorithm::FixedWindow => "fixed_window",
        Algorithm::TokenBucket => "token_bucket",
        Algorithm::Concurrency => "concurrency",
        Algorithm::InFlight => "in_flight",
    }
}

/// Who a bucket counts per, as the README says it.
pub fn scope(s: &Scope) -> String {
    match s {
        Scope::Host => "per host".to_string(),
        Scope::Global => "global".to_string(),
        Scope::ClientIp => "per client IP".to_string(),
        Scope::Header(h) => format!("per header {h}"),
        Scope::JwtSubjectWithScope(part) => {
            format!("per JWT sub, tokens with a scope containing {part}")
        }
        Scope::OktaClient { client_id: true } => {
            "per host, client_id, client IP and dt cookie".to_string()
        }
        Scope::OktaClient { client_id: false } => "per host, client IP and dt cookie".to_string(),
        Scope::OktaPrincipal => "per host and API token or OAuth client".to_string(),
        Scope::HostAndClientIp => "per host and client IP".to_string(),
        Scope::BearerUser => "per host and bearer token user".to_string(),
    }
}

fn scope_json(s: &Scope) -> Value {
    match s {
        Scope::Host => json!("host"),
        Scope::Global => json!("global"),
        Scope::ClientIp => json!("client_ip"),
        Scope::Header(h) => json!({"header": h}),
        Scope::JwtSubjectWithScope(part) => json!({"jwt_sub_with_scope": part}),
        Scope::OktaClient { client_id } => json!({"okta_client": {"client_id": client_id}}),
        Scope::OktaPrincipal => json!("okta_principal"),
        Scope::HostAndClientIp => json!("host_and_client_ip"),
        Scope::BearerUser => json!("bearer_user"),
    }
}

fn window_seconds_fraction(window_us: u64) -> f64 {
    window_us as f64 / MICROS_PER_SEC as f64
}

/// Whole seconds as an integer (as ever); a fraction as a number with one.
fn window_seconds_json(window_us: u64) -> Value {
    if window_us % MICROS_PER_SEC == 0 {
        json!(window_us / MICROS_PER_SEC)
    } else {
        json!(window_seconds_fraction(window_us))
    }
}

/// The plan as the tools print it: with the Auth0 edition when it is not
/// the default (`free, edition 2026`), so default output reads as before.
pub fn plan(plan: &str, edition: Option<Edition>) -> String {
    match edition {
        Some(e) if e != Edition::Seed2020 => format!("{plan}, edition {}", e.name()),
        _ => plan.to_string(),
    }
}

/// A bucket's numbers for machines; `published` is its limit before
/// `headroom_percent`, when that changed it.
pub fn bucket_json(b: &Bucket, published: Option<u64>) -> Value {
    let mut v = json!({
        "id": b.id,
        "label": b.label,
        "limit": b.limit.limit,
        "window_seconds": window_seconds_json(b.limit.window_us),
        "algorithm": algorithm_id(b.limit.algorithm),
        "scope": scope_json(&b.scope),
        "may_report": b.reported,
    });
    if let (Some(p), Some(obj)) = (published, v.as_object_mut()) {
        obj.insert("limit_before_headroom".to_string(), json!(p));
    }
    v
}

/// Left-aligned columns, two spaces apart, no trailing blanks.
pub fn columns(rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
    };
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n).map(width).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tb(limit: u64, window_us: u64) -> String {
        super::limit(&Limit {
            algorithm: Algorithm::TokenBucket,
            limit,
            window_us,
        })
    }

    #[test]
    fn a_burst_with_its_own_refill_rate_reads_as_both() {
        assert_eq!(tb(50, 3_125_000), "50, then 16/s");
        // 100 refilled 15 a second: the window is rounded to the microsecond.
        assert_eq!(tb(100, 6_666_666), "100, then 15/s");
        assert_eq!(tb(5, 2 * MICROS_PER_SEC), "5, then 150/min");
        // Unit windows, and windows whose rate is no whole number, as before.
        assert_eq!(tb(10, MICROS_PER_SEC), "10/s");
        assert_eq!(tb(5, 86_400 * MICROS_PER_SEC), "5/day");
        assert_eq!(tb(5, 90 * MICROS_PER_SEC), "5/90s");
    }
}
