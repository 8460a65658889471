//! End-to-end: Auth0's Authentication API catalog (`"catalogs": ["management",
//! "authentication"]`) in a real Envoy (--concurrency 2): the endpoint limits the rate-limit
//! configuration pages print, the API-wide limit per plan, and the Authentication API's
//! OAuth-style 429 body, which `/oidc/register` now answers with too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
use common::*;

const DESCRIPTION: &str = "Too many requests. Check the X-RateLimit-Limit, \
     X-RateLimit-Remaining and X-RateLimit-Reset headers.";

fn auth0(plan: &str) -> Envoy {
    Envoy::start(&format!(
        r#"{{"vendor": "auth0", "plan": "{plan}", "catalogs": ["management", "authentication"]}}"#
    ))
}

/// The Authentication API's 429: OAuth-style body, the X-RateLimit trio, Retry-After.
#[track_caller]
fn assert_auth_429(r: &Response, limit: u64, description: &str, what: &str) -> u64 {
    assert_eq!(r.status, 429, "{what}: {:?} {}", r.headers, r.body_str());
    assert!(!r.reached_upstream(), "{what}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::json!({"error": "too_many_requests", "error_description": description}),
        "{what}"
    );
    let (l, remaining, _) = rate(r);
    assert_eq!((l, remaining), (limit, 0), "{what}");
    r.header_u64("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
}

fn jwt(sub: &str) -> String {
    let b64 = |s: &str| common::base64url::encode(s.as_bytes());
    let claims = format!(r#"{{"sub":"{sub}","scope":"openid profile"}}"#);
    format!("Bearer {}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(&claims))
}

/// /userinfo: a burst of 10 per user, then 5 a minute (one every 12 s).
#[test]
fn userinfo_is_limited_per_user() {
    let e = auth0("enterprise-prod");
    let mut c = e.client();
    let me = jwt("auth0|me");
    let h = [("authorization", me.as_str())];
    for i in 1..=10u64 {
        let r = c.request("GET", "/userinfo", &h);
        assert_eq!(r.status, 200, "call {i}");
        let (limit, remaining, _) = rate(&r);
        assert_eq!((limit, remaining), (10, 10 - i), "call {i}");
    }
    let r = c.request("POST", "/userinfo", &h);
    let retry = assert_auth_429(&r, 10, DESCRIPTION, "call 11");
    assert!(
        (11..=12).contains(&retry),
        "Retry-After {retry}: a token every 12 s"
    );
    let you = jwt("auth0|you");
    let r = c.request("GET", "/userinfo", &[("authorization", you.as_str())]);
    assert_eq!(r.status, 200, "another user");
    // An opaque access token is a user of its own.
    let r = c.request("GET", "/userinfo", &[("authorization", "Bearer opaque-1")]);
    assert_eq!(r.status, 200);
}

/// /passwordless/start: 50 per IP (the harness's client is 127.0.0.1), then the 429; the
/// API-wide limit (enterprise: 100 at once) is untouched by the refusals.
#[test]
fn passwordless_start_is_limited_per_ip() {
    let e = auth0("enterprise-prod");
    let mut c = e.client();
    for i in 1..=50u64 {
        let r = c.request("POST", "/passwordless/start", &[]);
        assert_eq!(r.status, 200, "call {i}");
    }
    let r = c.request("GET", "/passwordless/start", &[]);
    assert_auth_429(&r, 50, DESCRIPTION, "call 51");
    // Another tenant, the same IP: its own 50.
    let r = c.request(
        "POST",
        "/passwordless/start",
        &[("host", "other.auth0.com")],
    );
    assert_eq!(r.status, 200);
    let api = "idp_ratelimit.auth0.authentication.api";
    assert_eq!(e.stat(&format!("{api}.admitted")), Some(51));
    assert_eq!(e.stat(&format!("{api}.rejected")), Some(0));
}

/// Free: the Authentication API allows a burst of 300 (300 a minute: 5 back a second)
/// across its endpoints, and /oauth/token a burst of 30 (30 a second: one back every 33 ms);
/// the API-wide refusal says "Global limit has been reached".
#[test]
fn free_api_wide_limit_and_token_endpoint() {
    let e = auth0("free");
    let mut c = e.client();
    let t0 = now();
    let mut token_admitted = 0u64;
    let refused = loop {
        let r = c.request("POST", "/oauth/token", &[]);
        if r.status == 429 {
            break r;
        }
        token_admitted += 1;
        assert!(token_admitted <= 200, "no 429 from /oauth/token");
    };
    let elapsed = now() - t0;
    let most = 30 + (elapsed * 30.0).ceil() as u64;
    assert!(
        (30..=most).contains(&token_admitted),
        "{token_admitted} admitted in {elapsed:.3} s: a burst of 30, then 30 a second"
    );
    assert_auth_429(&refused, 30, DESCRIPTION, "/oauth/token");
    let t0 = now();
    let mut admitted = token_admitted;
    let refused = loop {
        let r = c.request("GET", "/authorize", &[]);
        if r.status == 429 {
            break r;
        }
        admitted += 1;
        assert!(admitted <= 600, "no API-wide 429");
    };
    let elapsed = now() - t0;
    let most = 300 + (elapsed * 5.0).ceil() as u64 + 30;
    assert!(
        (300..=most).contains(&admitted),
        "{admitted} admitted through the API-wide bucket ({elapsed:.3} s)"
    );
    assert_auth_429(&refused, 300, "Global limit has been reached", "API-wide");
    assert_eq!(
        e.stat("idp_ratelimit.auth0.authentication.api.admitted"),
        Some(admitted)
    );
}

/// /oidc/register answers in the Authentication API's form, with or without the catalog.
#[test]
fn oidc_register_answers_with_the_oauth_body() {
    for config in [
        r#"{"vendor": "auth0", "plan": "free"}"#,
        r#"{"vendor": "auth0", "plan": "free", "catalogs": ["management", "authentication"]}"#,
    ] {
        let e = Envoy::start(config);
        let mut c = e.client();
        for i in 1..=5 {
            assert_eq!(c.request("POST", "/oidc/register", &[]).status, 200, "{i}");
        }
        let r = c.request("POST", "/oidc/register", &[]);
        assert_auth_429(&r, 5, DESCRIPTION, config);
        // The Management API keeps its own body.
        let r = c.request("GET", "/api/v2/stats", &[]);
        assert_eq!(r.status, 200);
    }
}

/// Without the catalog the Authentication API is not counted (the default keeps the
/// Management API only).
#[test]
fn authentication_catalog_is_opt_in() {
    let e = Envoy::start(r#"{"vendor": "auth0", "plan": "free"}"#);
    let r = e
        .client()
        .request("GET", "/userinfo", &[("authorization", "Bearer x")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), None);
}
