//! What a counted request tells Envoy's access log: one filter-state
//! property (`set_property`) named after the instance's `stat_prefix`, which
//! Envoy stores as `wasm.<stat_prefix>` and prints with
//! `%FILTER_STATE(wasm.idp_ratelimit:PLAIN)%`, holding every field in logfmt:
//! `bucket=okta.management.users refused=- scope=host remaining=599 limit=600 mode=enforce`.
//! One property, not one per field: each new filter-state entry is a host
//! call of about 1.7 µs (bench probe `property`). A request no bucket counted
//! sets nothing, and Envoy prints `-`.

use std::borrow::Cow;

use crate::engine::Summary;
use crate::policy::{Bucket, Mode, Scope};

/// The fields, in the order the line gives them.
pub const FIELDS: [&str; 6] = ["bucket", "refused", "scope", "remaining", "limit", "mode"];

/// What a scope counts per, as logged by default: never the key itself
/// (a client IP, a header that may carry a token).
pub fn scope_kind(scope: &Scope) -> Cow<'static, str> {
    let kind = match scope {
        Scope::Host => "host",
        Scope::Global => "global",
        Scope::ClientIp => "client_ip",
        Scope::Header(name) => return Cow::Owned(format!("header:{name}")),
        Scope::JwtSubjectWithScope(_) => "jwt_sub",
        Scope::OktaClient { client_id: true } => "host+client_id+client_ip+device",
        Scope::OktaClient { client_id: false } => "host+client_ip+device",
        Scope::OktaPrincipal => "host+principal",
        Scope::HostAndClientIp => "host+client_ip",
        Scope::BearerUser => "host+user",
    };
    Cow::Borrowed(kind)
}

/// A raw scope key as logged when the operator opts in.
fn printable_key<'k>(key: &'k str, scope: &Scope) -> &'k str {
    match (scope, key) {
        (Scope::Global, _) => "global",
        (Scope::Header(_), "\u{0}missing") => "(missing)",
        _ => key,
    }
}

/// Appends `value` as a logfmt value: bare when it is plain, else quoted,
/// with `"` and `\` escaped and control characters as `\xNN` (a raw key is
/// whatever a client sent).
fn push_value(line: &mut String, value: &str) {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_control() && c != ' ' && c != '"' && c != '=' && c != '\\');
    if plain {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            c if c.is_control() => line.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => line.push(c),
        }
    }
    line.push('"');
}

/// The logged line for one counted request. `raw_keys`: the scope key itself
/// instead of its kind.
pub fn line(buckets: &[Bucket], summary: &Summary, mode: Mode, raw_keys: bool) -> String {
    let id = |i: usize| buckets.get(i).map_or("-", |b| b.id.as_str());
    let scope = buckets.get(summary.bucket).map(|b| match raw_keys {
        true => Cow::Borrowed(printable_key(&summary.key, &b.scope)),
        false => scope_kind(&b.scope),
    });
    let mode = match mode {
        Mode::Enforce => "enforce",
        Mode::Shadow => "shadow",
    };
    let scope = scope.unwrap_or(Cow::Borrowed("-"));
    let mut line = String::with_capacity(128);
    for field in FIELDS {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(field);
        line.push('=');
        // Built in place: no `core::fmt` or copies per field (text.rs).
        match field {
            "bucket" => line.push_str(id(summary.bucket)),
            "refused" => line.push_str(summary.refused.map_or("-", id)),
            "scope" if raw_keys => push_value(&mut line, &scope),
            "scope" => line.push_str(&scope),
            "remaining" => crate::text::push_u64(&mut line, summary.remaining),
            "limit" => crate::text::push_u64(&mut line, summary.limit),
            _ => line.push_str(mode),
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::{Algorithm, Limit};

    fn buckets() -> Vec<Bucket> {
        let limit = Limit {
            algorithm: Algorithm::FixedWindow,
            limit: 600,
            window_us: 60_000_000,
        };
        vec![
            Bucket::new("okta.management.users", "", limit, Scope::ClientIp),
            Bucket::new("b", "", limit, Scope::Header("x-team".into())),
            Bucket::new("g", "", limit, Scope::Global),
        ]
    }

    fn summary(bucket: usize, key: &str, refused: Option<usize>) -> Summary {
        Summary {
            bucket,
            remaining: 0,
            limit: 600,
            key: key.into(),
            refused,
        }
    }

    #[test]
    fn a_refusal_names_the_bucket_and_the_scope_kind_not_the_key() {
        let b = buckets();
        assert_eq!(
            line(&b, &summary(0, "10.1.2.3", Some(0)), Mode::Enforce, false),
            "bucket=okta.management.users refused=okta.management.users scope=client_ip \
             remaining=0 limit=600 mode=enforce"
        );
        let l = line(&b, &summary(1, "secret-token", None), Mode::Shadow, false);
        assert_eq!(
            l,
            "bucket=b refused=- scope=header:x-team remaining=0 limit=600 mode=shadow"
        );
    }

    #[test]
    fn raw_keys_only_when_asked_and_quoted_when_not_plain() {
        let b = buckets();
        let scope = |i, key: &str| {
            let l = line(&b, &summary(i, key, None), Mode::Enforce, true);
            let rest = l.split_once(" scope=").unwrap().1;
            rest.rsplit_once(" remaining=").unwrap().0.to_string()
        };
        assert_eq!(scope(0, "10.1.2.3"), "10.1.2.3");
        assert_eq!(scope(1, "blue"), "blue");
        assert_eq!(scope(1, "\u{0}missing"), "(missing)");
        assert_eq!(scope(2, ""), "global");
        assert_eq!(scope(1, "Bearer a=b"), "\"Bearer a=b\"");
        assert_eq!(scope(1, "x\"y\\z\tw"), r#""x\"y\\z\x09w""#);
        assert_eq!(scope(1, ""), "\"\"");
        assert_eq!(scope_kind(&Scope::Host), "host");
        assert_eq!(
            scope_kind(&Scope::JwtSubjectWithScope("current_user".into())),
            "jwt_sub"
        );
    }
}
