//! Fleet mode end to end: two Envoys (replicas) with the filter, the
//! test-fixture rate-limit service (`tests/rls`, envoyproxy/ratelimit's Redis
//! fixed windows) and one real `redis-server`; the service's config is the one
//! `rls::generate` writes from the same plugin configuration.
//!
//! envoyproxy/ratelimit windows are calendar-aligned, so tests that count a
//! whole window first wait until they are well inside one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fleet::{Redis, Rls};
use common::vendor_upstream::{Dialect, VendorUpstream};
use common::{now, Envoy, EnvoyOptions, Response};
use idp_ratelimit::rls::config::Server;
use idp_ratelimit::rls::generate::from_plugin_config;

const CLUSTER: &str = "ratelimit";

fn fleet_envoy(config: &str, rls_port: u16) -> Envoy {
    Envoy::start_with(EnvoyOptions {
        plugin_config: config.to_string(),
        grpc_cluster: Some((CLUSTER.to_string(), rls_port)),
        ..Default::default()
    })
}

fn generated(config: &str) -> String {
    from_plugin_config(config.as_bytes(), Server::EnvoyRatelimit)
        .unwrap()
        .yaml
}

/// Sleeps until `now % window` is in [1, window - margin): a whole burst then
/// stays inside one calendar-aligned window.
fn inside_a_window(window: u64, margin: u64) {
    loop {
        let into = now() as u64 % window;
        if into >= 1 && into < window - margin {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `clients` threads, each sending `per_client` requests alternately to the
/// replicas; every answer with the replica that gave it and the send time.
fn burst(
    replicas: &[&Envoy],
    clients: usize,
    per_client: usize,
    path: &str,
    headers: &[(&str, &str)],
) -> Vec<(usize, f64, Response)> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let ports: Vec<u16> = replicas.iter().map(|e| e.port()).collect();
    std::thread::scope(|s| {
        for c in 0..clients {
            let (out, ports) = (out.clone(), ports.clone());
            let headers: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            s.spawn(move || {
                let mut conns: Vec<_> = ports.iter().map(|p| common::Client::connect(*p)).collect();
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                for i in 0..per_client {
                    let which = (c + i) % conns.len();
                    let t = now();
                    let r = conns[which].request("GET", path, &h);
                    out.lock().unwrap().push((which, t, r));
                }
            });
        }
    });
    Arc::try_unwrap(out).unwrap().into_inner().unwrap()
}

fn stat(e: &Envoy, name: &str) -> u64 {
    e.stat(&format!("idp_ratelimit.{name}")).unwrap_or(0)
}

#[test]
fn okta_two_replicas_admit_exactly_the_limit_with_the_same_headers() {
    let config = r#"{"vendor": "okta", "plan": "enterprise",
        "overrides": [{"bucket": "okta.management.users", "limit": 20}],
        "fleet": {"cluster": "ratelimit", "timeout_ms": 1000}}"#;
    let redis = Redis::start();
    let rls = Rls::start(&generated(config), redis.port);
    let (a, b) = (fleet_envoy(config, rls.port), fleet_envoy(config, rls.port));
    assert!(a.wait_for_log("fleet mode: ", Duration::from_secs(5)));
    inside_a_window(60, 15);
    let answers = burst(&[&a, &b], 8, 5, "/api/v1/users", &[]);
    let admitted: Vec<_> = answers.iter().filter(|(_, _, r)| r.status == 200).collect();
    let refused: Vec<_> = answers.iter().filter(|(_, _, r)| r.status == 429).collect();
    assert_eq!(
        (admitted.len(), refused.len()),
        (20, 20),
        "{:?}",
        answers.iter().map(|x| x.2.status).collect::<Vec<_>>()
    );
    // Each remaining value once: the fleet counted every admit exactly once.
    let mut remaining: Vec<u64> = admitted
        .iter()
        .map(|(_, _, r)| r.header_u64("x-rate-limit-remaining").unwrap())
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..20).collect::<Vec<_>>());
    // Both replicas admitted, and agree on limit and reset (the calendar minute's end).
    for replica in 0..2 {
        assert!(
            admitted.iter().any(|(w, _, _)| *w == replica),
            "replica {replica} admitted none"
        );
    }
    let minute_end = (answers[0].1 as u64 / 60 + 1) * 60;
    for (w, _, r) in &answers {
        assert_eq!(r.header_u64("x-rate-limit-limit"), Some(20), "replica {w}");
        assert_eq!(
            r.header_u64("x-rate-limit-reset"),
            Some(minute_end),
            "replica {w}: {:?}",
            r.headers
        );
    }
    for (_, _, r) in &refused {
        assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(0));
        assert_eq!(r.json()["errorCode"], "E0000047");
        assert!(!r.reached_upstream());
    }
    // Stats: every matched request was one call; none failed.
    assert_eq!(stat(&a, "rls_calls") + stat(&b, "rls_calls"), 40);
    assert_eq!(stat(&a, "rls_failures") + stat(&b, "rls_failures"), 0);
    assert_eq!(
        stat(&a, "okta.management.users.admitted") + stat(&b, "okta.management.users.admitted"),
        20
    );
    // Unmatched and exempt paths never call out.
    let calls = stat(&a, "rls_calls");
    for p in ["/elsewhere", "/oauth2/v1/keys"] {
        let r = a.client().request("GET", p, &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-rate-limit-limit"), None);
    }
    assert_eq!(stat(&a, "rls_calls"), calls);
}

#[test]
fn onelogin_two_replicas_share_the_account_and_the_status_endpoint_only_peeks() {
    let config = r#"{"vendor": "onelogin",
        "overrides": [{"bucket": "onelogin.account", "limit": 15}],
        "fleet": {"cluster": "ratelimit", "timeout_ms": 1000}}"#;
    let redis = Redis::start();
    let rls = Rls::start(&generated(config), redis.port);
    let (a, b) = (fleet_envoy(config, rls.port), fleet_envoy(config, rls.port));
    inside_a_window(3600, 120);
    let token = [("authorization", "Bearer t")];
    for e in [&a, &b, &a] {
        let r = e.client().request("GET", "/auth/rate_limit", &token);
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert_eq!(
            r.json()["data"]["X-RateLimit-Remaining"],
            15,
            "{}",
            r.body_str()
        );
    }
    let answers = burst(&[&a, &b], 8, 4, "/api/2/users", &token);
    let admitted: Vec<_> = answers.iter().filter(|(_, _, r)| r.status == 200).collect();
    assert_eq!(admitted.len(), 15);
    assert_eq!(
        answers.iter().filter(|(_, _, r)| r.status == 429).count(),
        17
    );
    let mut remaining: Vec<u64> = admitted.iter().map(|(_, _, r)| common::rate(r).1).collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..15).collect::<Vec<_>>());
    // OneLogin's reset is seconds left, to the same hour's end on both replicas.
    for (w, t, r) in &answers {
        let (limit, _, left) = common::rate(r);
        assert_eq!(limit, 15);
        let hour_end = (*t as u64 / 3600 + 1) * 3600;
        let implied = *t as u64 + left;
        assert!(
            implied.abs_diff(hour_end) <= 1,
            "replica {w}: {t} + {left} vs {hour_end}"
        );
    }
    for e in [&a, &b] {
        let r = e.client().request("GET", "/auth/rate_limit", &token);
        assert_eq!(r.json()["data"]["X-RateLimit-Remaining"], 0);
    }
}

/// The admitted count and the `Remaining` values, per response of `n` requests to `e`.
fn sequence(e: &Envoy, n: usize) -> Vec<(u16, Option<u64>)> {
    let mut c = e.client();
    (0..n)
        .map(|_| {
            let r = c.request("GET", "/api/v1/users", &[]);
            (r.status, r.header_u64("x-rate-limit-remaining"))
        })
        .collect()
}

#[test]
fn rls_killed_local_takes_over_and_the_rls_is_used_again_when_back() {
    let config = r#"{"vendor": "okta", "plan": "enterprise",
        "overrides": [{"bucket": "okta.management.users", "limit": 10}],
        "fleet": {"cluster": "ratelimit", "timeout_ms": 1000, "on_failure": "local"}}"#;
    let redis = Redis::start();
    let mut rls = Rls::start(&generated(config), redis.port);
    let e = fleet_envoy(config, rls.port);
    inside_a_window(60, 20);
    assert_eq!(sequence(&e, 2), vec![(200, Some(9)), (200, Some(8))]);
    assert_eq!(stat(&e, "rls_calls"), 2);

    rls.kill();
    // Counted here from now on: a fresh local window of 10.
    let local = sequence(&e, 11);
    let expected: Vec<_> = (0..10u64)
        .map(|i| (200, Some(9 - i)))
        .chain([(429, Some(0))])
        .collect();
    assert_eq!(local, expected);
    let failures = stat(&e, "rls_failures");
    assert!(failures >= 1, "rls_failures {failures}");
    assert_eq!(stat(&e, "rls_fallbacks"), 11);
    // The breaker opened after a few failures: the rest did not call.
    assert!(
        stat(&e, "rls_calls") - 2 < 11,
        "calls {}",
        stat(&e, "rls_calls")
    );
    assert!(e.wait_for_log(
        "rate-limit service at cluster \"ratelimit\" failed",
        Duration::from_secs(2)
    ));

    rls.restart();
    // After the back-off the next request probes, and the service counts again
    // (its window still holds the first 2).
    std::thread::sleep(Duration::from_millis(
        idp_ratelimit::rls::breaker::BACKOFF_US / 1000 + 200,
    ));
    let calls = stat(&e, "rls_calls");
    assert_eq!(sequence(&e, 1), vec![(200, Some(7))]);
    assert_eq!(stat(&e, "rls_calls"), calls + 1);
    assert_eq!(stat(&e, "rls_fallbacks"), 11);
}

#[test]
fn redis_killed_the_rls_errors_and_the_same_fallback_applies() {
    let config = r#"{"vendor": "okta", "plan": "enterprise",
        "overrides": [{"bucket": "okta.management.users", "limit": 10}],
        "fleet": {"cluster": "ratelimit", "timeout_ms": 1000}}"#;
    let mut redis = Redis::start();
    let rls = Rls::start(&generated(config), redis.port);
    let e = fleet_envoy(config, rls.port);
    inside_a_window(60, 20);
    assert_eq!(sequence(&e, 1), vec![(200, Some(9))]);
    redis.kill();
    assert_eq!(
        sequence(&e, 3),
        vec![(200, Some(9)), (200, Some(8)), (200, Some(7))]
    );
    assert!(stat(&e, "rls_failures") >= 1);
    assert_eq!(stat(&e, "rls_fallbacks"), 3);
    assert!(rls.logs().contains("redis"), "{}", rls.logs());
    assert!(e.wait_for_log("gRPC status 2 UNKNOWN", Duration::from_secs(2)));
    // Redis back (empty): the service counts again from its new state.
    redis.restart();
    std::thread::sleep(Duration::from_millis(
        idp_ratelimit::rls::breaker::BACKOFF_US / 1000 + 200,
    ));
    assert_eq!(sequence(&e, 1), vec![(200, Some(9))]);
}

#[test]
fn a_missing_cluster_is_reported_and_never_panics() {
    let config = r#"{"vendor": "okta", "plan": "enterprise",
        "overrides": [{"bucket": "okta.management.users", "limit": 3}],
        "fleet": {"cluster": "no_such_cluster"}}"#;
    let e = Envoy::start(config);
    assert!(e.wait_for_log(
        "fleet.cluster: Envoy has no cluster \"no_such_cluster\"",
        Duration::from_secs(5)
    ));
    let got: BTreeMap<u16, usize> =
        sequence(&e, 8)
            .into_iter()
            .fold(BTreeMap::new(), |mut m, (s, _)| {
                *m.entry(s).or_default() += 1;
                m
            });
    // Counted locally (on_failure local): 3 admitted, then the vendor's 429.
    assert_eq!(got, BTreeMap::from([(200, 3), (429, 5)]));
    assert!(e.wait_for_log(
        "rate-limit service at cluster \"no_such_cluster\" failed",
        Duration::from_secs(2)
    ));
    assert!(e.is_running());
    assert!(!e.logs().contains("panicked"), "{}", e.logs());

    // on_failure deny: the vendor's 429 for every matched request.
    let deny = Envoy::start(
        r#"{"vendor": "okta", "plan": "enterprise", "fleet": {"cluster": "no_such_cluster", "on_failure": "deny"}}"#,
    );
    let r = deny.client().request("GET", "/api/v1/users", &[]);
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["errorCode"], "E0000047");
    assert_eq!(deny.client().request("GET", "/elsewhere", &[]).status, 200);
}

/// The Istio fleet example's pluginConfig is accepted, in fleet mode, and
/// names the cluster the way Istio names a ServiceEntry's.
#[test]
fn the_istio_fleet_example_is_accepted() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/istio/fleet/okta-fleet.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    for kind in [
        "kind: ServiceEntry",
        "kind: DestinationRule",
        "kind: WasmPlugin",
        "phase: AUTHZ",
    ] {
        assert!(text.contains(kind), "{kind}");
    }
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("pluginConfig: "))
        .unwrap();
    let c = idp_ratelimit::config::parse(line.as_bytes()).unwrap();
    let f = c.fleet.unwrap();
    assert_eq!(f.cluster, "outbound|8081||ratelimit.internal.example.com");
    assert!(text.contains("number: 8081") && text.contains("- ratelimit.internal.example.com"));
}

/// A service that accepts the call but never answers: each call costs one
/// `timeout_ms`, then `on_failure` decides; after 3 such calls the breaker
/// stops calling, and the service is used again once it answers.
#[test]
fn a_hung_rls_costs_one_timeout_then_the_breaker_stops_calling() {
    let config = r#"{"vendor": "okta", "plan": "enterprise",
        "overrides": [{"bucket": "okta.management.users", "limit": 10}],
        "fleet": {"cluster": "ratelimit", "timeout_ms": 300}}"#;
    let redis = Redis::start();
    let rls = Rls::start(&generated(config), redis.port);
    let e = fleet_envoy(config, rls.port);
    inside_a_window(60, 20);
    assert_eq!(sequence(&e, 1), vec![(200, Some(9))]);
    rls.freeze();
    let mut c = e.client();
    let mut took = Vec::new();
    for _ in 0..3 {
        let t = now();
        let r = c.request("GET", "/api/v1/users", &[]);
        took.push(now() - t);
        assert_eq!(r.status, 200);
    }
    // Each waited for the timeout (and no more than the test's patience).
    assert!(took.iter().all(|t| *t >= 0.29 && *t < 5.0), "{took:?}");
    // Envoy 1.40 closes a timed-out call with UNAVAILABLE (not DEADLINE_EXCEEDED).
    assert!(e.wait_for_log("failed: gRPC status 14 UNAVAILABLE", Duration::from_secs(2)));
    assert_eq!(stat(&e, "rls_failures"), 3);
    // Breaker open: the next requests are decided here without a call.
    let calls = stat(&e, "rls_calls");
    assert_eq!(
        sequence(&e, 3),
        vec![(200, Some(6)), (200, Some(5)), (200, Some(4))]
    );
    assert_eq!(stat(&e, "rls_calls"), calls);
    assert_eq!(stat(&e, "rls_fallbacks"), 6);
    rls.thaw();
    std::thread::sleep(Duration::from_millis(
        idp_ratelimit::rls::breaker::BACKOFF_US / 1000 + 200,
    ));
    // The service's window still holds its 1 (the timed-out calls may have counted there too).
    let r = sequence(&e, 1);
    assert_eq!(r[0].0, 200);
    assert!(r[0].1.unwrap() <= 8, "{r:?}");
    assert_eq!(stat(&e, "rls_calls"), calls + 1);
    assert_eq!(stat(&e, "rls_fallbacks"), 6);
}

/// What the fixture leaves in Redis is what envoyproxy/ratelimit would: one
/// key `<domain>_bucket_<id>_scope_<key>_<window start>` per bucket, scope
/// and calendar window, INCRBY'd once per request, refusals included, with
/// an EXPIRE of one unit.
#[test]
fn the_fixture_counts_in_redis_as_envoy_ratelimit_does() {
    let config = r#"{"vendor": "okta", "plan": "enterprise",
        "overrides": [{"bucket": "okta.management.users", "limit": 2}],
        "fleet": {"cluster": "ratelimit", "domain": "edge", "timeout_ms": 1000}}"#;
    let redis = Redis::start();
    let rls = Rls::start(&generated(config), redis.port);
    let e = fleet_envoy(config, rls.port);
    inside_a_window(60, 10);
    let start = now() as u64 / 60 * 60;
    let statuses: Vec<u16> = sequence(&e, 3).into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses, vec![200, 200, 429]);
    let key = format!("edge_bucket_okta.management.users_scope_localhost_{start}");
    assert_eq!(redis.command(&["KEYS", "*"]), key);
    assert_eq!(redis.command(&["GET", &key]), "3");
    let ttl: i64 = redis.command(&["TTL", &key]).parse().unwrap();
    assert!((1..=60).contains(&ttl), "TTL {ttl}");
}

/// A service whose config lacks the filter's limits (another domain here)
/// answers OK without a limit: the filter lets the request through as the
/// service said, and says once per worker that the config is missing.
#[test]
fn a_service_without_the_generated_limits_is_reported() {
    let filter = r#"{"vendor": "okta", "plan": "enterprise", "fleet": {"cluster": "ratelimit", "timeout_ms": 1000}}"#;
    let other = r#"{"vendor": "okta", "plan": "enterprise", "fleet": {"cluster": "ratelimit", "domain": "other"}}"#;
    let redis = Redis::start();
    let rls = Rls::start(&generated(other), redis.port);
    let e = fleet_envoy(filter, rls.port);
    let r = e.client().request("GET", "/api/v1/users", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-rate-limit-limit"), None);
    assert!(e.wait_for_log(
        "the rate-limit service has no limit for bucket okta.management.users in domain \"idp_ratelimit\"",
        Duration::from_secs(2)
    ));
    assert_eq!(stat(&e, "rls_failures"), 0);
}

// Fleet mode with `"upstream": "vendor"`: two replicas in front of a vendor-shaped upstream
// (tests/common/vendor_upstream.rs) that keeps the org's own count. Each replica learns from
// the answers to its own requests; the service's count and the vendor's figure both bound.

const OKTA_VENDOR_FLEET: &str = r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor",
    "fleet": {"cluster": "ratelimit", "timeout_ms": 1000}}"#;

fn fleet_vendor_envoy(config: &str, rls_port: u16, vendor: &VendorUpstream) -> Envoy {
    Envoy::start_with(EnvoyOptions {
        plugin_config: config.to_string(),
        grpc_cluster: Some((CLUSTER.to_string(), rls_port)),
        upstream_port: Some(vendor.port()),
        ..Default::default()
    })
}

const ORG: [(&str, &str); 1] = [("host", "acme.okta.com")];

#[test]
fn vendor_two_replicas_admit_exactly_what_another_client_left() {
    let vendor = VendorUpstream::start(Dialect::Okta, 600);
    let redis = Redis::start();
    let rls = Rls::start(&generated(OKTA_VENDOR_FLEET), redis.port);
    let replicas = [
        fleet_vendor_envoy(OKTA_VENDOR_FLEET, rls.port, &vendor),
        fleet_vendor_envoy(OKTA_VENDOR_FLEET, rls.port, &vendor),
    ];
    // Another cluster, a script, the admin console: 590 of the org's 600.
    vendor.spend(590);
    let mut clients = [replicas[0].client(), replicas[1].client()];
    // One at a time, alternating: A, B, A, B...
    let rs: Vec<Response> = (0..30)
        .map(|i| clients[i % 2].request("GET", "/api/v1/users", &ORG))
        .collect();
    // Exactly the last 10 admitted across both replicas, with the vendor's own headers.
    for (i, r) in rs[..10].iter().enumerate() {
        assert_eq!(r.status, 200, "{i}: {r:?}");
        assert!(r.reached_upstream());
        assert_eq!(r.header_u64("x-rate-limit-limit"), Some(600));
        assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(9 - i as u64));
    }
    // Replica A last heard "1 left" before B spent it: its next request reaches the vendor
    // and gets the vendor's 429 (passed through), which A then learns.
    assert_eq!(rs[10].status, 429);
    assert!(rs[10].reached_upstream(), "{:?}", rs[10]);
    // Everything after is refused here, by both replicas, without a call to the service.
    for (i, r) in rs[11..].iter().enumerate() {
        common::assert_okta_429(r, 600, &format!("request {}", i + 11));
    }
    assert_eq!(
        vendor.seen(),
        (11, 1),
        "one request past the limit per other replica"
    );
    let calls: Vec<u64> = replicas.iter().map(|e| stat(e, "rls_calls")).collect();
    assert_eq!(
        calls,
        vec![6, 5],
        "only the requests that reached the vendor called"
    );
    let learned: Vec<u64> = replicas
        .iter()
        .map(|e| e.counter("okta.management.users.vendor_answers"))
        .collect();
    assert_eq!(learned, vec![6, 5], "each replica learns its own answers");
    let rejected: u64 = replicas
        .iter()
        .map(|e| e.counter("okta.management.users.rejected"))
        .sum();
    assert_eq!(rejected, 19);
}

#[test]
fn vendor_429_refuses_on_the_replica_that_saw_it_until_its_reset() {
    let vendor = VendorUpstream::start(Dialect::Okta, 1000);
    let redis = Redis::start();
    let rls = Rls::start(&generated(OKTA_VENDOR_FLEET), redis.port);
    let (a, b) = (
        fleet_vendor_envoy(OKTA_VENDOR_FLEET, rls.port, &vendor),
        fleet_vendor_envoy(OKTA_VENDOR_FLEET, rls.port, &vendor),
    );
    let (mut ca, mut cb) = (a.client(), b.client());
    assert_eq!(ca.request("GET", "/api/v1/users", &ORG).status, 200);
    assert_eq!(cb.request("GET", "/api/v1/users", &ORG).status, 200);
    vendor.refuse_for(5);
    let storm = ca.request("GET", "/api/v1/users", &ORG);
    let t429 = Instant::now();
    assert_eq!(storm.status, 429);
    assert!(storm.reached_upstream(), "the vendor's own 429");
    let calls = stat(&a, "rls_calls");
    // Replica A refuses locally until the vendor's reset (at least 4 s of it remain)...
    let mut refused = 0;
    while t429.elapsed() < Duration::from_millis(3900) {
        let r = ca.request("GET", "/api/v1/users", &ORG);
        assert_eq!(r.status, 429, "{:?}", r.headers);
        assert!(!r.reached_upstream(), "refused locally: {:?}", r.headers);
        refused += 1;
        if refused == 3 {
            // ...while B, which has not seen it, learns it on its next answer.
            let first = cb.request("GET", "/api/v1/users", &ORG);
            assert!(first.status == 429 && first.reached_upstream(), "{first:?}");
            let next = cb.request("GET", "/api/v1/users", &ORG);
            assert!(next.status == 429 && !next.reached_upstream(), "{next:?}");
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(refused >= 20);
    assert_eq!(
        stat(&a, "rls_calls"),
        calls,
        "no call for a learned refusal"
    );
    assert_eq!(
        vendor.seen(),
        (4, 2),
        "the retry storm never reached the vendor"
    );
    std::thread::sleep(Duration::from_millis(6200).saturating_sub(t429.elapsed()));
    for c in [&mut ca, &mut cb] {
        let after = c.request("GET", "/api/v1/users", &ORG);
        assert_eq!(after.status, 200, "{:?}", after.headers);
        assert!(after.reached_upstream());
    }
    assert_eq!(vendor.seen(), (6, 2));
}

#[test]
fn vendor_and_service_both_bound_the_fleet() {
    // The service counts 5 a minute for the fleet; the vendor has its whole 600.
    let config = r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor",
        "overrides": [{"bucket": "okta.management.users", "limit": 5}],
        "fleet": {"cluster": "ratelimit", "timeout_ms": 1000}}"#;
    let vendor = VendorUpstream::start(Dialect::Okta, 600);
    let redis = Redis::start();
    let rls = Rls::start(&generated(config), redis.port);
    let (a, b) = (
        fleet_vendor_envoy(config, rls.port, &vendor),
        fleet_vendor_envoy(config, rls.port, &vendor),
    );
    inside_a_window(60, 10);
    let answers = burst(&[&a, &b], 4, 4, "/api/v1/users", &ORG);
    let admitted = answers.iter().filter(|(_, _, r)| r.status == 200).count();
    assert_eq!(admitted, 5);
    for (_, _, r) in answers.iter().filter(|(_, _, r)| r.status != 200) {
        assert_eq!(r.status, 429);
        assert!(
            !r.reached_upstream(),
            "the service's refusal, answered here"
        );
    }
    assert_eq!(vendor.seen(), (5, 0));
}

/// A client that leaves while its request waits for the service: what the request took in
/// this Envoy (its place in the org's concurrency limit, its take of the vendor's figure) is
/// given back, not left in flight.
#[test]
fn vendor_a_client_gone_while_the_service_is_asked_gives_back_what_it_took() {
    let config = r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor",
        "overrides": [{"bucket": "okta.concurrency", "limit": 1}],
        "fleet": {"cluster": "ratelimit", "timeout_ms": 3000}}"#;
    let vendor = VendorUpstream::start(Dialect::Okta, 600);
    let redis = Redis::start();
    let rls = Rls::start(&generated(config), redis.port);
    let e = fleet_vendor_envoy(config, rls.port, &vendor);
    vendor.spend(598);
    let mut c = e.client();
    // The vendor has 1 left after this one, and the record says so.
    let first = c.request("GET", "/api/v1/users", &ORG);
    assert_eq!(first.header_u64("x-rate-limit-remaining"), Some(1));
    rls.freeze();
    {
        use std::io::Write;
        let mut gone = std::net::TcpStream::connect(("127.0.0.1", e.port())).unwrap();
        gone.write_all(b"GET /api/v1/users HTTP/1.1\r\nhost: acme.okta.com\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(300));
    rls.thaw();
    let r = c.request("GET", "/api/v1/users", &ORG);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.reached_upstream());
    assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(0));
    assert_eq!(
        vendor.seen(),
        (2, 0),
        "the abandoned request never reached the vendor"
    );
}
