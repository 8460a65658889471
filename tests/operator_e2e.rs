//! End-to-end: operator controls (scopes, headroom, shadow, overrides, custom vendor, IETF headers, key cap).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
use common::*;

use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers

fn start(config: Value) -> Envoy {
    Envoy::start(&config.to_string())
}

/// Asserts `r` is an admitted, forwarded response.
#[track_caller]
fn assert_admitted(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    assert!(r.reached_upstream(), "{what}: not forwarded: {r:?}");
}

/// Asserts `r` is the filter's own 429.
#[track_caller]
fn assert_rejected(r: &Response, what: &str) {
    assert_eq!(r.status, 429, "{what}: {r:?}");
    assert!(
        !r.reached_upstream(),
        "{what}: a 429 must not reach upstream"
    );
}

#[track_caller]
fn assert_within(value: u64, lo: u64, hi: u64, what: &str) {
    assert!(
        (lo..=hi).contains(&value),
        "{what}: {value} not in {lo}..={hi}"
    );
}

/// Names (lower-cased) of every rate-limit header a response carries, in any style.
fn rate_limit_header_names(r: &Response) -> Vec<String> {
    let mut names: Vec<String> = r
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| {
            k.starts_with("x-rate-limit-")
                || k.starts_with("x-ratelimit-")
                || k.starts_with("ratelimit")
        })
        .collect();
    names.sort();
    names
}

fn okta_vendor_headers() -> Vec<String> {
    [
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ]
    .map(String::from)
    .to_vec()
}

fn auth0_vendor_headers() -> Vec<String> {
    [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ]
    .map(String::from)
    .to_vec()
}

/// Okta's 429 body (its errorId, `oae…`, is not the X-Okta-Request-Id).
#[track_caller]
fn assert_okta_429_body(r: &Response) {
    let body = r.json();
    assert!(r.header("x-okta-request-id").is_some_and(|v| v.len() == 32));
    let id = body["errorId"].as_str().unwrap_or_default();
    assert!(id.starts_with("oae"), "errorId {id:?}");
    assert_eq!(
        body,
        json!({"errorCode": "E0000047",
               "errorSummary": "API call exceeded rate limit due to too many requests.",
               "errorLink": "E0000047", "errorId": id, "errorCauses": []}),
        "Okta 429 body"
    );
}

const AUTH0_429_MESSAGE: &str = "Too many requests. Check the X-RateLimit-Limit, \
                                 X-RateLimit-Remaining and X-RateLimit-Reset headers.";

/// `RateLimit: "<id>";r=<remaining>;t=<secs>` split into (id, r, t).
#[track_caller]
fn parse_ratelimit(value: &str) -> (String, u64, u64) {
    let parts: Vec<&str> = value.split(';').collect();
    assert_eq!(parts.len(), 3, "RateLimit {value:?}");
    let id = parts[0].trim_matches('"').to_string();
    assert_eq!(
        parts[0],
        format!("\"{id}\""),
        "RateLimit {value:?}: quoted id"
    );
    let num = |p: &str, key: &str| -> u64 {
        p.strip_prefix(key)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("RateLimit {value:?}: expected {key}<n>, got {p:?}"))
    };
    (id, num(parts[1], "r="), num(parts[2], "t="))
}

// ---------------------------------------------------------------------------------------------
// Clients with a chosen loopback source address

/// std's TcpStream cannot bind before it connects, so this uses the socket calls directly
/// (Linux `sockaddr_in` layout): the socket is bound to `source` (any of 127.0.0.0/8 is local
/// on Linux) and connected to Envoy on 127.0.0.1, so Envoy's peer address is `source:<port>`.
mod bound {
    use std::net::{Ipv4Addr, TcpStream};
    use std::os::fd::FromRawFd;

    #[repr(C)]
    struct SockaddrIn {
        family: u16,
        port_be: u16,
        addr_be: u32,
        zero: [u8; 8],
    }

    const AF_INET: i32 = 2;
    const SOCK_STREAM: i32 = 1;
    const SOCK_CLOEXEC: i32 = 0o2_000_000;

    extern "C" {
        fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
        fn bind(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
        fn connect(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
        fn close(fd: i32) -> i32;
    }

    fn sockaddr(ip: Ipv4Addr, port: u16) -> SockaddrIn {
        SockaddrIn {
            family: AF_INET as u16,
            port_be: port.to_be(),
            addr_be: u32::from_ne_bytes(ip.octets()),
            zero: [0; 8],
        }
    }

    pub fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
        let len = std::mem::size_of::<SockaddrIn>() as u32;
        // SAFETY: plain syscalls on a descriptor owned here; the sockaddr structs outlive the
        // calls; on success the descriptor goes to TcpStream, which closes it.
        unsafe {
            let fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let local = sockaddr(source, 0);
            if bind(fd, &local, len) != 0 {
                let e = std::io::Error::last_os_error();
                close(fd);
                panic!("bind {source}: {e}");
            }
            let remote = sockaddr(Ipv4Addr::LOCALHOST, port);
            if connect(fd, &remote, len) != 0 {
                let e = std::io::Error::last_os_error();
                close(fd);
                panic!("connect from {source} to 127.0.0.1:{port}: {e}");
            }
            TcpStream::from_raw_fd(fd)
        }
    }
}

/// GET `path` on a new connection from loopback address `source` (`Connection: close`).
fn get_from(port: u16, source: Ipv4Addr, path: &str, headers: &[(&str, &str)]) -> Response {
    let stream: TcpStream = bound::connect_from(source, port);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(stream.local_addr().unwrap().ip(), source, "bound address");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut conn = BufReader::new(stream);
    conn.get_mut().write_all(req.as_bytes()).unwrap();
    read_response(&mut conn, false)
        .unwrap_or_else(|e| panic!("GET {path} from {source}: {e}"))
        .0
}

const IP2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const IP3: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Three per minute on /v1/*, per client IP.
fn client_ip_config() -> Value {
    json!({"vendor": "custom", "scope": "client_ip",
           "routes": [{"route": "/v1/*", "limit": 3, "window": "minute", "algorithm": "fixed_window"}]})
}

/// A second listener, `peer`, for `--config-yaml` (merged into the harness bootstrap): the same
/// filter and routes, but its connection manager has `use_remote_address: true`, so Envoy takes
/// the downstream address from the connection and never from X-Forwarded-For (as the harness's
/// `main` listener does too, since `client_ip` needs it). Own vm_id and plugin name: own counters.
fn peer_listener(plugin_config: &str) -> String {
    const T: &str = "type.googleapis.com/";
    let wasm = json!({
        "name": "idp_ratelimit_peer", "root_id": "idp_ratelimit",
        "configuration": {"@type": format!("{T}google.protobuf.StringValue"), "value": plugin_config},
        "vm_config": {"vm_id": "idp_ratelimit_peer", "runtime": EnvoyOptions::default().runtime,
                      "code": {"local": {"filename": wasm_path().to_string_lossy()}}}});
    let hcm_type =
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    let hcm = json!({
        "@type": format!("{T}{hcm_type}"),
        "stat_prefix": "peer", "use_remote_address": true,
        "http_filters": [
            {"name": "envoy.filters.http.wasm",
             "typed_config": {"@type": format!("{T}envoy.extensions.filters.http.wasm.v3.Wasm"),
                              "config": wasm}},
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": format!("{T}envoy.extensions.filters.http.router.v3.Router")}}],
        "route_config": {"virtual_hosts": [{
            "name": "peer", "domains": ["*"],
            "response_headers_to_add": [{"header": {"key": "x-upstream", "value": "direct"}}],
            "routes": [{"match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]}]}});
    json!({"static_resources": {"listeners": [{
        "name": "peer",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}]}})
    .to_string()
}

/// Three admitted (Remaining 2, 1, 0) then a 429, for whatever `send` sends.
#[track_caller]
fn assert_three_then_429(what: &str, mut send: impl FnMut(usize) -> Response) {
    for (i, remaining) in [2u64, 1, 0].into_iter().enumerate() {
        let r = send(i);
        assert_admitted(&r, &format!("{what} #{}", i + 1));
        assert_eq!(r.header_u64("x-ratelimit-limit"), Some(3), "{what}: {r:?}");
        assert_eq!(
            r.header_u64("x-ratelimit-remaining"),
            Some(remaining),
            "{what} #{}: {r:?}",
            i + 1
        );
    }
    let r = send(3);
    assert_rejected(&r, &format!("{what} #4"));
    assert_eq!(r.header_u64("x-ratelimit-remaining"), Some(0), "{what}");
}

// ---------------------------------------------------------------------------------------------
// 1. scope: client_ip

#[test]
fn client_ip_scope_counts_each_source_address_separately() {
    let e = start(client_ip_config());
    let port = e.port();
    assert_three_then_429("127.0.0.2", |_| get_from(port, IP2, "/v1/a", &[]));
    assert_three_then_429("127.0.0.3", |i| {
        get_from(port, IP3, &format!("/v1/b/{i}"), &[])
    });
    // 127.0.0.1 (the harness client) has its own bucket too, whatever Host it names: the
    // default host scope is replaced for every bucket.
    let mut c = e.client();
    assert_three_then_429("127.0.0.1", |i| {
        let host = format!("tenant{i}.example.com");
        c.request("GET", "/v1/c", &[("host", &host)])
    });
    // The exhausted addresses stay exhausted.
    assert_rejected(&get_from(port, IP2, "/v1/z", &[]), "127.0.0.2 again");
    assert_rejected(&get_from(port, IP3, "/v1/z", &[]), "127.0.0.3 again");
    assert_eq!(e.counter("routes.0.admitted"), 9);
    assert_eq!(e.counter("routes.0.rejected"), 5);
}

/// With `use_remote_address: true` Envoy's source.address is the TCP peer: a forged
/// X-Forwarded-For never moves a client into a fresh bucket.
#[test]
fn client_ip_scope_ignores_forged_xff_when_envoy_uses_the_peer_address() {
    let config = client_ip_config().to_string();
    let e = Envoy::start_with(EnvoyOptions {
        plugin_config: config.clone(),
        extra_args: vec!["--config-yaml".into(), peer_listener(&config)],
        ..Default::default()
    });
    let port = listener_port(&e, "peer");
    let forged = ["10.0.0.1", "10.0.0.2", "203.0.113.9, 10.0.0.3", "127.0.0.9"];
    assert_three_then_429("127.0.0.2 with forged XFF", |i| {
        get_from(port, IP2, "/v1/a", &[("x-forwarded-for", forged[i])])
    });
    assert_rejected(
        &get_from(port, IP2, "/v1/a", &[]),
        "127.0.0.2 without XFF: same bucket",
    );
    // A different real address is still a different bucket, XFF or not.
    assert_three_then_429("127.0.0.3", |i| {
        let xff = if i % 2 == 0 { "127.0.0.2" } else { "10.9.9.9" };
        get_from(port, IP3, "/v1/b", &[("x-forwarded-for", xff)])
    });
}

/// The filter promises client_ip is "Envoy's source.address, never a forwarded-for header".
/// Under Envoy's default connection manager (`use_remote_address: false`, as the harness runs
/// it) Envoy sets source.address from the last X-Forwarded-For hop, so any client can pick a
/// fresh bucket per request. Expected: one bucket per connection address, whatever the XFF.
// ---------------------------------------------------------------------------------------------
// 2. scope: {"header": ...}

#[test]
fn header_scope_separates_values_and_counts_missing_headers_together() {
    // The configured name is matched case-insensitively (Envoy lower-cases header names).
    let e = start(
        json!({"vendor": "custom", "scope": {"header": "X-Client-ID"},
        "routes": [{"route": "/v1/*", "limit": 3, "window": "minute", "algorithm": "fixed_window"}]}),
    );
    let mut c = e.client();
    assert_three_then_429("alice", |_| {
        c.request("GET", "/v1/x", &[("x-client-id", "alice")])
    });
    assert_three_then_429("bob", |_| {
        c.request("GET", "/v1/x", &[("X-Client-Id", "bob")])
    });
    // Without the header: one shared bucket, limited like any other, across connections and
    // hosts (never let through uncounted).
    let mut clients: Vec<Client> = (0..4).map(|_| e.client()).collect();
    assert_three_then_429("no x-client-id", |i| {
        let host = format!("h{i}.example.com");
        clients[i].request("GET", "/v1/x", &[("host", &host)])
    });
    assert_rejected(
        &c.request("GET", "/v1/y", &[("x-client-id", "alice")]),
        "alice still exhausted",
    );
    let r = c.request("GET", "/v1/y", &[("x-client-id", "carol")]);
    assert_admitted(&r, "carol");
    assert_eq!(r.header_u64("x-ratelimit-remaining"), Some(2));
    assert_eq!(e.counter("routes.0.admitted"), 10);
    assert_eq!(e.counter("routes.0.rejected"), 4);
}

// ---------------------------------------------------------------------------------------------
// bucket_scopes (by exact id and by id prefix)

#[test]
fn bucket_scopes_apply_by_id_and_by_prefix() {
    // 10% headroom keeps the numbers small: logs 20 -> 2, apps 20 -> 2, authn 100 -> 10.
    let e = start(
        json!({"vendor": "okta", "plan": "integrator-free", "headroom_percent": 10,
        "bucket_scopes": {"okta.management.logs": "global", "okta.end-user": {"header": "x-team"}}}),
    );
    let mut c = e.client();
    let host_a = [("host", "a.okta.com")];
    let host_b = [("host", "b.okta.com")];

    // okta.management.logs: global, so two orgs share it.
    for remaining in [1, 0] {
        let r = c.request("GET", "/api/v1/logs", &host_a);
        assert_admitted(&r, "logs a");
        assert_eq!(r.header_u64("x-rate-limit-limit"), Some(2));
        assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(remaining));
    }
    assert_rejected(
        &c.request("GET", "/api/v1/logs", &host_b),
        "logs b: global bucket",
    );

    // okta.management.apps keeps the default host scope: one bucket per org.
    for hosts in [host_a, host_b] {
        for remaining in [1, 0] {
            let r = c.request("GET", "/api/v1/apps", &hosts);
            assert_admitted(&r, "apps");
            assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(remaining));
        }
        assert_rejected(&c.request("GET", "/api/v1/apps", &hosts), "apps 3rd");
    }

    // okta.end-user.* (prefix): per x-team, whatever the org.
    for i in 0..10u64 {
        let r = c.request(
            "POST",
            "/api/v1/authn",
            &[("host", "a.okta.com"), ("x-team", "t1")],
        );
        assert_admitted(&r, "authn t1");
        assert_eq!(r.header_u64("x-rate-limit-limit"), Some(10));
        assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(9 - i));
    }
    let r = c.request(
        "POST",
        "/api/v1/authn",
        &[("host", "b.okta.com"), ("x-team", "t1")],
    );
    assert_rejected(&r, "authn t1 from another org: same team bucket");
    let r = c.request(
        "POST",
        "/api/v1/authn",
        &[("host", "a.okta.com"), ("x-team", "t2")],
    );
    assert_admitted(&r, "authn t2");
    assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(9));
}

// ---------------------------------------------------------------------------------------------
// 3. headroom_percent

#[test]
fn headroom_scales_every_limit_down() {
    let e = start(json!({"vendor": "okta", "plan": "integrator-free", "headroom_percent": 50}));
    let mut c = e.client();
    for i in 0..10u64 {
        let r = c.request("GET", "/api/v1/logs", &[]);
        assert_admitted(&r, &format!("logs #{}", i + 1));
        assert_eq!(r.header_u64("x-rate-limit-limit"), Some(10), "20 at 50%");
        assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(9 - i));
    }
    let r = c.request("GET", "/api/v1/logs", &[]);
    assert_rejected(&r, "logs #11");
    assert_eq!(r.header_u64("x-rate-limit-limit"), Some(10));
    assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(0));
    assert_okta_429_body(&r);
    // Other buckets scale too, rounding down: 100 -> 50, 25 -> 12.
    let r = c.request("GET", "/api/v1/users", &[]);
    assert_admitted(&r, "users");
    assert_eq!(r.header_u64("x-rate-limit-limit"), Some(50));
    let r = c.request("GET", "/oauth2/v1/clients", &[]);
    assert_admitted(&r, "oauth2 clients");
    assert_eq!(
        r.header_u64("x-rate-limit-limit"),
        Some(12),
        "25 at 50% = 12.5"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. mode: shadow

#[test]
fn shadow_mode_never_rejects_but_reports_and_counts() {
    let e = start(json!({"vendor": "okta", "plan": "integrator-free", "mode": "shadow"}));
    let mut c = e.client();
    for i in 0..25u64 {
        let r = c.request("GET", "/api/v1/logs", &[]);
        assert_admitted(&r, &format!("shadow #{}", i + 1));
        assert_eq!(r.header_u64("x-rate-limit-limit"), Some(20));
        assert_eq!(
            r.header_u64("x-rate-limit-remaining"),
            Some(19u64.saturating_sub(i)),
            "#{}",
            i + 1
        );
        assert!(r.header_u64("x-rate-limit-reset").is_some(), "{r:?}");
        assert_eq!(r.body_str(), "ok\n");
    }
    let logs = "okta.management.logs";
    assert_eq!(e.counter(&format!("{logs}.admitted")), 20);
    assert_eq!(e.counter(&format!("{logs}.shadow_rejected")), 5);
    assert_eq!(e.counter(&format!("{logs}.rejected")), 0);
}

// ---------------------------------------------------------------------------------------------
// 5. overrides

#[test]
fn overrides_replace_a_route_per_method_and_change_buckets() {
    let e = start(
        json!({"vendor": "okta", "plan": "enterprise", "overrides": [
        {"route": "/api/v1/users", "methods": ["GET"], "limit": 3, "window": "minute"},
        {"bucket": "okta.management.logs", "limit": 7},
        {"bucket": "okta.management.events", "window": "hour"}]}),
    );
    let mut c = e.client();

    // A one-minute fixed window (Okta's default algorithm): every response in the window
    // names the same reset, a minute after the first request.
    let before = now_epoch_secs();
    let mut window_reset = None;
    for remaining in [2u64, 1, 0] {
        let r = c.request("GET", "/api/v1/users", &[]);
        assert_admitted(&r, "GET users");
        assert_eq!(r.header_u64("x-rate-limit-limit"), Some(3));
        assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(remaining));
        let reset = r.header_u64("x-rate-limit-reset").unwrap();
        assert_eq!(
            reset,
            *window_reset.get_or_insert(reset),
            "GET users: one window"
        );
    }
    let window_reset = window_reset.unwrap();
    assert_within(
        window_reset,
        before + 60,
        now_epoch_secs() + 61,
        "GET users reset",
    );
    let r = c.request("GET", "/api/v1/users", &[]);
    assert_rejected(&r, "GET users #4");
    assert_eq!(r.header_u64("x-rate-limit-limit"), Some(3));
    assert_eq!(r.header_u64("x-rate-limit-reset"), Some(window_reset));
    assert_okta_429_body(&r);
    let r = c.request("GET", "/api/v1/users?limit=200&after=00u1", &[]);
    assert_rejected(&r, "GET users with a query: same route");

    // POST keeps the catalog's route (okta.management.users, 600 on enterprise).
    let r = c.request("POST", "/api/v1/users", &[]);
    assert_admitted(&r, "POST users");
    assert_eq!(r.header_u64("x-rate-limit-limit"), Some(600));
    assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(599));
    // Other patterns are untouched: GET a user by id is okta.management.user-get (1000).
    let r = c.request("GET", "/api/v1/users/00u1abc", &[]);
    assert_admitted(&r, "GET user by id");
    assert_eq!(r.header_u64("x-rate-limit-limit"), Some(1000));

    // Bucket override of the limit: logs 50 -> 7.
    for remaining in (0..7u64).rev() {
        let r = c.request("GET", "/api/v1/logs", &[]);
        assert_admitted(&r, "logs");
        assert_eq!(r.header_u64("x-rate-limit-limit"), Some(7));
        assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(remaining));
    }
    assert_rejected(&c.request("GET", "/api/v1/logs", &[]), "logs #8");

    // Bucket override of the window only: events keeps 50, per hour.
    let before = now_epoch_secs();
    let r = c.request("GET", "/api/v1/events", &[]);
    assert_admitted(&r, "events");
    assert_eq!(r.header_u64("x-rate-limit-limit"), Some(50));
    let reset = r.header_u64("x-rate-limit-reset").unwrap();
    assert_within(
        reset,
        before + 3600,
        now_epoch_secs() + 3601,
        "events reset (hour window)",
    );

    assert_eq!(e.counter("overrides.0.admitted"), 3);
    assert_eq!(e.counter("overrides.0.rejected"), 2);
    assert_eq!(
        e.counter("okta.management.users.admitted"),
        1,
        "only the POST counts in the catalog bucket"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. vendor: custom

#[test]
fn custom_vendor_limits_its_routes_in_auth0_style() {
    let e = start(json!({"vendor": "custom", "routes": [
        {"route": "/v1/things/*", "limit": 5, "window": "minute", "algorithm": "fixed_window"}]}));
    let mut c = e.client();
    let paths = [
        "/v1/things",
        "/v1/things/1",
        "/v1/things",
        "/v1/things/1/parts",
        "/v1/things/2",
    ];
    let before = now_epoch_secs();
    let mut window_reset = None;
    for (i, path) in paths.iter().enumerate() {
        let r = c.request("GET", path, &[]);
        assert_admitted(&r, path);
        assert_eq!(rate_limit_header_names(&r), auth0_vendor_headers(), "{r:?}");
        assert_eq!(r.header_u64("x-ratelimit-limit"), Some(5));
        assert_eq!(r.header_u64("x-ratelimit-remaining"), Some(4 - i as u64));
        let reset = r.header_u64("x-ratelimit-reset").unwrap();
        assert_eq!(reset, *window_reset.get_or_insert(reset), "one window");
    }
    let window_reset = window_reset.unwrap();
    assert_within(window_reset, before + 60, now_epoch_secs() + 61, "reset");
    let r = c.request("GET", "/v1/things/3", &[]);
    let after = now_epoch_secs();
    assert_rejected(&r, "6th");
    assert_eq!(rate_limit_header_names(&r), auth0_vendor_headers(), "{r:?}");
    assert_eq!(r.header_u64("x-ratelimit-limit"), Some(5));
    assert_eq!(r.header_u64("x-ratelimit-remaining"), Some(0));
    assert_eq!(r.header_u64("x-ratelimit-reset"), Some(window_reset));
    // Whole seconds until the window ends (at least 1).
    let retry_after = r.header_u64("retry-after").expect("Retry-After on the 429");
    assert_within(
        retry_after,
        window_reset.saturating_sub(after + 1).max(1),
        window_reset - before,
        "Retry-After",
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"statusCode": 429, "error": "Too Many Requests",
               "message": AUTH0_429_MESSAGE, "errorCode": "too_many_requests"})
    );
    // Every method counts (no `methods`), and the bucket is shared by the whole pattern.
    assert_rejected(&c.request("POST", "/v1/things", &[]), "POST /v1/things");
    // Anything else is not limited and gets no rate-limit headers.
    for path in ["/other", "/v1/thingsx", "/v1"] {
        let r = c.request("GET", path, &[]);
        assert_admitted(&r, path);
        assert!(rate_limit_header_names(&r).is_empty(), "{path}: {r:?}");
    }
    assert_eq!(e.counter("routes.0.admitted"), 5);
    assert_eq!(e.counter("routes.0.rejected"), 2);
}

#[test]
fn custom_vendor_okta_dialect_and_default_token_bucket() {
    let e = start(json!({"vendor": "custom", "dialect": "okta",
        "routes": [{"route": "/v1/things/*", "limit": 5, "window": "minute"}]}));
    let mut c = e.client();
    let before = now_epoch_secs();
    for i in 0..5u64 {
        let r = c.request("GET", "/v1/things/1", &[]);
        assert_admitted(&r, "things");
        assert_eq!(rate_limit_header_names(&r), okta_vendor_headers(), "{r:?}");
        assert_eq!(r.header_u64("x-rate-limit-limit"), Some(5));
        assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(4 - i));
        // Token bucket (the custom default): one token back every 60 s / 5 = 12 s, so during
        // the burst the next token is 12 s after the first request (a fixed window: 60 s).
        let reset = r.header_u64("x-rate-limit-reset").unwrap();
        assert_within(
            reset,
            before + 12,
            now_epoch_secs() + 13,
            "token-bucket reset",
        );
    }
    let r = c.request("GET", "/v1/things", &[]);
    assert_rejected(&r, "6th");
    assert_eq!(rate_limit_header_names(&r), okta_vendor_headers(), "{r:?}");
    assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(0));
    assert_okta_429_body(&r);
}

// ---------------------------------------------------------------------------------------------
// 7. headers: ietf / both / none

#[test]
fn ietf_headers_replace_the_vendor_headers() {
    let e = start(json!({"vendor": "okta", "plan": "integrator-free", "headers": "ietf"}));
    let mut c = e.client();
    let policy = "\"okta.management.logs\";q=20;w=60";
    let t0 = Instant::now();
    let r = c.request("GET", "/api/v1/logs", &[]);
    assert_admitted(&r, "logs #1");
    assert_eq!(
        rate_limit_header_names(&r),
        ["ratelimit", "ratelimit-policy"],
        "{r:?}"
    );
    // A fresh fixed window: exactly 60 s to reset.
    assert_eq!(
        r.header("ratelimit"),
        Some("\"okta.management.logs\";r=19;t=60")
    );
    assert_eq!(r.header("ratelimit-policy"), Some(policy));
    for i in 1..20u64 {
        let r = c.request("GET", "/api/v1/logs", &[]);
        assert_admitted(&r, "logs");
        let (id, remaining, t) = parse_ratelimit(r.header("ratelimit").unwrap());
        assert_eq!((id.as_str(), remaining), ("okta.management.logs", 19 - i));
        let elapsed = t0.elapsed().as_secs();
        assert_within(t, 59u64.saturating_sub(elapsed), 60, "t");
        assert_eq!(r.header("ratelimit-policy"), Some(policy));
    }
    let r = c.request("GET", "/api/v1/logs", &[]);
    assert_rejected(&r, "logs #21");
    assert_eq!(
        rate_limit_header_names(&r),
        ["ratelimit", "ratelimit-policy"],
        "{r:?}"
    );
    let (id, remaining, t) = parse_ratelimit(r.header("ratelimit").unwrap());
    assert_eq!((id.as_str(), remaining), ("okta.management.logs", 0));
    assert_within(
        t,
        59u64.saturating_sub(t0.elapsed().as_secs()),
        60,
        "t on the 429",
    );
    assert_eq!(r.header("ratelimit-policy"), Some(policy));
    assert_okta_429_body(&r);
    // Each response names the bucket it reports.
    let r = c.request("GET", "/api/v1/users", &[]);
    assert_eq!(
        r.header("ratelimit"),
        Some("\"okta.management.users\";r=99;t=60")
    );
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"okta.management.users\";q=100;w=60")
    );
}

#[test]
fn both_and_none_header_styles() {
    // both: vendor and IETF headers together; a window in seconds shows as w=.
    let e = start(
        json!({"vendor": "okta", "plan": "integrator-free", "headers": "both",
        "overrides": [{"bucket": "okta.management.logs", "limit": 2, "window": 90}]}),
    );
    let mut c = e.client();
    let all = [
        "ratelimit",
        "ratelimit-policy",
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ];
    let before = now_epoch_secs();
    let r = c.request("GET", "/api/v1/logs", &[]);
    assert_admitted(&r, "both #1");
    assert_eq!(rate_limit_header_names(&r), all, "{r:?}");
    assert_eq!(r.header_u64("x-rate-limit-limit"), Some(2));
    assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(1));
    let reset = r.header_u64("x-rate-limit-reset").unwrap();
    assert_within(reset, before + 90, now_epoch_secs() + 91, "90 s window");
    assert_eq!(
        r.header("ratelimit"),
        Some("\"okta.management.logs\";r=1;t=90")
    );
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"okta.management.logs\";q=2;w=90")
    );
    assert_admitted(&c.request("GET", "/api/v1/logs", &[]), "both #2");
    let r = c.request("GET", "/api/v1/logs", &[]);
    assert_rejected(&r, "both #3");
    assert_eq!(rate_limit_header_names(&r), all, "{r:?}");
    assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(0));
    let (_, remaining, _) = parse_ratelimit(r.header("ratelimit").unwrap());
    assert_eq!(remaining, 0);
    drop(c);
    drop(e);

    // none: no rate-limit headers at all, but the 429 keeps its body.
    let e = start(json!({"vendor": "okta", "plan": "integrator-free", "headers": "none"}));
    let mut c = e.client();
    for i in 0..20 {
        let r = c.request("GET", "/api/v1/logs", &[]);
        assert_admitted(&r, &format!("none #{}", i + 1));
        assert!(rate_limit_header_names(&r).is_empty(), "{r:?}");
    }
    let r = c.request("GET", "/api/v1/logs", &[]);
    assert_rejected(&r, "none #21");
    assert!(rate_limit_header_names(&r).is_empty(), "{r:?}");
    assert_okta_429_body(&r);
    assert_eq!(e.counter("okta.management.logs.rejected"), 1);
}

// ---------------------------------------------------------------------------------------------
// 8. max_keys: the shared-data key cap

fn allocated_bytes(e: &Envoy) -> i64 {
    let memory = e.admin("GET", "/memory").json();
    let allocated = memory["allocated"].as_str().unwrap_or_default();
    allocated
        .parse()
        .unwrap_or_else(|_| panic!("admin /memory: {memory}"))
}

/// Envoy's own wasm stats: VMs created / active, reloads (a crashed VM shows up here).
fn vm_stats(e: &Envoy) -> Vec<String> {
    e.stats()
        .lines()
        .filter(|l| {
            l.starts_with("wasm.envoy.wasm.runtime.")
                || l.starts_with("wasm.wasm_vm_count")
                || l.starts_with("wasm.idp_ratelimit.vm_reload")
        })
        .map(String::from)
        .collect()
}

fn key_cap_config(max_keys: u32) -> Value {
    json!({"vendor": "custom", "scope": {"header": "x-client-id"}, "max_keys": max_keys,
           "routes": [{"route": "/*", "limit": 1000, "window": "minute"},
                      {"route": "/exact/*", "limit": 3, "window": "minute",
                       "algorithm": "fixed_window"}]})
}

/// `count` requests, one per distinct x-client-id `client-<from>`.., over 4 keep-alive
/// connections. Every answer must be a counted 200 or the filter's 429. Returns (200s, 429s).
fn flood(port: u16, from: usize, count: usize) -> (u64, u64) {
    const THREADS: usize = 4;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let (mut ok, mut limited) = (0, 0);
                for i in (from + t..from + count).step_by(THREADS) {
                    let id = format!("client-{i}");
                    let r = c.request("GET", "/flood", &[("x-client-id", &id)]);
                    assert_eq!(r.header_u64("x-ratelimit-limit"), Some(1000), "{id}: {r:?}");
                    match r.status {
                        200 => {
                            assert!(r.reached_upstream(), "{id}: {r:?}");
                            ok += 1;
                        }
                        429 => {
                            assert_eq!(r.json()["errorCode"], "too_many_requests", "{id}");
                            assert!(r.header_u64("retry-after").is_some(), "{id}: {r:?}");
                            limited += 1;
                        }
                        _ => panic!("{id}: unexpected answer {r:?}"),
                    }
                }
                (ok, limited)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

/// The filter creates exactly max_keys/4 group keys plus one overflow key and a peak record per
/// bucket, at configure time, and never more. Envoy has no way to list or count shared-data keys (no
/// hostcall, stat or admin endpoint), so this checks two things: the filter's own
/// `shared_data_keys_created` counter, and, independently, Envoy's heap (admin /memory
/// `allocated`), which holds every shared-data key and value. The heap check is calibrated in
/// the test: a table of 16384 extra groups must show up as heap growth, and 9000 new distinct
/// clients must grow the heap by less than a tenth of what one key per client would.
#[test]
fn max_keys_caps_shared_data_whatever_the_number_of_clients() {
    const KEY_CAP_LOG: &str = "2 buckets, at most 67 shared-data keys";
    // Calibration: the heap of an idle Envoy with a big table and with a small one.
    let (big_alloc, big_keys) = {
        let e = start(key_cap_config(65_536));
        (allocated_bytes(&e), e.counter("shared_data_keys_created"))
    };
    assert_eq!(big_keys, 16_384 + 1 + 2);

    let e = start(key_cap_config(256));
    assert!(
        e.wait_for_log(KEY_CAP_LOG, Duration::from_secs(5)),
        "configure log line {KEY_CAP_LOG:?} missing"
    );
    assert_eq!(e.counter("shared_data_keys_created"), 64 + 1 + 2);
    let small_alloc = allocated_bytes(&e);
    let bytes_per_key = (big_alloc - small_alloc) / (16_384 - 64);
    assert!(
        bytes_per_key >= 100,
        "16320 more shared-data keys should grow the heap by >= 100 bytes each: \
         {big_alloc} vs {small_alloc} bytes"
    );
    let vms = vm_stats(&e);
    assert!(vms.iter().any(|l| l.contains(".active: ")), "{vms:?}");

    // Exact counting while the table has room: 20 keys, each exactly its 3.
    let mut c = e.client();
    let exact = |c: &mut Client, id: &str| c.request("GET", "/exact/x", &[("x-client-id", id)]);
    for k in 0..20 {
        let id = format!("exact-{k}");
        assert_three_then_429(&id, |_| exact(&mut c, &id));
    }

    let port = e.port();
    let (ok1, limited1) = flood(port, 0, 1000);
    let after_1000 = allocated_bytes(&e);
    let (ok2, limited2) = flood(port, 1000, 9000);
    let after_10000 = allocated_bytes(&e);

    assert_eq!(
        e.counter("shared_data_keys_created"),
        67,
        "keys created after 10000 distinct clients"
    );
    let growth = after_10000 - after_1000;
    eprintln!(
        "heap: {big_alloc} B (16388 keys) vs {small_alloc} B (68 keys) = {bytes_per_key} B/key; \
         {after_1000} B after 1000 clients, {after_10000} B after 10000 (+{growth} B); \
         {} admitted, {} rejected",
        ok1 + ok2,
        limited1 + limited2
    );
    assert!(
        growth * 10 < 9000 * bytes_per_key,
        "heap grew {growth} bytes over 9000 new clients: one shared-data key per client \
         would be about {} bytes",
        9000 * bytes_per_key
    );
    assert_eq!(ok1 + limited1 + ok2 + limited2, 10_000);
    assert_eq!(e.counter("routes.0.admitted"), ok1 + ok2);
    assert_eq!(e.counter("routes.0.rejected"), limited1 + limited2);
    assert_eq!(e.counter("store_errors"), 0);
    assert_eq!(vm_stats(&e), vms, "wasm VMs created, reloaded or lost");
    assert!(
        !e.logs().contains("on the request path"),
        "keys created on the request path"
    );

    // The flood never reset a live key: each exact key is still used up.
    for k in 0..20 {
        let id = format!("exact-{k}");
        assert_rejected(&exact(&mut c, &id), &id);
    }
    assert_eq!(e.counter("routes.1.admitted"), 60);
    assert_eq!(e.counter("routes.1.rejected"), 40);
}

// ---------------------------------------------------------------------------------------------
// 9. configuration errors

/// Starts Envoy with `config` and checks that it refuses to start, with a log line naming
/// `field` and saying `problem`. Returns what is wrong, if anything.
fn refusal_problem((config, field, problem): &(Value, &str, &str)) -> Option<String> {
    let started = Envoy::try_start(EnvoyOptions {
        plugin_config: config.to_string(),
        ..Default::default()
    });
    let log = match started {
        Ok(_) => {
            return Some(format!(
                "{config} was accepted; expected a refusal of `{field}`"
            ))
        }
        Err(log) => log,
    };
    let Some(line) = log.lines().find(|l| l.contains("configuration refused:")) else {
        return Some(format!("{config}: no refusal line in:\n{log}"));
    };
    if !line.contains(&format!("configuration refused: field `{field}`: ")) {
        return Some(format!("{config}: expected field `{field}` in {line:?}"));
    }
    if !line.contains(problem) {
        return Some(format!("{config}: {line:?} should say {problem:?}"));
    }
    if !log.contains("Unable to create Wasm plugin idp_ratelimit") {
        return Some(format!("{config}: envoy should refuse to start:\n{log}"));
    }
    None
}

#[test]
fn bad_operator_options_are_refused_at_startup_naming_the_field() {
    let okta = |extra: Value| {
        let mut v = json!({"vendor": "okta", "plan": "enterprise"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let custom_route = |route: Value| json!({"vendor": "custom", "routes": [route]});
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            okta(json!({"headroom_percent": 0})),
            "headroom_percent",
            "from 1 to 100",
        ),
        (
            okta(json!({"headroom_percent": 101})),
            "headroom_percent",
            "from 1 to 100",
        ),
        (
            okta(json!({"scope": "ip"})),
            "scope",
            "unknown scope \"ip\"",
        ),
        (
            okta(json!({"scope": {"header": "x client"}})),
            "scope.header",
            "header name",
        ),
        (
            okta(json!({"overrides": [{"route": "/x", "limit": 5}]})),
            "overrides[0].window",
            "missing",
        ),
        (
            okta(json!({"overrides": [{"bucket": "okta.management.logs", "limit": 0}]})),
            "overrides[0].limit",
            "whole number",
        ),
        (
            okta(json!({"overrides": [{"bucket": "okta.nope", "limit": 5}]})),
            "overrides[0].bucket",
            "no bucket",
        ),
        (
            okta(json!({"mode": "dry-run"})),
            "mode",
            "unknown value \"dry-run\"",
        ),
        (
            okta(json!({"headers": "all"})),
            "headers",
            "unknown value \"all\"",
        ),
        (
            okta(json!({"max_keys": 63})),
            "max_keys",
            "from 64 to 4194304",
        ),
        (
            okta(json!({"max_keys": 4_194_305})),
            "max_keys",
            "from 64 to 4194304",
        ),
        (
            okta(json!({"bucket_scopes": {"okta.nope": "global"}})),
            "bucket_scopes.okta.nope",
            "no such bucket",
        ),
        (
            okta(json!({"dialect": "auth0"})),
            "dialect",
            "only applies to vendor custom",
        ),
        (
            custom_route(json!({"route": "/x", "limit": 5, "window": "fortnight"})),
            "routes[0].window",
            "unknown window",
        ),
        (
            custom_route(
                json!({"route": "/x", "limit": 5, "window": "minute", "algorithm": "leaky"}),
            ),
            "routes[0].algorithm",
            "unknown value \"leaky\"",
        ),
    ];
    // Two at a time (each refused start compiles the module): every mismatch is collected.
    let mut problems: Vec<String> = std::thread::scope(|scope| {
        let half = cases.len().div_ceil(2);
        let workers: Vec<_> = cases
            .chunks(half)
            .map(|chunk| scope.spawn(move || chunk.iter().filter_map(refusal_problem).collect()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec!["a worker panicked".into()])
            })
            .collect()
    });
    problems.sort();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    // The boundaries themselves are accepted.
    let e = start(
        json!({"vendor": "custom", "max_keys": 64, "headroom_percent": 100,
        "routes": [{"route": "/x", "limit": 1, "window": 1}]}),
    );
    assert_eq!(e.counter("shared_data_keys_created"), 16 + 1 + 1);
    let r = e.client().request("GET", "/x", &[]);
    assert_admitted(&r, "/x");
    assert_eq!(
        r.header_u64("x-ratelimit-limit"),
        Some(1),
        "100% headroom keeps 1"
    );
}
