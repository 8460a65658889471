//! End-to-end: the OneLogin policy in a real Envoy (--concurrency 2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
use common::*;

use serde_json::json;
use std::sync::Barrier;
use std::time::Duration;

const STATUS: &str = "/auth/rate_limit";

fn onelogin(overrides: Option<serde_json::Value>) -> Envoy {
    let mut config = json!({"vendor": "onelogin"});
    if let Some(o) = overrides {
        config["overrides"] = o;
    }
    Envoy::start(&config.to_string())
}

/// The account limit overridden to `limit` per `window` seconds.
fn with_limit(limit: u64, window: Option<u64>) -> Envoy {
    let mut o = json!({"bucket": "onelogin.account", "limit": limit});
    if let Some(w) = window {
        o["window"] = json!(w);
    }
    onelogin(Some(json!([o])))
}

/// A forwarded, counted 200: (limit, remaining, reset).
fn counted(s: &Sent, what: &str) -> (u64, u64, u64) {
    assert_eq!(
        s.r.status,
        200,
        "{what}: {:?} {}",
        s.r.headers,
        s.r.body_str()
    );
    assert!(s.r.reached_upstream(), "{what}: not forwarded");
    rate(&s.r)
}

/// Seconds left (rounded up) in a window of `window` seconds opened by the
/// call `open`, as seen by a decision taken somewhere in `[t0, t1]`.
fn seconds_left(window: f64, open: &Sent, t0: f64, t1: f64) -> std::ops::RangeInclusive<u64> {
    let lo = (open.t0 - CLOCK_SLACK + window - t1).ceil().max(0.0) as u64;
    let hi = (open.t1 + window - t0 + CLOCK_SLACK).ceil().min(window) as u64;
    lo..=hi
}

fn envelope(code: u16, kind: &str, message: &str) -> serde_json::Value {
    json!({"status": {"error": code >= 400, "code": code, "type": kind, "message": message}})
}

/// GET /auth/rate_limit with a token: a 200 answered by the filter itself.
/// Returns (limit, remaining, reset) from the body, checking its exact shape.
fn status(c: &mut Client, host: &str, auth: &str) -> (u64, u64, u64) {
    let r = c.request("GET", STATUS, &[("host", host), ("authorization", auth)]);
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.body_str());
    assert!(
        !r.reached_upstream(),
        "the status endpoint is answered locally"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    let data = &body["data"];
    let num = |k: &str| {
        data[k]
            .as_u64()
            .unwrap_or_else(|| panic!("data.{k} is not an integer: {body}"))
    };
    let (limit, remaining, reset) = (
        num("X-RateLimit-Limit"),
        num("X-RateLimit-Remaining"),
        num("X-RateLimit-Reset"),
    );
    let expected = json!({
        "status": {"error": false, "code": 200, "type": "success", "message": "Success"},
        "data": {"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": remaining,
                 "X-RateLimit-Reset": reset}});
    assert_eq!(body, expected);
    (limit, remaining, reset)
}

fn assert_onelogin_429(r: &Response, limit: u64, what: &str) -> u64 {
    assert_eq!(r.status, 429, "{what}: {:?} {}", r.headers, r.body_str());
    assert!(!r.reached_upstream(), "{what}: a 429 must not be forwarded");
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    assert_eq!(
        r.json(),
        envelope(429, "too many requests", "Rate limit exceeded"),
        "{what}"
    );
    let (l, remaining, reset) = rate(r);
    assert_eq!((l, remaining), (limit, 0), "{what}");
    assert!(reset >= 1, "{what}: seconds left {reset}");
    // OneLogin documents no Retry-After (and its SDK's urllib3 would retry on one).
    assert_eq!(r.header("retry-after"), None, "{what}: {:?}", r.headers);
    reset
}

// ---------------------------------------------------------------------------------------------

/// Every call under /api/ and /auth/ counts; Reset is seconds left in the hour.
#[test]
fn counted_calls_carry_the_hourly_headers() {
    let e = onelogin(None);
    let mut c = e.client();
    let h = [("host", "acme.onelogin.com")];
    let first = send(&mut c, "GET", "/api/2/users", &h);
    assert_eq!(
        counted(&first, "first call"),
        (5000, 4999, 3600),
        "the window opens at the first call: a full hour left"
    );
    let calls = [
        ("POST", "/auth/oauth2/v2/token"),
        ("GET", "/api/1/users/42?fields=id"),
        ("DELETE", "/api/2/apps/7"),
        ("GET", "/api"),
        ("PUT", "/auth/anything"),
    ];
    for (i, (method, path)) in calls.iter().enumerate() {
        let s = send(&mut c, method, path, &h);
        let what = format!("{method} {path}");
        let (limit, remaining, reset) = counted(&s, &what);
        assert_eq!((limit, remaining), (5000, 4998 - i as u64), "{what}");
        let left = seconds_left(3600.0, &first, s.t0, s.t1);
        assert!(
            left.contains(&reset),
            "{what}: Reset {reset} not in {left:?}"
        );
    }
    // Outside the two roots: forwarded untouched, not counted.
    for path in ["/apis/x", "/authx", "/v1/users", "/", "/healthz"] {
        let r = c.request("GET", path, &h);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.reached_upstream(), "{path}");
        assert_eq!(
            r.header("x-ratelimit-limit"),
            None,
            "{path}: {:?}",
            r.headers
        );
    }
    let s = send(&mut c, "GET", "/api/2/users", &h);
    assert_eq!(counted(&s, "after uncounted paths").1, 4993);
    // Upstream errors are counted as well.
    let r = c.request(
        "GET",
        "/api/2/users",
        &[("host", "acme.onelogin.com"), ("x-upstream-status", "500")],
    );
    assert_eq!(r.status, 500);
    assert_eq!(rate(&r).1, 4992);
}

/// GET /auth/rate_limit reports the account's numbers and is not counted.
#[test]
fn rate_limit_status_reports_without_counting() {
    let e = onelogin(None);
    let mut c = e.client();
    let host = "status.onelogin.com";
    assert_eq!(
        status(&mut c, host, "bearer:tok"),
        (5000, 5000, 3600),
        "before any traffic"
    );
    assert_eq!(status(&mut c, host, "bearer:tok"), (5000, 5000, 3600));
    let h = [("host", host)];
    let first = send(&mut c, "GET", "/api/2/users", &h);
    assert_eq!(counted(&first, "call 1").1, 4999);
    for i in 2..=7u64 {
        let s = send(&mut c, "GET", "/api/2/users", &h);
        assert_eq!(counted(&s, "call").1, 5000 - i);
    }
    let mut previous_reset = 3600;
    for auth in ["bearer:tok", "Bearer tok", "bearer:another-token"] {
        let t0 = now();
        let (limit, remaining, reset) = status(&mut c, host, auth);
        let t1 = now();
        assert_eq!(
            (limit, remaining),
            (5000, 4993),
            "{auth}: 7 calls, checks not counted"
        );
        let left = seconds_left(3600.0, &first, t0, t1);
        assert!(
            left.contains(&reset),
            "{auth}: Reset {reset} not in {left:?}"
        );
        assert!(
            reset <= previous_reset,
            "Reset goes down: {reset} after {previous_reset}"
        );
        previous_reset = reset;
    }
    // A query string does not make it another endpoint.
    let r = c.request(
        "GET",
        "/auth/rate_limit?verbose=1",
        &[("host", host), ("authorization", "bearer:tok")],
    );
    assert_eq!(r.status, 200);
    assert!(!r.reached_upstream());
    assert_eq!(r.json()["data"]["X-RateLimit-Remaining"], 4993);
    let s = send(&mut c, "GET", "/api/2/users", &h);
    assert_eq!(
        counted(&s, "call 8").1,
        4992,
        "none of the checks was counted"
    );
}

/// When the status answer carries X-RateLimit-* headers, they say what its
/// body says (before any traffic as well as after).
#[test]
fn rate_limit_status_headers_agree_with_the_body() {
    let e = onelogin(None);
    let mut c = e.client();
    let host = "headers.onelogin.com";
    let check = |c: &mut Client, when: &str| {
        let r = c.request(
            "GET",
            STATUS,
            &[("host", host), ("authorization", "bearer:t")],
        );
        assert_eq!(r.status, 200);
        let data = r.json()["data"].clone();
        for (header, key) in [
            ("x-ratelimit-limit", "X-RateLimit-Limit"),
            ("x-ratelimit-remaining", "X-RateLimit-Remaining"),
            ("x-ratelimit-reset", "X-RateLimit-Reset"),
        ] {
            if let Some(v) = r.header_u64(header) {
                assert_eq!(
                    Some(v),
                    data[key].as_u64(),
                    "{when}: header {header} vs body data.{key}: {:?} {}",
                    r.headers,
                    r.body_str()
                );
            }
        }
    };
    check(&mut c, "before any traffic");
    let r = c.request("GET", "/api/2/users", &[("host", host)]);
    assert_eq!(r.status, 200);
    check(&mut c, "after one call");
}

/// The status endpoint's refusals, answered locally and not counted.
#[test]
fn rate_limit_status_errors() {
    let e = onelogin(None);
    let mut c = e.client();
    let host = "errors.onelogin.com";
    let unauthorized = envelope(401, "Unauthorized", "Authentication Failure");
    let bad = envelope(400, "bad request", "Authorization Information is incorrect");
    let no_route = envelope(404, "not found", "No Route Exists");
    let cases: [(&str, Option<&str>, u16, &serde_json::Value); 8] = [
        ("GET", None, 401, &unauthorized),
        ("GET", Some("Basic x"), 400, &bad),
        ("GET", Some("Basic dXNlcjpwYXNz"), 400, &bad),
        ("GET", Some("bearer:"), 400, &bad),
        ("GET", Some("Bearer"), 400, &bad),
        ("GET", Some("Token abc"), 400, &bad),
        ("POST", Some("bearer:tok"), 404, &no_route),
        ("DELETE", Some("bearer:tok"), 404, &no_route),
    ];
    for (method, auth, code, body) in cases {
        let mut headers = vec![("host", host)];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let r = c.request(method, STATUS, &headers);
        let what = format!("{method} {auth:?}");
        assert_eq!(r.status, code, "{what}: {}", r.body_str());
        assert!(!r.reached_upstream(), "{what}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        assert_eq!(&r.json(), body, "{what}");
    }
    assert_eq!(
        status(&mut c, host, "bearer:tok"),
        (5000, 5000, 3600),
        "none of the refused checks was counted"
    );
}

/// Each `:authority` is its own account (case and port aside).
#[test]
fn accounts_are_separate_per_host() {
    let e = onelogin(None);
    let mut c = e.client();
    for i in 1..=3u64 {
        let s = send(&mut c, "GET", "/api/2/users", &[("host", "a.onelogin.com")]);
        assert_eq!(counted(&s, "a").1, 5000 - i);
    }
    assert_eq!(status(&mut c, "b.onelogin.com", "bearer:t").1, 5000);
    let s = send(&mut c, "GET", "/api/2/users", &[("host", "b.onelogin.com")]);
    assert_eq!(counted(&s, "b"), (5000, 4999, 3600));
    let s = send(
        &mut c,
        "GET",
        "/api/2/users",
        &[("host", "A.OneLogin.com:443")],
    );
    assert_eq!(counted(&s, "A.OneLogin.com:443").1, 4996);
    assert_eq!(status(&mut c, "a.onelogin.com", "bearer:t").1, 4996);
    assert_eq!(status(&mut c, "b.onelogin.com", "bearer:t").1, 4999);
}

/// With the account limit overridden to 30: the 30th call is admitted with
/// nothing left, the 31st refused with OneLogin's envelope.
#[test]
fn exact_boundary_with_an_overridden_limit() {
    let e = with_limit(30, None);
    let mut c = e.client();
    let h = [("host", "boundary.onelogin.com")];
    let first = send(&mut c, "GET", "/api/2/users", &h);
    assert_eq!(counted(&first, "call 1"), (30, 29, 3600));
    for i in 2..=30u64 {
        let s = send(&mut c, "GET", "/api/2/users", &h);
        let what = format!("call {i}");
        let (limit, remaining, reset) = counted(&s, &what);
        assert_eq!((limit, remaining), (30, 30 - i), "{what}");
        let left = seconds_left(3600.0, &first, s.t0, s.t1);
        assert!(
            left.contains(&reset),
            "{what}: Reset {reset} not in {left:?}"
        );
    }
    for (i, (method, path)) in [("GET", "/api/2/users"), ("POST", "/auth/oauth2/v2/token")]
        .iter()
        .enumerate()
    {
        let s = send(&mut c, method, path, &h);
        let what = format!("call {} ({method} {path})", 31 + i);
        let retry = assert_onelogin_429(&s.r, 30, &what);
        let left = seconds_left(3600.0, &first, s.t0, s.t1);
        assert!(
            left.contains(&retry),
            "{what}: seconds left {retry} not in {left:?}"
        );
    }
    let (limit, remaining, reset) = status(&mut c, "boundary.onelogin.com", "bearer:t");
    assert_eq!((limit, remaining), (30, 0));
    assert!((3590..=3600).contains(&reset), "Reset {reset}");
    // Another account, and uncounted paths, still go through.
    let s = send(
        &mut c,
        "GET",
        "/api/2/users",
        &[("host", "other.onelogin.com")],
    );
    assert_eq!(counted(&s, "other account"), (30, 29, 3600));
    let r = c.request("GET", "/healthz", &h);
    assert_eq!(r.status, 200);
    assert!(r.reached_upstream());
}

/// 8 connections, 100 calls at once, limit 30: exactly 30 admitted, each
/// seeing a different remaining count.
#[test]
fn parallel_calls_admit_exactly_the_limit() {
    let e = with_limit(30, None);
    let port = e.port();
    let barrier = Barrier::new(8);
    let results: Vec<(u16, bool, Option<u64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut c = Client::connect(port);
                    barrier.wait();
                    let n = if t < 4 { 13 } else { 12 };
                    (0..n)
                        .map(|_| {
                            let r =
                                c.request("GET", "/api/2/users", &[("host", "par.onelogin.com")]);
                            let remaining = r.header_u64("x-ratelimit-remaining");
                            (r.status, r.reached_upstream(), remaining)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(results.len(), 100);
    let refused = results
        .iter()
        .filter(|(s, reached, rem)| *s == 429 && !reached && *rem == Some(0))
        .count();
    let mut remaining: Vec<u64> = results
        .iter()
        .filter(|(s, _, _)| *s == 200)
        .map(|(_, reached, rem)| {
            assert!(reached, "a 200 must come from upstream");
            rem.expect("admitted call without X-RateLimit-Remaining")
        })
        .collect();
    assert_eq!(remaining.len() + refused, 100, "only 200s and local 429s");
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..30).collect::<Vec<u64>>(),
        "exactly 30 admitted"
    );
    let mut c = e.client();
    assert_eq!(status(&mut c, "par.onelogin.com", "bearer:t").1, 0);
}

/// A fixed window opens at the first call after the previous one ended
/// (window overridden to 2 s, limit 3).
#[test]
fn window_reopens_at_the_first_call_after_it_ends() {
    let e = with_limit(3, Some(2));
    let mut c = e.client();
    let h = [("host", "window.onelogin.com")];
    let first = send(&mut c, "GET", "/api/2/users", &h);
    assert_eq!(counted(&first, "call 1"), (3, 2, 2));
    for i in 2..=3u64 {
        let s = send(&mut c, "GET", "/api/2/users", &h);
        assert_eq!(counted(&s, "call").1, 3 - i);
    }
    let s = send(&mut c, "GET", "/api/2/users", &h);
    let retry = assert_onelogin_429(&s.r, 3, "call 4");
    let left = seconds_left(2.0, &first, s.t0, s.t1);
    assert!(
        left.contains(&retry),
        "seconds left {retry} not in {left:?}"
    );
    // 3.2 s after the first call: a window aligned on the first one would
    // have 0.8 s left; one opened by this call has the full 2 s.
    let wait = first.t1 + 3.2 - now();
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
    assert_eq!(status(&mut c, "window.onelogin.com", "bearer:t").1, 3);
    let s = send(&mut c, "GET", "/api/2/users", &h);
    assert_eq!(counted(&s, "new window"), (3, 2, 2));
    let (_, remaining, reset) = status(&mut c, "window.onelogin.com", "bearer:t");
    assert_eq!(remaining, 2);
    assert!((1..=2).contains(&reset), "Reset {reset}");
}

/// `"retry_after": true` adds `Retry-After` (the seconds left, as X-RateLimit-Reset) to the 429,
/// for clients that want urllib3 to retry; the rest of the answer is unchanged.
#[test]
fn retry_after_is_sent_only_when_configured() {
    let e = Envoy::start(
        r#"{"vendor": "onelogin", "retry_after": true,
            "overrides": [{"bucket": "onelogin.account", "limit": 2}]}"#,
    );
    let mut c = e.client();
    let h = [("host", "ra.onelogin.com")];
    let first = send(&mut c, "GET", "/api/2/users", &h);
    assert_eq!(counted(&first, "call 1"), (2, 1, 3600));
    let s = send(&mut c, "GET", "/api/2/users", &h);
    assert_eq!(counted(&s, "call 2").1, 0);
    assert_eq!(s.r.header("retry-after"), None, "no Retry-After on a 200");
    let s = send(&mut c, "GET", "/api/2/users", &h);
    assert_eq!(s.r.status, 429, "{:?}", s.r.headers);
    assert_eq!(
        s.r.json(),
        envelope(429, "too many requests", "Rate limit exceeded")
    );
    let (_, remaining, reset) = rate(&s.r);
    assert_eq!(remaining, 0);
    let left = seconds_left(3600.0, &first, s.t0, s.t1);
    assert!(left.contains(&reset), "{reset} not in {left:?}");
    assert_eq!(
        s.r.header_u64("retry-after"),
        Some(reset),
        "{:?}",
        s.r.headers
    );
}
