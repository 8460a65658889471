//! What a counted request tells Envoy's access log. The filter publishes each
//! field as a filter-state property (`set_property`), which Envoy stores
//! under `wasm.<name>` and prints with `%FILTER_STATE(wasm.<name>:PLAIN)%`;
//! names start with the instance's `stat_prefix`, so two instances in one
//! filter chain never overwrite each other's fields. A field that does not
//! apply (no bucket refused) is not set, and Envoy prints `-`.

use crate::policy::Mode;
use crate::engine::Summary;
use crate::policy::{Bucket, Scope};

/// The field names after `<stat_prefix>.`, in the order `values` gives them.
pub const FIELDS: [&str; 6] = ["bucket", "refused", "scope", "remaining", "limit", "mode"];

/// What a scope counts per, as logged by default: never the key itself
/// (a client IP, a header that may carry a token).
pub fn scope_kind(scope: &Scope) -> String {
    match scope {
        Scope::Host => "host".into(),
        Scope::Global => "global".into(),
        Scope::ClientIp => "client_ip".into(),
        Scope::Header(name) => format!("header:{name}"),
        Scope::JwtSubjectWithScope(_) => "jwt_sub".into(),
    }
}

/// A raw scope key as logged when the operator opts in.
fn printable_key(key: &str, scope: &Scope) -> String {
    match (scope, key) {
        (Scope::Global, _) => "global".into(),
        (Scope::Header(_), "\u{0}missing") => "(missing)".into(),
        _ => key.into(),
    }
}

/// The property names of one filter instance (built once, at configure).
pub fn property_names(stat_prefix: &str) -> [String; 6] {
    FIELDS.map(|f| format!("{stat_prefix}.{f}"))
}

/// The fields' values for one counted request, in `FIELDS` order (`None`:
/// leave unset). `raw_keys`: log the scope key itself instead of its kind.
pub fn values(
    buckets: &[Bucket],
    summary: &Summary,
    mode: Mode,
    raw_keys: bool,
) -> [Option<String>; 6] {
    let id = |i: usize| buckets.get(i).map(|b| b.id.clone());
    let scope = buckets.get(summary.bucket).map(|b| match raw_keys {
        true => printable_key(&summary.key, &b.scope),
        false => scope_kind(&b.scope),
    });
    let mode = match mode {
        Mode::Enforce => "enforce",
        Mode::Shadow => "shadow",
    };
    [
        id(summary.bucket),
        summary.refused.and_then(id),
        scope,
        Some(summary.remaining.to_string()),
        Some(summary.limit.to_string()),
        Some(mode.to_string()),
    ]
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
    fn names_follow_the_stat_prefix() {
        assert_eq!(
            property_names("okta_egress"),
            [
                "okta_egress.bucket",
                "okta_egress.refused",
                "okta_egress.scope",
                "okta_egress.remaining",
                "okta_egress.limit",
                "okta_egress.mode"
            ]
        );
    }

    #[test]
    fn a_refusal_names_the_bucket_and_the_scope_kind_not_the_key() {
        let v = values(
            &buckets(),
            &summary(0, "10.1.2.3", Some(0)),
            Mode::Enforce,
            false,
        );
        let v: Vec<Option<&str>> = v.iter().map(|s| s.as_deref()).collect();
        assert_eq!(
            v,
            [
                Some("okta.management.users"),
                Some("okta.management.users"),
                Some("client_ip"),
                Some("0"),
                Some("600"),
                Some("enforce")
            ]
        );
        let v = values(
            &buckets(),
            &summary(1, "secret-token", None),
            Mode::Shadow,
            false,
        );
        assert_eq!(v[1], None, "nothing refused: left unset");
        assert_eq!(v[2].as_deref(), Some("header:x-team"));
        assert_eq!(v[5].as_deref(), Some("shadow"));
        assert!(!v.iter().flatten().any(|s| s.contains("secret")));
    }

    #[test]
    fn raw_keys_only_when_asked() {
        let b = buckets();
        let raw = |i, key: &str| values(&b, &summary(i, key, None), Mode::Enforce, true)[2].clone();
        assert_eq!(raw(0, "10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(raw(1, "blue").as_deref(), Some("blue"));
        assert_eq!(raw(1, "\u{0}missing").as_deref(), Some("(missing)"));
        assert_eq!(raw(2, "").as_deref(), Some("global"));
        assert_eq!(scope_kind(&Scope::Host), "host");
        assert_eq!(
            scope_kind(&Scope::JwtSubjectWithScope("current_user".into())),
            "jwt_sub"
        );
    }
}
