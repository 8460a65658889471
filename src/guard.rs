//! The request-path guard: which raw `:path` values the filter must see at
//! all. In front of traffic that is mostly not the IdP's API, Envoy can skip
//! the filter's request and response callbacks (no header read, no
//! decision: what is left is the cost of a Wasm filter that does nothing,
//! measured in `make bench`) for every request no route of the policy can
//! match, with a matcher evaluated natively (`ExtensionWithMatcher` +
//! `SkipFilter`; `idp-ratelimit guard` prints it).
//!
//! The guard must never skip a request the filter would count, whatever its
//! spelling: the filter normalises paths (percent-escapes, doubled slashes,
//! dot segments; `path.rs`), so the guard lets through every path that
//! *could* normalise into a route: one starting with a route's first literal
//! segment (any letter case), and any path with `%`, `//` or `/.` in it, or
//! not starting with `/`. It is a superset: some paths it lets through are
//! not limited, which costs only the filter's own unmatched path.

use serde_json::{json, Value};

use crate::policy::PolicySpec;

/// Why a policy cannot be guarded by prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unguardable {
    /// A route pattern whose first segment is not a literal.
    pub pattern: String,
}

/// The distinct `/<first segment>` prefixes of `patterns` (the policy's
/// route patterns, before expansion), sorted. A pattern whose first segment
/// is a parameter, a wildcard or empty (`/`, `/*`, `/{tenant}/…`) can match
/// any first segment, so no prefix guard is possible.
pub fn prefixes<'a>(
    patterns: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, Unguardable> {
    let mut out: Vec<String> = Vec::new();
    for pattern in patterns {
        let rest = pattern.strip_prefix('/').unwrap_or(pattern);
        let first = rest.split('/').next().unwrap_or_default();
        if first.is_empty() || first.contains(['{', '}', '*', ':']) {
            return Err(Unguardable {
                pattern: pattern.to_string(),
            });
        }
        let prefix = format!("/{first}");
        if !out.iter().any(|p| p.eq_ignore_ascii_case(&prefix)) {
            out.push(prefix);
        }
    }
    out.sort();
    Ok(out)
}

/// The prefixes of every route of a (parsed, not yet compiled) policy.
pub fn route_prefixes(spec: &PolicySpec) -> Result<Vec<String>, Unguardable> {
    prefixes(
        spec.routes
            .iter()
            .flat_map(|r| r.patterns.iter().map(String::as_str)),
    )
}

/// Characters sequences that make the guard let a path through whatever its
/// first segment: the spellings `path::normalize` rewrites.
pub const REWRITTEN: [&str; 3] = ["%", "//", "/."];

/// Whether the filter must see a request whose raw `:path` is `raw_path`:
/// the rule the Envoy matcher printed by `idp-ratelimit guard` applies.
pub fn must_see(prefixes: &[String], raw_path: &str) -> bool {
    !raw_path.starts_with('/')
        || REWRITTEN.iter().any(|s| raw_path.contains(s))
        || prefixes.iter().any(|p| {
            raw_path
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
        })
}

/// Envoy's input for the request's `:path`.
fn path_input() -> Value {
    json!({
        "name": "request-path",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
            "header_name": ":path",
        },
    })
}

fn path_predicate(value_match: Value) -> Value {
    json!({"single_predicate": {"input": path_input(), "value_match": value_match}})
}

/// Envoy's `xds_matcher` for the filter's `ExtensionWithMatcher` wrapper
/// (`idp-ratelimit guard` prints it): skip the filter unless the path starts with a route's first
/// segment (any case), holds a spelling the filter rewrites, or does not
/// start with `/`: exactly `guard::must_see`.
pub fn matcher(prefixes: &[String]) -> Value {
    let mut seen: Vec<Value> = prefixes
        .iter()
        .map(|p| path_predicate(json!({"prefix": p, "ignore_case": true})))
        .collect();
    seen.extend(
        REWRITTEN
            .iter()
            .map(|s| path_predicate(json!({ "contains": s }))),
    );
    seen.push(json!({"not_matcher": path_predicate(json!({"prefix": "/"}))}));
    json!({
        "matcher_list": {
            "matchers": [{
                "predicate": {"not_matcher": {"or_matcher": {"predicate": seen}}},
                "on_match": {"action": {
                    "name": "skip",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter",
                    },
                }},
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_the_first_literal_segments() {
        let p = prefixes([
            "/api/v1/users",
            "/api/v1/groups/{id}",
            "/oauth2/{server}/v1/token",
            "/.well-known/openid-configuration",
            "/API/v2",
        ])
        .unwrap();
        assert_eq!(p, ["/.well-known", "/api", "/oauth2"]);
    }

    #[test]
    fn a_pattern_open_in_its_first_segment_cannot_be_guarded() {
        for open in ["/{tenant}/api", "/*", "/", "", "/{*rest}"] {
            assert_eq!(
                prefixes(["/api/v1/users", open]),
                Err(Unguardable {
                    pattern: open.to_string()
                }),
                "{open:?}"
            );
        }
    }

    #[test]
    fn every_rewritable_spelling_is_let_through() {
        let p = vec!["/api".to_string()];
        for seen in [
            "/api/v1/users",
            "/API/v1/users",
            "/api",
            "/apiary",
            "/%61pi/v1/users",
            "//api/v1/users",
            "/x/../api/v1/users",
            "/./api/v1/users",
            "api/v1/users",
            "*",
            "",
        ] {
            assert!(must_see(&p, seen), "{seen:?}");
        }
        for skipped in ["/bench/unmatched", "/", "/ap", "/health?x=/api/v1", "/é"] {
            assert!(!must_see(&p, skipped), "{skipped:?}");
        }
    }

    #[test]
    fn the_matcher_skips_only_when_no_predicate_holds() {
        let m = matcher(&["/api".to_string()]);
        let seen = &m["matcher_list"]["matchers"][0]["predicate"]["not_matcher"]["or_matcher"]
            ["predicate"];
        let n = seen.as_array().map_or(0, Vec::len);
        // One prefix, the three rewritten spellings, and "does not start with /".
        assert_eq!(n, 5);
        assert_eq!(
            seen[0]["single_predicate"]["value_match"],
            json!({"prefix": "/api", "ignore_case": true})
        );
        assert_eq!(
            m["matcher_list"]["matchers"][0]["on_match"]["action"]["name"],
            "skip"
        );
    }
}
