//! End-to-end: the path guard (`idp-ratelimit guard`) in a real Envoy. The
//! Wasm filter is wrapped in an `ExtensionWithMatcher` with the matcher the
//! command prints: every spelling of a limited path still reaches the filter
//! and is counted; a path no route can match never reaches it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
use common::*;

use idp_ratelimit::guard;

const OKTA: &str = r#"{"vendor":"okta","plan":"enterprise"}"#;

fn prefixes(config: &str) -> Vec<String> {
    let spec = idp_ratelimit::config::parse(config.as_bytes())
        .unwrap()
        .policy;
    guard::route_prefixes(&spec).unwrap()
}

fn guarded(config: &str, prefixes: &[String]) -> Envoy {
    Envoy::start_with(EnvoyOptions {
        plugin_config: config.to_string(),
        guard: Some(guard::matcher(prefixes)),
        ..Default::default()
    })
}

#[test]
fn every_spelling_of_a_limited_path_is_still_counted() {
    let e = guarded(OKTA, &prefixes(OKTA));
    let mut c = e.client();
    // The users bucket (600/min) whatever the spelling: percent-escapes,
    // doubled slashes and dot segments reach the filter, which normalises them.
    let spellings = [
        "/api/v1/users",
        "/%61pi/v1/users",
        "//api/v1/users",
        "/x/../api/v1/users",
        "/./api/v1/users?limit=5",
        "/api/v1/users/",
    ];
    for (i, path) in spellings.iter().enumerate() {
        let r = c.request("GET", path, &[]);
        assert_counted(&r, 600, 599 - i as u64, path);
    }
    assert_eq!(
        e.counter("okta.management.users.admitted"),
        spellings.len() as u64
    );
}

#[test]
fn a_path_no_route_matches_never_reaches_the_filter() {
    let e = guarded(OKTA, &prefixes(OKTA));
    let mut c = e.client();
    let r = c.request("GET", "/bench/unmatched", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.reached_upstream(), "{r:?}");
    assert_eq!(r.header("x-rate-limit-limit"), None, "{r:?}");
    // A limited path still counts next to it.
    assert_counted(&c.request("GET", "/api/v1/users", &[]), 600, 599, "users");
}

#[test]
fn the_matcher_really_skips_the_filter() {
    // A guard deliberately too narrow (only /oauth2): if Envoy applied the
    // matcher's SkipFilter, /api/v1/users passes uncounted. (The real guard
    // is a superset of the routes; this proves the matcher is not ignored.)
    let e = guarded(OKTA, &["/oauth2".to_string()]);
    let mut c = e.client();
    let r = c.request("GET", "/api/v1/users", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-rate-limit-limit"), None, "{r:?}");
    // The `%` in a spelling still sends it to the filter, which counts it.
    assert_counted(
        &c.request("GET", "/%61pi/v1/users", &[]),
        600,
        599,
        "escaped",
    );
    assert_eq!(e.counter("okta.management.users.admitted"), 1);
}
