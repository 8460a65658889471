//! End-to-end: the Okta policies in a real Envoy (--concurrency 2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
use common::*;

use std::collections::BTreeSet;
use std::sync::Barrier;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LOGS: &str = "/api/v1/logs";
const LOGS_METRIC: &str = "okta.management.logs";

fn okta(plan: &str) -> Envoy {
    Envoy::start(&format!(r#"{{"vendor":"okta","plan":"{plan}"}}"#))
}

fn okta_with(plan: &str, concurrency: u32) -> Envoy {
    Envoy::start_with(EnvoyOptions {
        plugin_config: format!(r#"{{"vendor":"okta","plan":"{plan}"}}"#),
        concurrency,
        ..Default::default()
    })
}

/// The three Okta rate-limit headers of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rl {
    limit: u64,
    remaining: u64,
    reset: u64,
}

fn rl(r: &Response) -> Rl {
    let h = |name: &str| {
        r.header_u64(name).unwrap_or_else(|| {
            panic!(
                "{name} missing or not a number in the {} response: {:?}",
                r.status, r.headers
            )
        })
    };
    Rl {
        limit: h("x-rate-limit-limit"),
        remaining: h("x-rate-limit-remaining"),
        reset: h("x-rate-limit-reset"),
    }
}

/// Names of any rate-limit headers (Okta's or the IETF draft's) on a response.
fn rate_limit_headers(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| k.starts_with("x-rate-limit") || k.starts_with("ratelimit"))
        .collect()
}

/// A request forwarded with no rate-limit headers at all.
fn assert_unlimited(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}: {:?} {}", r.headers, r.body_str());
    assert!(r.reached_upstream(), "{what} should be forwarded");
    assert!(
        rate_limit_headers(r).is_empty(),
        "{what} must carry no rate-limit headers: {:?}",
        r.headers
    );
}

/// A 200 from upstream reporting `limit` and `remaining`; returns the headers.
fn assert_admitted(r: &Response, limit: u64, remaining: u64, what: &str) -> Rl {
    assert_eq!(
        r.status,
        200,
        "{what}: expected 200 (limit {limit}, remaining {remaining}); got {:?} {}",
        r.headers,
        r.body_str()
    );
    assert!(r.reached_upstream(), "{what}: a 200 is forwarded upstream");
    let got = rl(r);
    assert_eq!(
        (got.limit, got.remaining),
        (limit, remaining),
        "{what}: (X-Rate-Limit-Limit, X-Rate-Limit-Remaining)"
    );
    got
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), checking the
/// weekday too; None if it is not exactly that form.
fn imf_fixdate(s: &str) -> Option<u64> {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    if b.len() != 29 || &s[3..5] != ", " || &s[25..] != " GMT" {
        return None;
    }
    if [7, 11, 16].iter().any(|&i| b[i] != b' ') || b[19] != b':' || b[22] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let t = &s[r];
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (day, year) = (num(5..7)?, num(12..16)?);
    let (hh, mm, ss) = (num(17..19)?, num(20..22)?, num(23..25)?);
    let month = MONTHS.iter().position(|m| *m == &s[8..11])? as u64 + 1;
    if !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    (DAYS[(days % 7) as usize] == &s[..3]).then_some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Okta's 429, in full: status, headers, body; not forwarded. `sent` is the range of
/// epoch seconds within which the request was sent and answered.
fn assert_okta_429(r: &Response, limit: u64, reset: u64, sent: (u64, u64), what: &str) {
    assert_eq!(r.status, 429, "{what}: {:?} {}", r.headers, r.body_str());
    assert!(
        !r.reached_upstream(),
        "{what}: a 429 must not reach upstream"
    );
    assert_eq!(
        rl(r),
        Rl {
            limit,
            remaining: 0,
            reset
        },
        "{what}: rate-limit headers of the 429"
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    let date = r
        .header("date")
        .unwrap_or_else(|| panic!("{what}: no date"));
    let when = imf_fixdate(date).unwrap_or_else(|| panic!("{what}: date {date:?} not IMF"));
    assert!(
        (sent.0..=sent.1).contains(&when),
        "{what}: date {date:?} ({when}) outside the request's time {sent:?}"
    );
    let body = r.json();
    let id = body["errorId"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: errorId is not a string: {body}"))
        .to_string();
    assert!(
        id.len() == 25 && id.starts_with("oae") && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{what}: errorId {id:?} should be `oae` + 22 alphanumerics, as Okta's are"
    );
    assert_eq!(
        body,
        serde_json::json!({
            "errorCode": "E0000047",
            "errorSummary": "API call exceeded rate limit due to too many requests.",
            "errorLink": "E0000047",
            "errorId": id,
            "errorCauses": [],
        }),
        "{what}: 429 body"
    );
    let request_id = r.header("x-okta-request-id").unwrap_or_default();
    assert!(
        request_id.len() == 32 && request_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{what}: X-Okta-Request-Id {request_id:?} should be 32 hex digits, as Okta's are"
    );
    assert_ne!(
        request_id, id,
        "{what}: Okta's errorId is never its request id"
    );
    assert_reset_within_a_window_of_date(r, what);
}

/// Okta's Reset is the window's end rounded down, so it is never more than the window (60 s)
/// after the response's Date.
fn assert_reset_within_a_window_of_date(r: &Response, what: &str) {
    let date = r.header("date").and_then(imf_fixdate);
    let reset = r.header_u64("x-rate-limit-reset");
    let (Some(date), Some(reset)) = (date, reset) else {
        panic!(
            "{what}: Date and X-Rate-Limit-Reset needed: {:?}",
            r.headers
        )
    };
    assert!(
        reset >= date && reset - date <= 60,
        "{what}: Reset {reset} - Date {date} = {} s, Okta's is at most 60",
        reset as i64 - date as i64
    );
}

/// Sends one request and returns it with the epoch seconds before and after.
fn timed(c: &mut Client, method: &str, path: &str, h: &[(&str, &str)]) -> (Response, (u64, u64)) {
    let before = now_epoch_secs();
    let r = c.request(method, path, h);
    (r, (before, now_epoch_secs()))
}

/// The first request of a window: Okta's Reset is exactly its Date + 60 s (the window's end,
/// rounded down), and the Date is within the time the request was sent.
fn assert_fresh_reset(r: &Response, sent: (u64, u64), what: &str) {
    let date = r
        .header("date")
        .and_then(imf_fixdate)
        .unwrap_or_else(|| panic!("{what}: no IMF-fixdate Date: {:?}", r.headers));
    assert!(
        (sent.0..=sent.1).contains(&date),
        "{what}: Date {date} outside {sent:?}"
    );
    assert_eq!(
        r.header_u64("x-rate-limit-reset"),
        Some(date + 60),
        "{what}: X-Rate-Limit-Reset of a window's first request is Date + 60"
    );
}

fn sleep_until_epoch(secs: u64) {
    let target = UNIX_EPOCH + Duration::from_secs(secs);
    if let Ok(wait) = target.duration_since(SystemTime::now()) {
        std::thread::sleep(wait);
    }
}

// ---------------------------------------------------------------------------------------------

/// integrator-free GET /api/v1/logs: 20 per minute, then Okta's 429.
#[test]
fn logs_bucket_exact_boundary_and_okta_429() {
    let envoy = okta("integrator-free");
    let mut c = envoy.client();
    let (r, sent) = timed(&mut c, "GET", LOGS, &[]);
    let first = assert_admitted(&r, 20, 19, "request 1");
    assert_fresh_reset(&r, sent, "request 1");
    for i in 2..=20 {
        let r = c.request("GET", LOGS, &[]);
        let got = assert_admitted(&r, 20, 20 - i, &format!("request {i}"));
        assert_eq!(got.reset, first.reset, "request {i}: the window's reset");
    }
    let mut ids = Vec::new();
    for i in 21..=22 {
        let (r, sent) = timed(&mut c, "GET", LOGS, &[]);
        assert_okta_429(&r, 20, first.reset, sent, &format!("request {i}"));
        ids.push(
            r.header("x-okta-request-id")
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_ne!(ids[0], ids[1], "each 429 has its own request id");
    assert_eq!(envoy.counter(&format!("{LOGS_METRIC}.admitted")), 20);
    assert_eq!(envoy.counter(&format!("{LOGS_METRIC}.rejected")), 2);
    // The rejections did not count against the upstream: the next bucket over is untouched.
    let r = c.request("GET", "/api/v1/events", &[]);
    assert_admitted(&r, 20, 19, "GET /api/v1/events (its own bucket)");
}

/// Query strings and other spellings of /api/v1/logs count in the logs bucket.
#[test]
fn query_strings_and_odd_spellings_share_the_bucket() {
    let envoy = okta("integrator-free");
    let mut c = envoy.client();
    let first = assert_admitted(&c.request("GET", LOGS, &[]), 20, 19, LOGS);
    let spellings = [
        "/api/v1/logs?since=x",
        "/api/v1/logs?since=2024-01-01T00:00:00Z&limit=1000&after=a%2Fb",
        "//api/v1//logs/",
        "/api/v1/logs/",
        "/api/v1/%6cogs",
        "/api/v1/%6Cogs",
        "/api/v1/%6c%6f%67%73",
        "/api/v1/events/../logs",
        "/api/v1/./logs",
        "/api/v1/apps/../../v1/logs?x=1",
    ];
    for (i, path) in spellings.iter().enumerate() {
        let r = c.request("GET", path, &[]);
        let got = assert_admitted(&r, 20, 18 - i as u64, path);
        assert_eq!(got.reset, first.reset, "{path}: same window");
    }
    // `..` was resolved, not routed to the events bucket, which is still full.
    assert_admitted(&c.request("GET", "/api/v1/events", &[]), 20, 19, "events");
    // A near miss is not /api/v1/logs: the catch-all (100 in both catalogs).
    assert_admitted(&c.request("GET", "/api/v1/logsx", &[]), 100, 99, "logsx");
    assert_eq!(
        envoy.counter(&format!("{LOGS_METRIC}.admitted")),
        1 + spellings.len() as u64
    );
}

/// Buckets are per org: `:authority` lower-cased, port stripped.
#[test]
fn each_host_has_its_own_bucket() {
    let envoy = okta("integrator-free");
    let mut c = envoy.client();
    let a = [("Host", "a.example.com")];
    let first = assert_admitted(&c.request("GET", LOGS, &a), 20, 19, "a #1");
    for i in 2..=20 {
        assert_admitted(&c.request("GET", LOGS, &a), 20, 20 - i, "a");
    }
    let (r, sent) = timed(&mut c, "GET", LOGS, &a);
    assert_okta_429(&r, 20, first.reset, sent, "a.example.com #21");
    for host in ["A.EXAMPLE.COM:443", "a.example.com:8080", "A.Example.Com"] {
        let (r, sent) = timed(&mut c, "GET", LOGS, &[("Host", host)]);
        assert_okta_429(&r, 20, first.reset, sent, host);
    }
    let b = assert_admitted(
        &c.request("GET", LOGS, &[("Host", "B.Example.com:8443")]),
        20,
        19,
        "B.Example.com:8443",
    );
    assert!(b.reset >= first.reset, "b's window opened after a's");
    assert_admitted(
        &c.request("GET", LOGS, &[("Host", "b.example.com")]),
        20,
        18,
        "b.example.com",
    );
    assert_admitted(&c.request("GET", LOGS, &[]), 20, 19, "Host: localhost");
}

/// Method-specific rows of the management table on enterprise and workforce-identity.
#[test]
fn method_specific_rows() {
    let envoy = okta("enterprise");
    let mut c = envoy.client();
    // (method, path, limit, remaining): each bucket counts on from its own state.
    let cases: [(&str, &str, u64, u64); 13] = [
        ("GET", "/api/v1/users", 600, 599),
        ("POST", "/api/v1/users", 600, 598),
        ("GET", "/api/v1/users?q=ab&limit=5", 600, 597),
        ("GET", "/api/v1/users/00u1", 1000, 999),
        ("GET", "/api/v1/users/someone@example.com", 1000, 998),
        ("DELETE", "/api/v1/users/00u1", 600, 599),
        ("PUT", "/api/v1/users/00u1", 600, 598),
        ("POST", "/api/v1/users/00u2", 600, 597),
        ("GET", "/api/v1/apps", 100, 99),
        ("GET", "/api/v1/apps/0oa1", 600, 599),
        ("GET", "/api/v1/apps/0oa1/users", 100, 98),
        ("DELETE", "/api/v1/apps/0oa2", 600, 598),
        ("GET", "/api/v1/groups/00g1", 600, 599),
    ];
    for (method, path, limit, remaining) in cases {
        let r = c.request(method, path, &[]);
        assert_admitted(&r, limit, remaining, &format!("enterprise {method} {path}"));
    }
    assert_admitted(&c.request("GET", "/api/v1/groups", &[]), 600, 599, "groups");
    assert_eq!(
        envoy.counter("okta.management.user-by-id-write.admitted"),
        3
    );
    assert_eq!(envoy.counter("okta.management.user-get.admitted"), 2);
    drop(envoy);

    let envoy = okta("workforce-identity");
    let mut c = envoy.client();
    let cases: [(&str, &str, u64, u64); 4] = [
        ("GET", "/api/v1/groups/00g1", 1000, 999),
        ("GET", "/api/v1/groups", 500, 499),
        ("GET", "/api/v1/users/00u1", 2000, 1999),
        ("GET", "/api/v1/apps/0oa1", 500, 499),
    ];
    for (method, path, limit, remaining) in cases {
        let r = c.request(method, path, &[]);
        assert_admitted(&r, limit, remaining, &format!("workforce {method} {path}"));
    }
}

/// Requests that only the /api/v1 catch-all matches count in both catalogs' api-v1 buckets
/// (one-app: management 600, end-user 300) and report the tighter one.
#[test]
fn catch_all_counts_in_both_catalogs() {
    let envoy = okta("one-app");
    let mut c = envoy.client();
    let requests = [
        ("PATCH", "/api/v1/users/00u1"),
        ("GET", "/api/v1/meta"),
        ("PUT", "/api/v1/users"),
        ("GET", "/api/v1/users/00u1/groups"),
    ];
    let mut reset = None;
    for i in 1..=300u64 {
        let (method, path) = requests[(i as usize - 1) % requests.len()];
        let r = c.request(method, path, &[]);
        let got = assert_admitted(&r, 300, 300 - i, &format!("#{i} {method} {path}"));
        assert_eq!(
            *reset.get_or_insert(got.reset),
            got.reset,
            "#{i}: one window"
        );
    }
    let reset = reset.unwrap();
    let m = |s: &str| envoy.counter(&format!("okta.{s}"));
    assert_eq!(m("management.api-v1.admitted"), 300, "management api-v1");
    assert_eq!(m("end-user.api-v1.admitted"), 300, "end-user api-v1");
    for (method, path) in [requests[0], requests[1]] {
        let (r, sent) = timed(&mut c, method, path, &[]);
        assert_okta_429(&r, 300, reset, sent, &format!("#301+ {method} {path}"));
    }
    // A more specific management row is not affected by the exhausted catch-all.
    assert_admitted(&c.request("GET", "/api/v1/users", &[]), 600, 599, "users");
    assert_admitted(
        &c.request("GET", "/api/v1/users/00u1", &[]),
        1000,
        999,
        "get",
    );
    // Rejected requests were admitted by neither bucket.
    assert_eq!(m("end-user.api-v1.rejected"), 2);
    assert_eq!(m("end-user.api-v1.admitted"), 300);
    assert_eq!(
        m("management.api-v1.admitted"),
        300,
        "the management api-v1 bucket admitted exactly the 300 requests that went upstream \
         (a request the end-user bucket then refused is not admitted)"
    );
    assert_eq!(m("management.api-v1.rejected"), 0);
}

/// Public metadata endpoints and unmatched paths: forwarded, never limited, no headers.
#[test]
fn exempt_and_unmatched_paths_have_no_limits() {
    let envoy = okta("integrator-free");
    let mut c = envoy.client();
    let exempt = [
        "/oauth2/v1/keys",
        "/oauth2/v1/keys?client_id=0oa1",
        "/oauth2/v1/keys/",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/oauth2/default/v1/keys",
        "/oauth2/aus1/v1/keys",
        "/oauth2/default/.well-known/openid-configuration",
        "/oauth2/aus1/.well-known/oauth-authorization-server",
    ];
    let unmatched = [
        "/",
        "/login",
        "/api/v2/users",
        "/api",
        "/apiv1/users",
        "/oauth2x/v1/token",
    ];
    let check_all = |c: &mut Client, when: &str| {
        for path in exempt.iter().chain(&unmatched) {
            for method in ["GET", "POST"] {
                let r = c.request(method, path, &[]);
                assert_unlimited(&r, &format!("{method} {path} ({when})"));
            }
        }
    };
    check_all(&mut c, "fresh");
    // Exhaust the three /oauth2 buckets: org AS 300, custom AS 300 (all custom servers of the
    // org), all other OAuth2 100.
    let buckets = [
        ("/oauth2/v1/token", "/oauth2/v1/authorize", 300),
        ("/oauth2/default/v1/token", "/oauth2/aus9/v1/authorize", 300),
        ("/oauth2/foo", "/oauth2/default/other", 100),
    ];
    for (path, other, limit) in buckets {
        let first = assert_admitted(&c.request("POST", path, &[]), limit, limit - 1, path);
        for i in 2..=limit {
            let r = c.request("POST", path, &[]);
            assert_admitted(&r, limit, limit - i, &format!("{path} #{i}"));
        }
        for p in [path, other] {
            let (r, sent) = timed(&mut c, "GET", p, &[]);
            assert_okta_429(&r, limit, first.reset, sent, &format!("{p} after {path}"));
        }
    }
    check_all(&mut c, "after the /oauth2 buckets are exhausted");
    for id in ["oauth2-org-as", "oauth2-custom-as", "oauth2-other"] {
        let name = format!("okta.end-user.{id}.rejected");
        assert_eq!(envoy.counter(&name), 2, "{name}");
    }
}

/// Which catalogs apply is configurable; developer-free is integrator-free.
#[test]
fn catalogs_option_and_plan_alias() {
    let config = r#"{"vendor":"okta","plan":"one-app","catalogs":["management"]}"#;
    let envoy = Envoy::start(config);
    let mut c = envoy.client();
    assert_unlimited(&c.request("POST", "/oauth2/v1/token", &[]), "token");
    assert_unlimited(&c.request("GET", "/oauth2/default/v1/authorize", &[]), "as");
    let cases = [
        ("PATCH", "/api/v1/users/00u1", 600, 599),
        ("POST", "/api/v1/authn", 600, 598),
        ("GET", "/oauth2/v1/clients", 100, 99),
        ("GET", "/api/v1/logs", 50, 49),
    ];
    for (method, path, limit, remaining) in cases {
        let r = c.request(method, path, &[]);
        assert_admitted(&r, limit, remaining, &format!("management only: {path}"));
    }
    drop(envoy);

    let config = r#"{"vendor":"okta","plan":"developer-free","catalogs":["end-user"]}"#;
    let envoy = Envoy::start(config);
    let mut c = envoy.client();
    let cases = [
        ("GET", "/api/v1/logs", 100, 99),
        ("GET", "/api/v1/apps/0oa1", 100, 98),
        ("POST", "/api/v1/authn", 100, 99),
        ("POST", "/oauth2/v1/token", 300, 299),
        ("GET", "/oauth2/v1/clients", 300, 298),
    ];
    for (method, path, limit, remaining) in cases {
        let r = c.request(method, path, &[]);
        assert_admitted(&r, limit, remaining, &format!("end-user only: {path}"));
    }
    assert_unlimited(&c.request("GET", "/oauth2/v1/keys", &[]), "keys");
}

/// Opens keep-alive clients (each a connection, kept open) until every worker holds at least
/// one of them and there are at least `min`; the per-worker listener gauges tell.
fn clients_on_every_worker(envoy: &Envoy, workers: u32, min: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    loop {
        let mut c = envoy.client();
        assert_unlimited(&c.request("GET", "/", &[]), "warm-up GET /");
        clients.push(c);
        let stats = envoy.stats();
        let active = |w: u32| {
            let key = format!("listener.127.0.0.1_0.worker_{w}.downstream_cx_active: ");
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&key)?.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {key} in /stats"))
        };
        let per_worker: Vec<u64> = (0..workers).map(active).collect();
        if clients.len() >= min && per_worker.iter().all(|&n| n > 0) {
            return clients;
        }
        assert!(
            clients.len() < 64,
            "64 connections and still a worker without one: {per_worker:?}"
        );
    }
}

/// `threads` threads share `clients` (each client used by one thread only) and send
/// `total` requests between them, all released at once.
fn hammer(clients: Vec<Client>, threads: usize, total: usize, path: &str) -> Vec<Response> {
    let mut groups: Vec<Vec<Client>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, c) in clients.into_iter().enumerate() {
        groups[i % threads].push(c);
    }
    let start = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .enumerate()
            .map(|(t, mut group)| {
                let start = &start;
                let n = total / threads + usize::from(t < total % threads);
                s.spawn(move || {
                    start.wait();
                    (0..n)
                        .map(|i| {
                            let k = i % group.len();
                            group[k].request("GET", path, &[])
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    })
}

/// Exactly `limit` of the responses are 200, with each Remaining from limit-1 to 0 once;
/// the rest are Okta 429s.
fn assert_exact(responses: &[Response], limit: u64, what: &str) {
    let mut remaining = BTreeSet::new();
    let mut rejected = 0;
    let resets: BTreeSet<u64> = responses.iter().map(|r| rl(r).reset).collect();
    for r in responses {
        match r.status {
            200 => {
                assert!(r.reached_upstream(), "{what}: 200 not from upstream");
                let got = rl(r);
                assert_eq!(got.limit, limit, "{what}");
                assert!(
                    remaining.insert(got.remaining),
                    "{what}: Remaining {} reported twice",
                    got.remaining
                );
            }
            429 => {
                assert!(!r.reached_upstream(), "{what}: 429 forwarded");
                assert_eq!(
                    (rl(r).limit, rl(r).remaining),
                    (limit, 0),
                    "{what}: 429 headers"
                );
                rejected += 1;
            }
            s => panic!("{what}: unexpected status {s}: {:?}", r.headers),
        }
    }
    assert_eq!(
        remaining.len() as u64,
        limit,
        "{what}: admitted {} of {} requests, limit {limit}",
        remaining.len(),
        responses.len()
    );
    assert_eq!(remaining, (0..limit).collect(), "{what}: Remaining values");
    assert_eq!(rejected, responses.len() as u64 - limit, "{what}: rejected");
    assert_eq!(resets.len(), 1, "{what}: one window, one reset: {resets:?}");
}

/// 8 threads with their own connections, spread over every worker: exactly `limit` admitted.
#[test]
fn parallel_clients_are_counted_exactly() {
    let envoy = okta("integrator-free");
    let clients = clients_on_every_worker(&envoy, 2, 8);
    let responses = hammer(clients, 8, 200, LOGS);
    assert_eq!(responses.len(), 200);
    assert_exact(&responses, 20, "concurrency 2, logs (20)");
    assert_eq!(envoy.counter(&format!("{LOGS_METRIC}.admitted")), 20);
    assert_eq!(envoy.counter(&format!("{LOGS_METRIC}.rejected")), 180);
    drop(envoy);

    let envoy = okta_with("integrator-free", 4);
    let clients = clients_on_every_worker(&envoy, 4, 8);
    let responses = hammer(clients, 8, 400, "/api/v1/apps/0oa1");
    assert_eq!(responses.len(), 400);
    assert_exact(&responses, 100, "concurrency 4, app-by-id (100)");
    let name = "okta.management.app-by-id";
    assert_eq!(envoy.counter(&format!("{name}.admitted")), 100);
    assert_eq!(envoy.counter(&format!("{name}.rejected")), 300);
}

/// A bad configuration keeps Envoy from starting, with a log line naming the field.
#[test]
fn bad_configs_are_refused_with_the_field_named() {
    let cases = [
        (
            r#"{"vendor":"okta","plan":"gold"}"#,
            "configuration refused: field `plan`: ",
            &["gold", "integrator-free", "one-app", "workforce-identity"][..],
        ),
        (
            r#"{"vendor":"okta","plan":"enterprise","plna":"x"}"#,
            "configuration refused: field `plna`: ",
            &["unknown field"][..],
        ),
        (
            r#"{"vendor":"okta","plan":"enterprise""#,
            "configuration refused: field `(document)`: ",
            &["JSON"][..],
        ),
    ];
    for (config, prefix, mentions) in cases {
        let (line, text) = refusal(config);
        assert!(text.starts_with(prefix), "{config}: {line}");
        for m in mentions {
            assert!(
                text.contains(m),
                "{config}: the line should mention {m}: {line}"
            );
        }
    }
}

/// The window ends 60 s after its first request; the next window opens at the next request.
#[test]
fn after_the_reset_the_window_rolls_over() {
    let envoy = okta("integrator-free");
    let mut c = envoy.client();
    let first = assert_admitted(&c.request("GET", LOGS, &[]), 20, 19, "#1");
    for i in 2..=20 {
        assert_admitted(&c.request("GET", LOGS, &[]), 20, 20 - i, "fill");
    }
    let (r, sent) = timed(&mut c, "GET", LOGS, &[]);
    assert_okta_429(&r, 20, first.reset, sent, "#21");
    let reset = first.reset;

    // Two seconds before the reset second the window is still closed.
    sleep_until_epoch(reset - 3);
    let (r, sent) = timed(&mut c, "GET", LOGS, &[]);
    if sent.1 + 2 <= reset {
        assert_okta_429(&r, 20, reset, sent, "just before the reset");
    }

    // Three seconds after it, the first request opens a new window there (not at `reset`).
    sleep_until_epoch(reset + 3);
    let mut c = envoy.client(); // the old connection may have idled out
    let (r, sent) = timed(&mut c, "GET", LOGS, &[]);
    let next = assert_admitted(&r, 20, 19, "first request after the reset");
    assert_fresh_reset(&r, sent, "new window");
    assert!(next.reset >= reset + 63, "{} vs {reset}", next.reset);
    assert_admitted(&c.request("GET", LOGS, &[]), 20, 18, "second request");
    assert_eq!(envoy.counter(&format!("{LOGS_METRIC}.admitted")), 22);
}

/// Requests without a usable Host neither crash the VM nor share an org's bucket.
#[test]
fn missing_host_does_not_break_the_filter() {
    let envoy = okta("integrator-free");
    let raws: [&[u8]; 4] = [
        b"GET /api/v1/logs HTTP/1.0\r\n\r\n",
        b"GET /api/v1/logs HTTP/1.0\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/logs HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/logs HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
    ];
    // Each a few times on fresh connections, so that every worker sees them.
    for raw in raws {
        for _ in 0..4 {
            let r = parse_response(&raw_request(envoy.port(), raw));
            assert!(
                matches!(r.status, 200 | 400 | 426 | 429),
                "{:?}: status {} {:?}",
                String::from_utf8_lossy(raw),
                r.status,
                r.headers
            );
        }
    }
    assert!(envoy.is_running(), "Envoy died");
    // Every worker's VM still filters: fresh connections, counted exactly from a full bucket.
    for i in 1..=10 {
        let r = envoy.client().request("GET", LOGS, &[]);
        assert_admitted(&r, 20, 20 - i, &format!("after the odd requests, #{i}"));
    }
    let logs = envoy.logs();
    assert!(!logs.contains("panicked"), "the filter panicked:\n{logs}");
}
