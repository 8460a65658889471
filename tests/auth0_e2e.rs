//! End-to-end: the Auth0 policies in a real Envoy (--concurrency 2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
use common::*;

use serde_json::json;
use std::sync::Barrier;
use std::time::Duration;

const GLOBAL: &str = "Global limit has been reached";
/// Auth0's import-jobs refusal, exactly (no errorCode).
fn import_jobs_body() -> serde_json::Value {
    json!({"statusCode": 429, "error": "Too Many Requests",
           "message": "There are 2 active import users jobs, please wait until some of them are finished and try again"})
}
const ROTATE: &str = "/api/v2/keys/signing/rotate";
const IMPORTS: &str = "/api/v2/jobs/users-imports";

fn host(name: &str) -> [(&str, &str); 1] {
    [("host", name)]
}

/// Asserts `reset` is the epoch second (rounded up) of an instant `delay`
/// seconds after a decision taken somewhere in `[t0, t1]`.
fn assert_reset(reset: u64, t0: f64, t1: f64, delay: f64, what: &str) {
    let lo = (t0 - CLOCK_SLACK + delay).ceil() as u64;
    let hi = (t1 + delay).ceil() as u64;
    assert!(
        (lo..=hi).contains(&reset),
        "{what}: X-RateLimit-Reset {reset} not in {lo}..={hi} (now {:.3})",
        now()
    );
}

/// (limit, remaining) of an admitted response.
fn lr(s: &Sent, what: &str) -> (u64, u64) {
    let (limit, remaining, _) = admitted(s, what);
    (limit, remaining)
}

/// Asserts an Auth0 rate-limit 429 (not the import-jobs one) from a bucket
/// of `limit`; `global` when a tenant bucket refused. Returns Retry-After.
fn assert_auth0_429(r: &Response, global: bool, limit: u64, what: &str) -> u64 {
    assert_eq!(r.status, 429, "{what}: {:?} {}", r.headers, r.body_str());
    assert!(!r.reached_upstream(), "{what}: a 429 must not be forwarded");
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    let (l, remaining, _) = rate(r);
    assert_eq!((l, remaining), (limit, 0), "{what}: limit/remaining");
    let retry = r
        .header_u64("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After: {:?}", r.headers));
    assert!(retry >= 1, "{what}: Retry-After {retry}");
    let body = r.json();
    let keys: Vec<&String> = body.as_object().expect("object body").keys().collect();
    assert_eq!(keys.len(), 4, "{what}: {body}");
    assert_eq!(body["statusCode"], 429, "{what}");
    assert_eq!(body["error"], "Too Many Requests", "{what}");
    assert_eq!(body["errorCode"], "too_many_requests", "{what}");
    let message = body["message"].as_str().expect("message string");
    if global {
        assert_eq!(message, GLOBAL, "{what}: a tenant bucket refused");
    } else {
        assert!(
            !message.is_empty() && message != GLOBAL,
            "{what}: an endpoint bucket refused, got {message:?}"
        );
    }
    retry
}

fn auth0(plan: &str) -> Envoy {
    Envoy::start(&json!({"vendor": "auth0", "plan": plan}).to_string())
}

const JWT_HEADER: &[u8] = br#"{"alg":"RS256","typ":"JWT"}"#;

/// `Bearer <header>.<payload>.<signature>` (the signature is not checked).
fn bearer(claims: &serde_json::Value) -> String {
    format!(
        "Bearer {}.{}.c2lnbmF0dXJl",
        base64url::encode(JWT_HEADER),
        base64url::encode(claims.to_string().as_bytes())
    )
}

// ---------------------------------------------------------------------------------------------

/// Free plan, POST /api/v2/keys/signing/rotate: 5 per day (one back every
/// 17280 s). No refill can happen during the test, so the count is exact.
#[test]
fn per_day_bucket_admits_exactly_its_limit() {
    let e = auth0("free");
    let mut c = e.client();
    let h = host("rotate.example");
    let first = send(&mut c, "POST", ROTATE, &h);
    let (limit, remaining, reset) = admitted(&first, "rotate 1");
    assert_eq!(
        (limit, remaining),
        (5, 4),
        "the per-day bucket is the tightest"
    );
    assert_reset(reset, first.t0, first.t1, 17_280.0, "rotate 1");
    for i in 2..=5u64 {
        let s = send(&mut c, "POST", ROTATE, &h);
        let what = format!("rotate {i}");
        assert_eq!(admitted(&s, &what), (5, 5 - i, reset), "{what}");
    }
    for i in 6..=8 {
        let s = send(&mut c, "POST", ROTATE, &h);
        let what = format!("rotate {i}");
        let retry = assert_auth0_429(&s.r, false, 5, &what);
        assert_eq!(rate(&s.r).2, reset, "{what}: same next-token time");
        // Retry-After: whole seconds from this decision to the first's + 17280 s.
        let lo = (first.t0 - CLOCK_SLACK + 17_280.0 - s.t1).ceil() as u64;
        let hi = (first.t1 + 17_280.0 - s.t0 + CLOCK_SLACK).ceil() as u64;
        assert!(
            (lo..=hi).contains(&retry),
            "{what}: Retry-After {retry} not in {lo}..={hi}"
        );
    }
    // The refusal is per tenant: another tenant has its own five.
    let s = send(&mut c, "POST", ROTATE, &host("other.example"));
    assert_eq!(lr(&s, "other tenant"), (5, 4));
}

/// Spellings of one path (trailing slash, query string, doubled slashes,
/// dot segments, escaped unreserved characters) all count in its bucket.
#[test]
fn path_spellings_share_one_bucket() {
    let e = auth0("free");
    let mut c = e.client();
    let h = host("spellings.example");
    let spellings = [
        "/api/v2/keys/signing/rotate/",
        "/api/v2/keys/signing/rotate?x=1",
        "//api/v2//keys/signing/rotate",
        "/api/v2/keys/./signing/x/../rotate",
        "/api/v2/keys/signing/%72otate",
    ];
    for (i, path) in spellings.iter().enumerate() {
        let s = send(&mut c, "POST", path, &h);
        let (limit, remaining, _) = admitted(&s, path);
        assert_eq!((limit, remaining), (5, 4 - i as u64), "{path}");
    }
    let s = send(&mut c, "POST", ROTATE, &h);
    assert_auth0_429(&s.r, false, 5, "canonical spelling after five others");
}

/// The tenant key is `:authority` lower-cased, without its port.
#[test]
fn tenant_key_ignores_case_and_port() {
    let e = auth0("free");
    let mut c = e.client();
    let hosts = [
        "Tenant-A.Example:8443",
        "tenant-a.example",
        "TENANT-A.EXAMPLE",
        "tenant-a.example:443",
        "tenant-a.example",
    ];
    for (i, name) in hosts.iter().enumerate() {
        let s = send(&mut c, "POST", ROTATE, &host(name));
        assert_eq!(admitted(&s, name).1, 4 - i as u64, "{name}");
    }
    let s = send(&mut c, "POST", ROTATE, &host("tenant-a.EXAMPLE:1"));
    assert_auth0_429(&s.r, false, 5, "sixth, another spelling");
    let s = send(&mut c, "POST", ROTATE, &host("tenant-b.example"));
    assert_eq!(admitted(&s, "tenant-b").1, 4);
}

/// Free plan, GET /api/v2/stats: tenant 10/s and "other" 10/s both apply; the
/// tenant bucket is checked first, so it is the one that refuses. A burst of
/// 10, then refusals (allowing for refills while the loop runs), then after a
/// second the full burst again.
#[test]
fn tenant_per_second_limit_is_the_global_limit_and_refills() {
    let e = auth0("free");
    let mut c = e.client();
    let h = host("burst.example");
    let first = send(&mut c, "GET", "/api/v2/stats", &h);
    let (limit, remaining, reset) = admitted(&first, "stats 1");
    assert_eq!((limit, remaining), (10, 9));
    assert_reset(reset, first.t0, first.t1, 0.1, "stats 1");
    for i in 2..=10 {
        let s = send(&mut c, "GET", "/api/v2/stats", &h);
        admitted(&s, &format!("stats {i} (within the burst)"));
    }
    let mut extra = 0;
    let refusal = loop {
        let s = send(&mut c, "GET", "/api/v2/stats", &h);
        if s.r.status == 429 {
            break s;
        }
        admitted(&s, "refill during the loop");
        extra += 1;
        assert!(extra < 30, "no 429 after {} requests", 10 + extra);
    };
    // One token comes back every 100 ms.
    let refills = ((refusal.t1 - first.t0) / 0.1).ceil() as u64;
    assert!(
        extra <= refills,
        "{extra} admitted beyond the burst of 10, at most {refills} refills possible"
    );
    let retry = assert_auth0_429(&refusal.r, true, 10, "past the burst");
    assert_eq!(retry, 1, "the next token is at most 100 ms away");
    assert_reset(
        rate(&refusal.r).2,
        refusal.t0,
        refusal.t1,
        0.1,
        "next token",
    );
    // Refused requests took nothing: after one second the bucket is full.
    std::thread::sleep(Duration::from_millis(1100));
    let s = send(&mut c, "GET", "/api/v2/stats", &h);
    assert_eq!(lr(&s, "after a second"), (10, 9));
    for i in 2..=10 {
        let s = send(&mut c, "GET", "/api/v2/stats", &h);
        admitted(&s, &format!("refilled burst {i}"));
    }
}

/// Self-service POST /api/v2/email-send-test: 1 per second.
#[test]
fn one_per_second_bucket_refills_after_a_second() {
    let e = auth0("self-service");
    let mut c = e.client();
    let h = host("email.example");
    let path = "/api/v2/email-send-test";
    let first = send(&mut c, "POST", path, &h);
    let (limit, remaining, reset) = admitted(&first, "first test email");
    assert_eq!((limit, remaining), (1, 0));
    assert_reset(reset, first.t0, first.t1, 1.0, "first test email");
    let second = send(&mut c, "POST", path, &h);
    let retry = assert_auth0_429(&second.r, false, 1, "second test email");
    assert_eq!(retry, 1);
    assert_eq!(rate(&second.r).2, reset, "the same next token");
    let wait = first.t1 + 1.1 - now();
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
    let third = send(&mut c, "POST", path, &h);
    let (limit, remaining, reset) = admitted(&third, "a second later");
    assert_eq!((limit, remaining), (1, 0));
    assert_reset(reset, third.t0, third.t1, 1.0, "a second later");
    assert_auth0_429(
        &send(&mut c, "POST", path, &h).r,
        false,
        1,
        "right after the refill",
    );
}

/// Headers report the bucket with the fewest remaining requests.
#[test]
fn headers_report_the_tightest_bucket() {
    let e = auth0("enterprise-prod");
    let mut c = e.client();
    // GET /api/v2/clients: tenant 50/s 1000/min, clients 5/s 100/min.
    let s = send(&mut c, "GET", "/api/v2/clients", &host("clients.example"));
    let (limit, remaining, reset) = admitted(&s, "clients");
    assert_eq!((limit, remaining), (5, 4));
    assert_reset(reset, s.t0, s.t1, 0.2, "clients: next token in 200 ms");
    // GET /api/v2/users: tenant 50/s, users 40/s 800/min.
    let s = send(&mut c, "GET", "/api/v2/users", &host("users.example"));
    let (limit, remaining, reset) = admitted(&s, "users");
    assert_eq!((limit, remaining), (40, 39));
    assert_reset(reset, s.t0, s.t1, 0.025, "users: next token in 25 ms");
}

/// On a tie in remaining requests the bucket with the smaller limit is
/// reported, even when the larger one is checked first. A day-long tenant
/// override keeps the arithmetic free of refills.
#[test]
fn headers_break_ties_by_the_smaller_limit() {
    let config = json!({"vendor": "auth0", "plan": "free", "overrides": [
        {"bucket": "auth0.tenant.per-second", "limit": 6, "window": "day"}]});
    let e = Envoy::start(&config.to_string());
    let mut c = e.client();
    let h = host("tie.example");
    // Tenant 6/day -> 5 left; other 10/s -> 9 left.
    let s = send(&mut c, "GET", "/api/v2/stats", &h);
    assert_eq!(lr(&s, "stats"), (6, 5));
    // Tenant 6/day -> 4 left; rotate 5/day -> 4 left: report the 5.
    let s = send(&mut c, "POST", ROTATE, &h);
    let (limit, remaining, reset) = admitted(&s, "rotate");
    assert_eq!(
        (limit, remaining),
        (5, 4),
        "tie at 4 left: the smaller limit"
    );
    assert_reset(reset, s.t0, s.t1, 17_280.0, "rotate");
}

/// Routes and limits per plan, one fresh tenant per request, plus bucket
/// sharing checked through the per-bucket admitted counters.
#[test]
fn plans_route_to_their_tables() {
    // (method, path, limit, remaining, seconds per token) of a first request.
    type Row = (&'static str, &'static str, u64, u64, f64);
    let check = |e: &Envoy, plan: &str, rows: &[Row]| {
        let mut c = e.client();
        for (i, (method, path, limit, remaining, delay)) in rows.iter().enumerate() {
            let name = format!("t{i}.{plan}.example");
            let s = send(&mut c, method, path, &host(&name));
            let what = format!("{plan}: {method} {path}");
            let (l, r, reset) = admitted(&s, &what);
            assert_eq!((l, r), (*limit, *remaining), "{what}");
            assert_reset(reset, s.t0, s.t1, *delay, &what);
        }
    };
    let e = auth0("free");
    check(
        &e,
        "free",
        &[
            ("POST", "/api/v2/email-send-test", 1, 0, 1.0),
            ("POST", "/api/v2/tenants", 5, 4, 0.2),
            ("POST", ROTATE, 5, 4, 17_280.0),
            ("POST", "/api/v2/custom-domains/cd_1/verify", 5, 4, 12.0),
            ("POST", "/api/v2/tenants/invitations", 5, 4, 12.0),
            ("GET", "/api/v2/clients", 5, 4, 0.2),
            ("DELETE", "/api/v2/device-credentials/dc_1", 5, 4, 0.2),
            ("POST", "/oidc/register", 5, 4, 0.2),
            ("GET", "/api/v2/users", 10, 9, 0.1),
            ("POST", "/api/v2/users", 10, 9, 0.1),
            ("GET", "/api/v2/stats", 10, 9, 0.1),
        ],
    );
    // Reads and writes of users are separate rows on self-service tables.
    let ss = "auth0.self-service";
    assert_eq!(
        e.counter(&format!("{ss}.read-users.per-second.admitted")),
        1
    );
    assert_eq!(
        e.counter(&format!("{ss}.read-users.per-minute.admitted")),
        1
    );
    assert_eq!(
        e.counter(&format!("{ss}.write-users.per-second.admitted")),
        1
    );
    assert_eq!(
        e.counter(&format!("{ss}.write-users.per-minute.admitted")),
        1
    );
    assert_eq!(e.counter(&format!("{ss}.other.per-second.admitted")), 1);
    // Every /api/v2 request passed the tenant buckets; /oidc/register did not.
    assert_eq!(e.counter("auth0.tenant.per-second.admitted"), 10);
    assert_eq!(e.counter("auth0.tenant.per-minute.admitted"), 10);
    drop(e);

    for plan in ["trial", "self-service"] {
        let e = auth0(plan);
        check(
            &e,
            plan,
            &[
                ("POST", "/api/v2/email-send-test", 1, 0, 1.0),
                ("POST", "/oidc/register", 5, 4, 0.2),
                ("GET", "/api/v2/stats", 10, 9, 0.1),
            ],
        );
    }

    let e = auth0("enterprise-prod");
    check(
        &e,
        "enterprise-prod",
        &[
            ("GET", "/api/v2/users", 40, 39, 0.025),
            ("POST", "/api/v2/users", 40, 39, 0.025),
            ("GET", "/api/v2/logs", 10, 9, 0.1),
            ("GET", "/api/v2/users/u_1/logs", 10, 9, 0.1),
            ("GET", "/api/v2/clients", 5, 4, 0.2),
            ("POST", "/api/v2/clients/c_1", 5, 4, 0.2),
            ("GET", "/api/v2/connections", 10, 9, 0.1),
            ("DELETE", "/api/v2/device-credentials/d_1", 5, 4, 0.2),
            ("GET", "/api/v2/stats", 10, 9, 0.1),
            ("GET", "/api/v2/clients/c_1", 10, 9, 0.1),
            ("POST", "/api/v2/email-send-test", 10, 9, 0.1),
            ("POST", ROTATE, 10, 9, 0.1),
        ],
    );
    let ep = "auth0.endpoint";
    for (row, n) in [
        ("users", 2),
        ("logs", 2),
        ("clients", 2),
        ("connections", 1),
        ("device-credentials", 1),
        ("other", 4),
    ] {
        for window in ["per-second", "per-minute"] {
            let name = format!("{ep}.{row}.{window}.admitted");
            assert_eq!(e.counter(&name), n, "{name}");
        }
    }
    assert_eq!(e.counter("auth0.tenant.per-second.admitted"), 12);
    // Not an Auth0 Management API route on this plan: not counted at all.
    let r = e
        .client()
        .request("POST", "/oidc/register", &host("x.example"));
    assert_eq!(r.status, 200);
    assert!(r.reached_upstream());
    assert_eq!(r.header("x-ratelimit-limit"), None, "{:?}", r.headers);
    drop(e);

    let e = auth0("enterprise-nonprod");
    check(
        &e,
        "enterprise-nonprod",
        &[
            ("GET", "/api/v2/users", 10, 9, 0.1),
            ("GET", "/api/v2/clients", 5, 4, 0.2),
        ],
    );
    drop(e);
    let e = auth0("developer-legacy");
    check(
        &e,
        "developer-legacy",
        &[
            ("GET", "/api/v2/users", 40, 39, 0.025),
            ("GET", "/api/v2/clients", 5, 4, 0.2),
        ],
    );
}

/// Paths outside the Management API (and /oidc/register) are not counted.
#[test]
fn other_paths_are_not_counted() {
    let e = auth0("free");
    let mut c = e.client();
    for path in ["/authorize", "/api/v1/users", "/apiv2/users", "/"] {
        let r = c.request("GET", path, &host("plain.example"));
        assert_eq!(r.status, 200, "{path}");
        assert!(r.reached_upstream(), "{path}");
        assert_eq!(
            r.header("x-ratelimit-limit"),
            None,
            "{path}: {:?}",
            r.headers
        );
    }
}

/// Enterprise "other" endpoints share one 10/s bucket.
#[test]
fn other_endpoints_share_one_bucket() {
    let e = auth0("enterprise-prod");
    let mut c = e.client();
    let h = host("other.example");
    let paths = ["/api/v2/stats", "/api/v2/roles", "/api/v2/rules/r_1"];
    let start = now();
    let mut admitted_count = 0u64;
    let refusal = loop {
        let path = paths[admitted_count as usize % paths.len()];
        let s = send(&mut c, "GET", path, &h);
        if s.r.status == 429 {
            break s;
        }
        let (limit, _, _) = admitted(&s, path);
        assert_eq!(limit, 10, "{path}: the 'other' bucket is the tightest");
        admitted_count += 1;
        assert!(admitted_count < 40, "no 429 after {admitted_count}");
    };
    let refills = ((refusal.t1 - start) / 0.1).ceil() as u64;
    assert!(
        (10..=10 + refills).contains(&admitted_count),
        "{admitted_count} admitted: a burst of 10 plus at most {refills} refills"
    );
    let retry = assert_auth0_429(&refusal.r, false, 10, "other endpoints");
    assert_eq!(retry, 1);
}

/// A request an endpoint bucket refuses gives back what the tenant buckets
/// took. 150 refusals would empty both the tenant's 10/s and its 120/min if
/// they were kept; all must still be refused by the per-day bucket.
#[test]
fn refused_requests_take_nothing_from_earlier_buckets() {
    let e = auth0("free");
    let mut c = e.client();
    let h = host("giveback.example");
    for i in 1..=5 {
        admitted(&send(&mut c, "POST", ROTATE, &h), &format!("rotate {i}"));
    }
    for i in 6..=155 {
        let r = c.request("POST", ROTATE, &h);
        assert_auth0_429(&r, false, 5, &format!("rotate {i}"));
    }
    let s = send(&mut c, "GET", "/api/v2/stats", &h);
    let (limit, remaining, _) = admitted(&s, "stats after the refusals");
    assert_eq!(limit, 10);
    assert!(
        remaining >= 4,
        "tenant 10/s: at most 6 taken, got {remaining} left"
    );
    assert_eq!(
        e.counter("auth0.self-service.keys-signing-rotate.per-day.rejected"),
        150
    );
    assert_eq!(e.counter("auth0.tenant.per-second.rejected"), 0);
    assert_eq!(e.counter("auth0.tenant.per-minute.rejected"), 0);
}

/// 8 connections × 25 requests at once on the 5-per-day bucket: exactly 5
/// admitted, each seeing a different remaining count.
#[test]
fn parallel_requests_admit_exactly_the_limit() {
    let e = auth0("free");
    let port = e.port();
    let barrier = Barrier::new(8);
    let results: Vec<(u16, bool, Option<u64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut c = Client::connect(port);
                    barrier.wait();
                    (0..25)
                        .map(|_| {
                            let r = c.request("POST", ROTATE, &host("parallel.example"));
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
    assert_eq!(results.len(), 200);
    let mut remaining: Vec<u64> = results
        .iter()
        .filter(|(status, _, _)| *status == 200)
        .map(|(_, reached, rem)| {
            assert!(reached, "a 200 must come from upstream");
            rem.expect("admitted response without X-RateLimit-Remaining")
        })
        .collect();
    let refused = results.iter().filter(|(s, _, _)| *s == 429).count();
    assert_eq!(remaining.len() + refused, 200, "only 200s and 429s");
    assert!(results.iter().all(|(s, reached, _)| *s == 200 || !reached));
    remaining.sort_unstable();
    assert_eq!(remaining, vec![0, 1, 2, 3, 4], "exactly 5 admitted");
    let r = e
        .client()
        .request("POST", ROTATE, &host("parallel.example"));
    assert_auth0_429(&r, false, 5, "after the parallel run");
}

/// At most 2 import jobs active per tenant; an upstream refusal frees the place.
#[test]
fn import_jobs_two_active_per_tenant() {
    let e = auth0("enterprise-prod");
    let mut c = e.client();
    let job = |status: &'static str| [("host", "imports.example"), ("x-upstream-status", status)];
    // Refused upstream: never became active.
    for status in ["400", "500"] {
        let r = c.request("POST", IMPORTS, &job(status));
        assert_eq!(r.status.to_string(), status);
        assert!(r.reached_upstream());
    }
    let a = send(&mut c, "POST", IMPORTS, &job("201"));
    assert_eq!(a.r.status, 201, "{:?}", a.r.headers);
    assert!(a.r.reached_upstream());
    let r = c.request("POST", IMPORTS, &job("400"));
    assert_eq!(r.status, 400, "one active: a second is let through");
    let r = c.request("POST", IMPORTS, &job("201"));
    assert_eq!(r.status, 201, "second active job");
    for status in ["201", "400"] {
        let s = send(&mut c, "POST", IMPORTS, &job(status));
        assert_eq!(
            s.r.status,
            429,
            "third: {:?} {}",
            s.r.headers,
            s.r.body_str()
        );
        assert!(!s.r.reached_upstream());
        assert_eq!(s.r.json(), import_jobs_body());
        assert_eq!(s.r.header("content-type"), Some("application/json"));
        // Until the first accepted job's 60 s hold ends.
        let retry = s.r.header_u64("retry-after").expect("Retry-After");
        let lo = (a.t0 - CLOCK_SLACK + 60.0 - s.t1).ceil() as u64;
        let hi = (a.t1 + 60.0 - s.t0 + CLOCK_SLACK).ceil() as u64;
        assert!(
            (lo..=hi).contains(&retry),
            "Retry-After {retry} not in {lo}..={hi}"
        );
    }
    // Per tenant.
    let r = c.request(
        "POST",
        IMPORTS,
        &[("host", "imports-2.example"), ("x-upstream-status", "201")],
    );
    assert_eq!(r.status, 201);
    // Other job routes are not import-limited.
    let r = c.request("GET", IMPORTS, &job("201"));
    assert_eq!(r.status, 201);
    assert_eq!(
        e.counter("auth0.import-jobs.rejected"),
        2,
        "two refused imports"
    );
}

/// A job counts as active for `import_job_hold_seconds` after acceptance.
#[test]
fn import_job_hold_expires() {
    let config = json!({"vendor": "auth0", "plan": "free", "import_job_hold_seconds": 2});
    let e = Envoy::start(&config.to_string());
    let mut c = e.client();
    let job = [("host", "hold.example"), ("x-upstream-status", "201")];
    let a = send(&mut c, "POST", IMPORTS, &job);
    assert_eq!(a.r.status, 201);
    let b = send(&mut c, "POST", IMPORTS, &job);
    assert_eq!(b.r.status, 201);
    let s = send(&mut c, "POST", IMPORTS, &job);
    assert_eq!(s.r.status, 429);
    assert_eq!(s.r.json(), import_jobs_body());
    let retry = s.r.header_u64("retry-after").expect("Retry-After");
    let lo = (a.t0 - CLOCK_SLACK + 2.0 - s.t1).ceil().max(1.0) as u64;
    assert!(
        (lo..=2).contains(&retry),
        "Retry-After {retry} not in {lo}..=2"
    );
    let wait = b.t1 + 2.2 - now();
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
    for i in 1..=2 {
        let r = c.request("POST", IMPORTS, &job);
        assert_eq!(r.status, 201, "after the hold, job {i}: {}", r.body_str());
    }
    let r = c.request("POST", IMPORTS, &job);
    assert_eq!(r.status, 429);
    assert_eq!(r.json(), import_jobs_body());
}

/// SPA tokens with a `current_user` scope: 10 per minute per `sub`, whatever
/// the endpoint; anything else in Authorization is simply not SPA-limited.
#[test]
fn spa_current_user_tokens_are_limited_per_user() {
    let e = auth0("enterprise-prod");
    let mut c = e.client();
    let alice = bearer(&json!({"sub": "auth0|alice", "scope": "openid read:current_user"}));
    let users = |c: &mut Client, auth: &str| {
        send(
            c,
            "GET",
            "/api/v2/users",
            &[("host", "spa.example"), ("authorization", auth)],
        )
    };
    let first = users(&mut c, &alice);
    let (limit, remaining, reset) = admitted(&first, "alice 1");
    assert_eq!(
        (limit, remaining),
        (10, 9),
        "the SPA bucket is the tightest"
    );
    assert_reset(reset, first.t0, first.t1, 6.0, "alice 1: a token every 6 s");
    for i in 2..=10u64 {
        let s = users(&mut c, &alice);
        assert_eq!(admitted(&s, &format!("alice {i}")), (10, 10 - i, reset));
    }
    let s = users(&mut c, &alice);
    let retry = assert_auth0_429(&s.r, false, 10, "alice 11");
    let lo = (first.t0 - CLOCK_SLACK + 6.0 - s.t1).ceil().max(1.0) as u64;
    assert!(
        (lo..=6).contains(&retry),
        "Retry-After {retry} not in {lo}..=6"
    );
    // Same user on another endpoint, with another token (array scope), and
    // with the scheme in lower case: still alice.
    let alice_array =
        bearer(&json!({"sub": "auth0|alice", "scope": ["update:current_user_metadata"]}));
    let s = send(
        &mut c,
        "GET",
        "/api/v2/roles",
        &[("host", "spa.example"), ("authorization", &alice)],
    );
    assert_auth0_429(&s.r, false, 10, "alice on another endpoint");
    assert_auth0_429(
        &users(&mut c, &alice_array).r,
        false,
        10,
        "alice, array scope",
    );
    let lower = alice.replacen("Bearer", "bearer", 1);
    assert_auth0_429(&users(&mut c, &lower).r, false, 10, "alice, 'bearer'");
    // Another user has their own 10.
    let bob = bearer(&json!({"sub": "auth0|bob", "scope": "read:current_user"}));
    let s = users(&mut c, &bob);
    assert_eq!(lr(&s, "bob 1"), (10, 9));

    // Not SPA-limited: reported bucket is users (40/s), and all are admitted
    // although several carry alice's claims.
    let h = base64url::encode(JWT_HEADER);
    let alice_payload = base64url::encode(
        json!({"sub": "auth0|alice", "scope": "read:current_user"})
            .to_string()
            .as_bytes(),
    );
    let huge = format!("Bearer {h}.{}.sig", "A".repeat(70_000));
    let not_spa = [
        bearer(&json!({"sub": "auth0|alice", "scope": "read:users"})),
        bearer(&json!({"sub": "auth0|alice"})),
        bearer(&json!({"scope": "read:current_user"})),
        bearer(&json!({"sub": 42, "scope": "read:current_user"})),
        bearer(&json!({"sub": "", "scope": "read:current_user"})),
        "Bearer garbage".to_string(),
        "Bearer a.b".to_string(),
        "Bearer".to_string(),
        format!("Bearer {h}.{alice_payload}"),
        format!("Bearer {h}.{alice_payload}!.sig"),
        format!("Bearer {h}.{}.sig", base64url::encode(b"not json")),
        format!("Bearer {h}.%%%.sig"),
        "Basic YWxpY2U6cGFzc3dvcmQ=".to_string(),
        alice.replacen("Bearer", "Token", 1),
        huge,
    ];
    for auth in &not_spa {
        let s = users(&mut c, auth);
        let shown: String = auth.chars().take(80).collect();
        let (limit, _, _) = admitted(&s, &format!("not SPA: {shown}"));
        assert_eq!(limit, 40, "not SPA: {shown}");
    }
    // The VMs are alive and bob's count went on.
    let s = users(&mut c, &bob);
    assert_eq!(lr(&s, "bob 2"), (10, 8));
    assert_eq!(e.counter("auth0.spa.current-user.admitted"), 12);
    assert_eq!(e.counter("auth0.spa.current-user.rejected"), 4);
}

/// bucket_scopes with a header: each value of the header (and its absence)
/// has its own bucket for that row; the tenant buckets stay per tenant.
#[test]
fn header_bucket_scope_separates_values() {
    let config = json!({"vendor": "auth0", "plan": "free", "bucket_scopes": {
        "auth0.self-service.keys-signing-rotate": {"header": "x-team"}}});
    let e = Envoy::start(&config.to_string());
    let mut c = e.client();
    let teams: [&[(&str, &str)]; 3] = [
        &[("host", "teams.example"), ("x-team", "red")],
        &[("host", "teams.example"), ("x-team", "blue")],
        &[("host", "teams.example")],
    ];
    for (n, headers) in teams.iter().enumerate() {
        if n > 0 {
            // Let the tenant's 10/s refill: five admitted per team would
            // otherwise empty it.
            std::thread::sleep(Duration::from_millis(1100));
        }
        for i in 0..5u64 {
            let s = send(&mut c, "POST", ROTATE, headers);
            let what = format!("{headers:?} #{}", i + 1);
            assert_eq!(lr(&s, &what), (5, 4 - i), "{what}");
        }
        let r = c.request("POST", ROTATE, headers);
        assert_auth0_429(&r, false, 5, &format!("{headers:?} #6"));
    }
}

/// bucket_scopes "global": one bucket for every tenant.
#[test]
fn global_bucket_scope_is_shared_by_tenants() {
    let config = json!({"vendor": "auth0", "plan": "free", "bucket_scopes": {
        "auth0.self-service.keys-signing-rotate": "global"}});
    let e = Envoy::start(&config.to_string());
    let mut c = e.client();
    let tenants = [
        "one.example",
        "two.example",
        "one.example",
        "three.example",
        "two.example",
    ];
    for (i, t) in tenants.iter().enumerate() {
        let s = send(&mut c, "POST", ROTATE, &host(t));
        assert_eq!(admitted(&s, t).1, 4 - i as u64, "{t}");
    }
    for t in ["four.example", "one.example"] {
        assert_auth0_429(&c.request("POST", ROTATE, &host(t)), false, 5, t);
    }
    // The tenant buckets stay per tenant.
    let s = send(&mut c, "GET", "/api/v2/stats", &host("four.example"));
    assert_eq!(lr(&s, "four stats"), (10, 9));
}

/// /oidc/register is not under /api/v2: the tenant limit does not apply.
#[test]
fn oidc_register_is_outside_the_tenant_limit() {
    let e = auth0("free");
    let mut c = e.client();
    let h = host("oidc.example");
    let mut n = 0;
    loop {
        let r = c.request("GET", "/api/v2/stats", &h);
        n += 1;
        if r.status == 429 {
            assert_auth0_429(&r, true, 10, "tenant exhausted");
            break;
        }
        assert!(n < 40, "no 429 after {n}");
    }
    let s = send(&mut c, "POST", "/oidc/register", &h);
    let (limit, remaining, reset) = admitted(&s, "oidc register");
    assert_eq!((limit, remaining), (5, 4));
    assert_reset(reset, s.t0, s.t1, 0.2, "oidc register");
}

/// 8 connections × 3 import jobs at once (all accepted upstream): exactly 2
/// become active, every other one is refused locally.
#[test]
fn parallel_import_jobs_accept_exactly_two() {
    let e = auth0("enterprise-prod");
    let port = e.port();
    let barrier = Barrier::new(8);
    let statuses: Vec<(u16, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut c = Client::connect(port);
                    barrier.wait();
                    (0..3)
                        .map(|_| {
                            let job = [
                                ("host", "parallel-imports.example"),
                                ("x-upstream-status", "201"),
                            ];
                            let r = c.request("POST", IMPORTS, &job);
                            (r.status, r.reached_upstream())
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
    let accepted = statuses.iter().filter(|(s, up)| *s == 201 && *up).count();
    let refused = statuses.iter().filter(|(s, up)| *s == 429 && !up).count();
    assert_eq!((accepted, refused), (2, 22), "{statuses:?}");
    let mut c = e.client();
    let r = c.request(
        "POST",
        IMPORTS,
        &[
            ("host", "parallel-imports.example"),
            ("x-upstream-status", "201"),
        ],
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.json(), import_jobs_body());
}
