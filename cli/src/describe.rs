//! How a bucket reads to a person (`600/min`, `fixed window`, `per host`)
//! and to a machine (JSON), shared by `explain` and `routes`.

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
    format!("{}/{}", l.limit, window(l.window_us))
}

/// A window as a unit: `s`, `min`, `h`, `day`, or a number of seconds.
pub fn window(window_us: u64) -> String {
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

/// A bucket's numbers for machines; `published` is its limit before
/// `headroom_percent`, when that changed it.
pub fn bucket_json(b: &Bucket, published: Option<u64>) -> Value {
    let mut v = json!({
        "id": b.id,
        "label": b.label,
        "limit": b.limit.limit,
        "window_seconds": b.limit.window_us / MICROS_PER_SEC,
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
