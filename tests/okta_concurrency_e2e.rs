//! End-to-end: Okta's concurrency limit (75 requests in flight per org, 35 on Integrator Free),
//! counted across all workers, against a slow upstream (Envoy's fault filter holding each
//! request after the filter counted it), on 2 and 4 workers. A request stops being in flight
//! however its stream ends: response complete, the filter's own 429, an upstream reset, the
//! router's local reply, or the client going away mid-request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
mod slow_listener;
use common::*;
use slow_listener::DELAY;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const USERS: &str = "/api/v1/users";
const ORG: &str = "acme.okta.com";

/// Enterprise (75 in flight), stats under `slow`, the users row raised so that thousands of
/// requests never meet the per-minute limit.
fn config(plan: &str) -> String {
    format!(
        r#"{{"vendor": "okta", "plan": "{plan}", "stat_prefix": "slow",
            "overrides": [{{"bucket": "okta.management.users", "limit": 1000000}}]}}"#
    )
}

fn stat(envoy: &Envoy, what: &str) -> u64 {
    envoy
        .stat(&format!("slow.okta.concurrency.{what}"))
        .unwrap_or(0)
}

/// Polls until the concurrency bucket has admitted `n` requests in all.
fn wait_admitted(envoy: &Envoy, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = stat(envoy, "admitted");
        if got >= n {
            assert_eq!(got, n, "more admitted than sent");
            return;
        }
        assert!(Instant::now() < deadline, "only {got} of {n} admitted");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A request written on its own connection and left in flight (held `delay_ms` upstream).
fn open(port: u16, host: &str, delay_ms: u64, extra: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!("GET {USERS} HTTP/1.1\r\nHost: {host}\r\n{DELAY}: {delay_ms}\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s
}

fn finish(s: TcpStream) -> Response {
    let mut r = std::io::BufReader::new(s);
    read_response(&mut r, false).unwrap().0
}

/// Okta's concurrency 429: E0000047, Limit 0, Remaining 0, an estimated Reset just ahead of
/// Date, not forwarded.
#[track_caller]
fn assert_concurrency_429(r: &Response, what: &str) {
    assert_eq!(r.status, 429, "{what}: {:?} {}", r.headers, r.body_str());
    assert!(!r.reached_upstream(), "{what}");
    assert_eq!(r.header_u64("x-rate-limit-limit"), Some(0), "{what}");
    assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(0), "{what}");
    let body = r.json();
    assert_eq!(body["errorCode"], "E0000047", "{what}: {body}");
    assert_eq!(
        body["errorSummary"],
        "API call exceeded rate limit due to too many requests."
    );
    let date = r.header("date").unwrap_or_default();
    let reset = r.header_u64("x-rate-limit-reset").unwrap();
    let now = now_epoch_secs();
    assert!(
        (now.saturating_sub(2)..=now + 2).contains(&reset),
        "{what}: estimated Reset {reset} (Date {date}) should be about now"
    );
}

/// Fills the org's `limit` places with requests held `delay_ms`, checks that one more is
/// refused with the concurrency 429, and returns the held connections.
fn fill(envoy: &Envoy, port: u16, limit: u64, delay_ms: u64, what: &str) -> Vec<TcpStream> {
    let before = stat(envoy, "admitted");
    let held: Vec<TcpStream> = (0..limit).map(|_| open(port, ORG, delay_ms, "")).collect();
    wait_admitted(envoy, before + limit);
    let r = Client::connect(port).request("GET", USERS, &[("host", ORG)]);
    assert_concurrency_429(&r, &format!("{what}: request {} in flight", limit + 1));
    held
}

/// With nothing in flight: `limit` held requests fit and the next is refused; then they end.
fn assert_exactly_free(envoy: &Envoy, port: u16, limit: u64, what: &str) {
    for s in fill(envoy, port, limit, 10_000, what) {
        drop(s);
    }
    wait_until_admitted(port, what);
}

/// Polls until a request is admitted again (the aborted ones have been counted down).
fn wait_until_admitted(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = Client::connect(port).request("GET", USERS, &[("host", ORG)]);
        if r.status == 200 {
            return;
        }
        assert_concurrency_429(&r, what);
        assert!(Instant::now() < deadline, "{what}: places never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn limit_then_complete(workers: u32) {
    let (envoy, port) = slow_listener::start(&config("enterprise"), workers);
    let held = fill(&envoy, port, 75, 2000, "75 held");
    assert_eq!(stat(&envoy, "rejected"), 1);
    // Another org is not affected; below the limit the headers are the per-minute row's.
    let r = Client::connect(port).request("GET", USERS, &[("host", "other.okta.com")]);
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert_eq!(r.header_u64("x-rate-limit-limit"), Some(1_000_000));
    // The 75 complete, each with the usual headers; then the places are all free again.
    for (i, s) in held.into_iter().enumerate() {
        let r = finish(s);
        assert_eq!(r.status, 200, "held request {i}");
        assert!(r.reached_upstream());
        assert_eq!(r.header_u64("x-rate-limit-limit"), Some(1_000_000));
    }
    let r = Client::connect(port).request("GET", USERS, &[("host", ORG)]);
    assert_eq!(r.status, 200, "after the 75 completed: {:?}", r.headers);
    // Exactly 75 again: nothing leaked, nothing given back twice.
    assert_exactly_free(&envoy, port, 75, "after completion");
    assert!(!envoy.logs().contains("panicked"));
}

#[test]
fn the_76th_in_flight_is_refused_on_2_workers() {
    limit_then_complete(2);
}

#[test]
fn the_76th_in_flight_is_refused_on_4_workers() {
    limit_then_complete(4);
}

#[test]
fn integrator_free_allows_35_in_flight() {
    let (envoy, port) = slow_listener::start(&config("integrator-free"), 2);
    let held = fill(&envoy, port, 35, 1000, "integrator-free");
    for s in held {
        assert_eq!(finish(s).status, 200);
    }
    wait_until_admitted(port, "integrator-free after completion");
}

/// Clients that hang up mid-request (while held upstream) give their places back, on 2 and 4
/// workers.
#[test]
fn aborted_requests_give_their_places_back() {
    for workers in [2, 4] {
        let (envoy, port) = slow_listener::start(&config("enterprise"), workers);
        let what = format!("{workers} workers");
        let held = fill(&envoy, port, 75, 30_000, &what);
        drop(held); // every client goes away mid-request
        wait_until_admitted(port, &what);
        assert_exactly_free(&envoy, port, 75, &format!("{what}, after the aborts"));
    }
}

/// An upstream reset (the server hangs up before answering) and the router's own local reply
/// (no one listening upstream) end the request's time in flight too, as does the filter's own
/// per-minute 429.
#[test]
fn upstream_resets_local_replies_and_429s_give_places_back() {
    let (envoy, port) = slow_listener::start(&config("enterprise"), 2);
    for (kind, n) in [("reset", 80), ("refused", 80)] {
        let mut c = Client::connect(port);
        for i in 0..n {
            let r = c.request("GET", USERS, &[("host", ORG), ("x-test-upstream", kind)]);
            assert_eq!(
                r.status,
                503,
                "{kind} #{i}: {:?} {}",
                r.headers,
                r.body_str()
            );
        }
    }
    // 160 requests came and went, none still counted.
    assert_eq!(stat(&envoy, "admitted"), 160);
    assert_exactly_free(&envoy, port, 75, "after resets and local replies");

    // The per-minute limit's own 429 (logs: 50 per minute on enterprise).
    let mut c = Client::connect(port);
    for i in 0..60 {
        let r = c.request("GET", "/api/v1/logs", &[("host", ORG)]);
        assert_eq!(r.status, if i < 50 { 200 } else { 429 }, "logs #{i}");
    }
    assert_exactly_free(&envoy, port, 75, "after the per-minute 429s");
}

/// 10,000 requests aborted while in flight, in batches of 50 (each batch counted in flight
/// before its clients hang up), on 2 workers: afterwards exactly 75 places are free.
#[test]
fn no_leak_after_10000_aborted_requests() {
    let (envoy, port) = slow_listener::start(&config("enterprise"), 2);
    let mut aborted = 0u64;
    while aborted < 10_000 {
        let before = stat(&envoy, "admitted") + stat(&envoy, "rejected");
        let batch: Vec<TcpStream> = (0..50).map(|_| open(port, ORG, 60_000, "")).collect();
        // Every request of the batch has been decided before its client goes away.
        let deadline = Instant::now() + Duration::from_secs(20);
        while stat(&envoy, "admitted") + stat(&envoy, "rejected") < before + 50 {
            assert!(Instant::now() < deadline, "a batch was never decided");
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(batch);
        aborted += 50;
    }
    let admitted = stat(&envoy, "admitted");
    assert!(
        admitted >= 9_000,
        "only {admitted} of the 10,000 aborted requests were in flight when aborted"
    );
    wait_until_admitted(port, "after 10,000 aborts");
    assert_exactly_free(&envoy, port, 75, "after 10,000 aborts");
}
