//! `"upstream": "vendor"` in real Envoy, in front of a vendor-shaped upstream that keeps the
//! org's own count (tests/common/vendor_upstream.rs): the vendor's answers pass through and
//! the filter learns the org's true quota from them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod common;

use std::time::{Duration, Instant};

use common::vendor_upstream::{Dialect, Headers, VendorUpstream};
use common::{assert_okta_429, Client, Envoy, EnvoyOptions, Response};

fn envoy(upstream: &VendorUpstream, config: &str) -> Envoy {
    Envoy::start_with(EnvoyOptions {
        plugin_config: config.to_string(),
        upstream_port: Some(upstream.port()),
        ..Default::default()
    })
}

/// Two clients, so both of Envoy's workers take requests.
fn clients(e: &Envoy) -> [Client; 2] {
    [e.client(), e.client()]
}

/// Sends `n` requests alternating between the clients; returns the responses.
fn send_n(cs: &mut [Client; 2], n: usize, path: &str) -> Vec<Response> {
    (0..n)
        .map(|i| cs[i % 2].request("GET", path, &[("host", "acme.okta.com")]))
        .collect()
}

#[test]
fn okta_admits_exactly_what_another_client_left_of_the_orgs_quota() {
    let vendor = VendorUpstream::start(Dialect::Okta, 600);
    let e = envoy(
        &vendor,
        r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor"}"#,
    );
    // Another cluster, a script, the admin console: 590 of the org's 600, never seen by Envoy.
    vendor.spend(590);
    let mut cs = clients(&e);
    let rs = send_n(&mut cs, 30, "/api/v1/users");
    let forwarded: Vec<&Response> = rs.iter().filter(|r| r.reached_upstream()).collect();
    assert_eq!(forwarded.len(), 10, "exactly the last 10");
    for (i, r) in forwarded.iter().enumerate() {
        assert_eq!(r.status, 200);
        // The vendor's own headers, untouched (the filter's count says 599..590).
        assert_eq!(r.header("x-rate-limit-limit"), Some("600"));
        let want = (9 - i).to_string();
        assert_eq!(r.header("x-rate-limit-remaining"), Some(want.as_str()));
    }
    assert!(rs[..10].iter().all(|r| r.reached_upstream()));
    for r in &rs[10..] {
        assert_okta_429(r, 600, "the filter's own 429");
    }
    assert_eq!(
        vendor.seen(),
        (10, 0),
        "the vendor saw nothing past its limit"
    );
    assert_eq!(e.counter("okta.management.users.vendor_answers"), 10);
    assert_eq!(e.counter("okta.management.users.rejected"), 20);
}

#[test]
fn parallel_clients_never_push_the_vendor_past_its_limit() {
    let vendor = VendorUpstream::start(Dialect::Okta, 600);
    let e = envoy(
        &vendor,
        r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor"}"#,
    );
    vendor.spend(590);
    let forwarded = |rs: &[Response]| rs.iter().filter(|r| r.reached_upstream()).count();
    // Eight clients at once: requests in flight count against what the vendor last said.
    let parallel: usize = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut c = e.client();
                    let rs: Vec<Response> = (0..6)
                        .map(|_| c.request("GET", "/api/v1/users", &[("host", "acme.okta.com")]))
                        .collect();
                    forwarded(&rs)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    // Then one at a time: the estimate errs low under parallel load, never high, and is
    // exact again once every answer is back.
    let mut cs = clients(&e);
    let tail = forwarded(&send_n(&mut cs, 20, "/api/v1/users"));
    assert_eq!(vendor.seen().1, 0, "no request past the vendor's limit");
    assert_eq!(parallel + tail, 10, "parallel {parallel}, then {tail}");
}

#[test]
fn headroom_keeps_its_reserve_of_the_vendors_quota() {
    let vendor = VendorUpstream::start(Dialect::Okta, 600);
    let e = envoy(
        &vendor,
        r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor", "headroom_percent": 99}"#,
    );
    vendor.spend(590);
    let mut cs = clients(&e);
    let rs = send_n(&mut cs, 20, "/api/v1/users");
    // 1% of 600 (6) stays unspent: after the first answer (9 left), 3 more.
    let forwarded = rs.iter().filter(|r| r.reached_upstream()).count();
    assert_eq!(forwarded, 4);
    assert_eq!(vendor.seen(), (4, 0));
}

/// A vendor 429 declaring a reset `secs` ahead: everything is refused locally until then.
fn vendor_429_is_waited_out(dialect: Dialect, config: &str, path: &str, host: &str) {
    let vendor = VendorUpstream::start(dialect, 1000);
    let e = envoy(&vendor, config);
    let mut c = e.client();
    let h = [("host", host)];
    assert_eq!(c.request("GET", path, &h).status, 200);
    vendor.refuse_for(5);
    let storm = c.request("GET", path, &h);
    let t429 = Instant::now();
    assert_eq!(storm.status, 429);
    assert!(
        storm.reached_upstream(),
        "the vendor's own 429, passed through"
    );
    assert_eq!(vendor.seen(), (2, 1));
    // The reset is whole seconds on the vendor's clock: at least 4 s of it remain.
    let mut refused = 0;
    while t429.elapsed() < Duration::from_millis(3900) {
        let r = c.request("GET", path, &h);
        assert_eq!(r.status, 429, "{:?}", r.headers);
        assert!(!r.reached_upstream(), "refused locally: {:?}", r.headers);
        refused += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(refused >= 20);
    assert_eq!(
        vendor.seen(),
        (2, 1),
        "the retry storm never reached the vendor"
    );
    std::thread::sleep(Duration::from_millis(6200).saturating_sub(t429.elapsed()));
    let after = c.request("GET", path, &h);
    assert_eq!(after.status, 200, "{:?}", after.headers);
    assert!(after.reached_upstream());
    assert_eq!(vendor.seen(), (3, 1));
}

#[test]
fn okta_429_reset_is_waited_out() {
    vendor_429_is_waited_out(
        Dialect::Okta,
        r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor"}"#,
        "/api/v1/users",
        "acme.okta.com",
    );
}

#[test]
fn auth0_429_retry_after_is_waited_out() {
    vendor_429_is_waited_out(
        Dialect::Auth0,
        r#"{"vendor": "auth0", "plan": "enterprise-prod", "upstream": "vendor"}"#,
        "/api/v2/users",
        "acme.auth0.com",
    );
}

#[test]
fn onelogin_429_seconds_left_is_waited_out() {
    vendor_429_is_waited_out(
        Dialect::OneLogin,
        r#"{"vendor": "onelogin", "upstream": "vendor"}"#,
        "/api/2/users",
        "acme.onelogin.com",
    );
}

#[test]
fn a_raised_vendor_limit_is_adopted() {
    // The org bought more: the vendor counts 1,200 where the table says 600.
    let vendor = VendorUpstream::start(Dialect::Okta, 1200);
    let e = envoy(
        &vendor,
        r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor"}"#,
    );
    let mut cs = clients(&e);
    let rs = send_n(&mut cs, 1210, "/api/v1/users");
    let forwarded = rs.iter().filter(|r| r.reached_upstream()).count();
    assert_eq!(forwarded, 1200);
    assert!(rs[..1200].iter().all(|r| r.status == 200));
    for r in &rs[1200..] {
        assert_okta_429(r, 1200, "the filter's own 429");
    }
    assert_eq!(vendor.seen(), (1200, 0));
    assert_eq!(e.counter("okta.management.users.vendor_limit"), 1200);
    let notice =
        "okta.management.users: the vendor reports a limit of 1200 where the table says 600";
    assert!(e.wait_for_log(notice, Duration::from_secs(2)));
    assert_eq!(
        e.logs().matches(notice).count(),
        1,
        "logged once for the bucket"
    );
}

#[test]
fn absent_or_garbled_answers_fall_back_to_the_filters_own_count() {
    for headers in [Headers::Absent, Headers::Garbled] {
        let vendor = VendorUpstream::start(Dialect::Okta, 600);
        vendor.set_headers(headers);
        let e = envoy(
            &vendor,
            r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor",
                "overrides": [{"bucket": "okta.management.users", "limit": 5}]}"#,
        );
        let mut cs = clients(&e);
        let rs = send_n(&mut cs, 8, "/api/v1/users");
        for (i, r) in rs[..5].iter().enumerate() {
            assert!(r.reached_upstream(), "{headers:?} {i}");
            // The filter's own headers stand in for the unusable ones.
            assert_eq!(r.header("x-rate-limit-limit"), Some("5"), "{headers:?}");
            let want = (4 - i).to_string();
            assert_eq!(r.header("x-rate-limit-remaining"), Some(want.as_str()));
        }
        for r in &rs[5..] {
            assert_okta_429(r, 5, "the filter's own 429");
        }
        assert_eq!(vendor.seen(), (5, 0));
        assert_eq!(
            e.counter("okta.management.users.vendor_answers_unusable"),
            5,
            "{headers:?}"
        );
        assert_eq!(e.counter("okta.management.users.vendor_answers"), 0);
        assert!(e.is_running());
    }
}
