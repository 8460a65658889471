//! End-to-end: Auth0's Management API editions in a real Envoy
//! (--concurrency 2). `"edition": "2026"` counts by Auth0's current pages
//! (tests/vendor-tables/auth0-2026-*.tsv) where the seed page (the default,
//! "2020") counts otherwise; each test shows the request the seed edition
//! admits being refused under 2026, with Auth0's 429 and headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
use common::*;

use serde_json::json;

const GLOBAL: &str = "Global limit has been reached";

fn auth0(plan: &str, edition: Option<&str>) -> Envoy {
    let mut config = json!({"vendor": "auth0", "plan": plan});
    if let Some(e) = edition {
        config["edition"] = json!(e);
    }
    Envoy::start(&config.to_string())
}

fn host(name: &str) -> [(&str, &str); 1] {
    [("host", name)]
}

/// Asserts Auth0's rate-limit 429 from a bucket of `limit`, answered by the
/// filter, with `message` (the tenant limit's, or an endpoint bucket's
/// pointer at the headers). Returns (reset, Retry-After).
fn assert_auth0_429(r: &Response, limit: u64, message: Option<&str>, what: &str) -> (u64, u64) {
    assert_eq!(r.status, 429, "{what}: {:?} {}", r.headers, r.body_str());
    assert!(!r.reached_upstream(), "{what}: a 429 must not be forwarded");
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    let (l, remaining, reset) = rate(r);
    assert_eq!((l, remaining), (limit, 0), "{what}: limit/remaining");
    let retry = r
        .header_u64("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After: {:?}", r.headers));
    let body = r.json();
    assert_eq!(body.as_object().map(|o| o.len()), Some(4), "{what}: {body}");
    assert_eq!(body["statusCode"], 429, "{what}");
    assert_eq!(body["error"], "Too Many Requests", "{what}");
    assert_eq!(body["errorCode"], "too_many_requests", "{what}");
    let got = body["message"].as_str().expect("message string");
    match message {
        Some(m) => assert_eq!(got, m, "{what}"),
        None => assert!(
            !got.is_empty() && got != GLOBAL,
            "{what}: an endpoint bucket refused, got {got:?}"
        ),
    }
    (reset, retry)
}

/// Enterprise production, GET /api/v2/prompts/{prompt}/partials. The seed
/// page has no row for it: the "all other endpoints" buckets (10/s and
/// 150/min) and the tenant's (50/s, 1000/min) admit ten at once. Today's
/// Enterprise page gives it a burst of 5 and 5/min (one back every 12 s, so
/// none comes back during the test): exactly 5 are admitted, the sixth and
/// later get the endpoint's 429 until the first token is back.
#[test]
fn edition_2026_prompt_partials_admit_exactly_five() {
    const PATH: &str = "/api/v2/prompts/login/partials";
    let seed = auth0("enterprise-prod", None);
    let mut c = seed.client();
    let h = host("seed.example");
    for i in 1..=10 {
        admitted(
            &send(&mut c, "GET", PATH, &h),
            &format!("seed edition, request {i}"),
        );
    }
    drop(c);
    drop(seed);

    let e = auth0("enterprise-prod", Some("2026"));
    let mut c = e.client();
    let h = host("current.example");
    let first = send(&mut c, "GET", PATH, &h);
    let (limit, remaining, reset) = admitted(&first, "2026, request 1");
    assert_eq!((limit, remaining), (5, 4), "the partials bucket reports");
    // The next token is 12 s after the first request took one.
    let lo = (first.t0 - CLOCK_SLACK + 12.0).ceil() as u64;
    let hi = (first.t1 + 12.0).ceil() as u64;
    assert!(
        (lo..=hi).contains(&reset),
        "reset {reset} not in {lo}..={hi}"
    );
    for i in 2..=5u64 {
        let s = send(&mut c, "GET", PATH, &h);
        let what = format!("2026, request {i}");
        assert_eq!(admitted(&s, &what), (5, 5 - i, reset), "{what}");
    }
    for i in 6..=8 {
        let s = send(&mut c, "GET", PATH, &h);
        let what = format!("2026, request {i}");
        let (r, retry) = assert_auth0_429(&s.r, 5, None, &what);
        assert_eq!(r, reset, "{what}: same next-token time");
        let lo = (first.t0 - CLOCK_SLACK + 12.0 - s.t1).ceil() as u64;
        let hi = (first.t1 + 12.0 - s.t0 + CLOCK_SLACK).ceil() as u64;
        assert!(
            (lo..=hi).contains(&retry),
            "{what}: Retry-After {retry} not in {lo}..={hi}"
        );
    }
    // Per tenant: another tenant has its own five; and the tenant-wide
    // bucket (50) was not what refused.
    let s = send(&mut c, "GET", PATH, &host("other.example"));
    assert_eq!(admitted(&s, "other tenant").1, 4);
    let s = send(&mut c, "GET", "/api/v2/stats", &h);
    assert_eq!(s.r.status, 200, "other endpoints still admitted");
}

/// Free plan, GET /api/v2/stats: the seed page's tenant limit is 10/s and
/// 120/min; today's Free page gives a burst of 2 and 2/s (one back every
/// 500 ms). Exactly 2 are admitted, then the tenant's "Global limit" 429
/// (allowing for the tokens that can come back while the requests run).
#[test]
fn edition_2026_free_tenant_admits_a_burst_of_two() {
    let seed = auth0("free", None);
    let mut c = seed.client();
    let h = host("seed-free.example");
    for i in 1..=3 {
        let (limit, _, _) = admitted(
            &send(&mut c, "GET", "/api/v2/stats", &h),
            &format!("seed edition, request {i}"),
        );
        assert_eq!(limit, 10, "seed: the tenant's 10/s");
    }
    drop(c);
    drop(seed);

    let e = auth0("free", Some("2026"));
    let mut c = e.client();
    let h = host("current-free.example");
    let first = send(&mut c, "GET", "/api/v2/stats", &h);
    assert_eq!(admitted(&first, "2026, request 1").0, 2);
    let second = send(&mut c, "GET", "/api/v2/stats", &h);
    admitted(&second, "2026, request 2");
    let mut extra = 0;
    let refusal = loop {
        let s = send(&mut c, "GET", "/api/v2/stats", &h);
        if s.r.status == 429 {
            break s;
        }
        admitted(&s, "a refill during the loop");
        extra += 1;
        assert!(extra < 10, "no 429 after {} requests", 2 + extra);
    };
    let refills = ((refusal.t1 - first.t0) / 0.5).ceil() as u64;
    assert!(
        extra <= refills,
        "{extra} admitted beyond the burst of 2, at most {refills} refills possible"
    );
    if refusal.t1 - first.t0 < 0.5 {
        assert_eq!(extra, 0, "within 500 ms: exactly the burst of 2");
        assert_eq!(rate(&second.r).1, 0, "the second took the last token");
    }
    let (reset, retry) = assert_auth0_429(&refusal.r, 2, Some(GLOBAL), "past the burst");
    assert_eq!(retry, 1, "the next token is at most 500 ms away");
    let lo = (refusal.t0 - CLOCK_SLACK).ceil() as u64;
    let hi = (refusal.t1 + 0.5).ceil() as u64;
    assert!(
        (lo..=hi).contains(&reset),
        "reset {reset} not in {lo}..={hi}"
    );
}

/// An unknown edition, an edition on another vendor, and 2026 for the plan
/// it has no page for keep Envoy from starting, with a line naming `edition`.
#[test]
fn bad_editions_are_refused_naming_the_field() {
    let cases = [
        (
            r#"{"vendor":"auth0","plan":"free","edition":"2025"}"#,
            &["unknown value \"2025\"", "2020, 2026"][..],
        ),
        (
            r#"{"vendor":"okta","plan":"enterprise","edition":"2026"}"#,
            &["only applies to vendor auth0"][..],
        ),
        (
            r#"{"vendor":"auth0","plan":"developer-legacy","edition":"2026"}"#,
            &["no tables for plan developer-legacy"][..],
        ),
    ];
    for (config, mentions) in cases {
        let (line, text) = refusal(config);
        assert!(
            text.starts_with("configuration refused: field `edition`: "),
            "{config}: {line}"
        );
        for m in mentions {
            assert!(text.contains(m), "{config}: should mention {m}: {line}");
        }
    }
}
