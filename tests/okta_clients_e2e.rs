//! End-to-end: Okta's limits per client in a real Envoy (--concurrency 2): the per-principal
//! share of the management buckets (each API token or OAuth client at most half a bucket by
//! default) and the client-based limits on `/authorize` and `/login/login.htm` (60 a minute
//! and 5 in flight per client ID + IP + device cookie; the org bucket still applies).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
mod slow_listener;
use common::*;

const LOGS: &str = "/api/v1/logs";

fn rl(r: &Response) -> (u16, u64, u64, u64) {
    let h = |n: &str| {
        r.header_u64(n)
            .unwrap_or_else(|| panic!("{n} missing: {} {:?}", r.status, r.headers))
    };
    (
        r.status,
        h("x-rate-limit-limit"),
        h("x-rate-limit-remaining"),
        h("x-rate-limit-reset"),
    )
}

/// An unsigned JWT with these claims (the filter decodes, never verifies).
fn bearer(claims: &str) -> String {
    let b64 = |s: &str| common::base64url::encode(s.as_bytes());
    format!("Bearer {}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(claims))
}

/// integrator-free `GET /api/v1/logs` is 20 a minute; one API token gets 10 of them and sees
/// its own limit in the headers, another token (an OAuth client's JWT) its own 10, and calls
/// without a principal only what is left of the org's 20.
#[test]
fn one_token_meets_its_429_at_half_the_table() {
    let envoy = Envoy::start(r#"{"vendor": "okta", "plan": "integrator-free"}"#);
    let mut c = envoy.client();
    let token = [("authorization", "SSWS 00sdk-token-a")];
    let first = rl(&c.request("GET", LOGS, &token));
    assert_eq!((first.0, first.1, first.2), (200, 10, 9));
    for i in 2..=10u64 {
        let got = rl(&c.request("GET", LOGS, &token));
        assert_eq!((got.0, got.1, got.2), (200, 10, 10 - i), "token call {i}");
        assert_eq!(got.3, first.3, "one window");
    }
    let r = c.request("GET", LOGS, &token);
    assert_eq!(rl(&r), (429, 10, 0, first.3), "token call 11");
    assert_eq!(r.json()["errorCode"], "E0000047");
    assert!(!r.reached_upstream());
    // An OAuth service app (bearer JWT, `cid` claim): its own half.
    let jwt = bearer(r#"{"cid":"0oaService","sub":"0oaService","scp":["okta.logs.read"]}"#);
    let app = [("authorization", jwt.as_str())];
    for i in 1..=10u64 {
        let got = rl(&c.request("GET", LOGS, &app));
        assert_eq!((got.0, got.1, got.2), (200, 10, 10 - i), "app call {i}");
    }
    // Its 11th: the org's 20 are now spent, so the org bucket refuses it, as it refuses a
    // call with no principal.
    assert_eq!(rl(&c.request("GET", LOGS, &app)), (429, 20, 0, first.3));
    let r = c.request("GET", LOGS, &[]);
    assert_eq!(rl(&r), (429, 20, 0, first.3));
    let principal = "idp_ratelimit.okta.management.logs.principal";
    assert_eq!(envoy.stat(&format!("{principal}.admitted")), Some(20));
    assert_eq!(envoy.stat(&format!("{principal}.rejected")), Some(1));
    let org = "idp_ratelimit.okta.management.logs";
    assert_eq!(envoy.stat(&format!("{org}.admitted")), Some(20));
    assert_eq!(envoy.stat(&format!("{org}.rejected")), Some(2));
}

#[test]
fn principal_share_is_configurable() {
    let envoy = Envoy::start(
        r#"{"vendor": "okta", "plan": "integrator-free", "principal_share_percent": 25}"#,
    );
    let mut c = envoy.client();
    let token = [("authorization", "SSWS 00t")];
    for i in 1..=5u64 {
        let got = rl(&c.request("GET", LOGS, &token));
        assert_eq!((got.0, got.1, got.2), (200, 5, 5 - i));
    }
    assert_eq!(rl(&c.request("GET", LOGS, &token)).0, 429);
    // 100 turns the share off: a single token may use the whole bucket.
    let envoy = Envoy::start(
        r#"{"vendor": "okta", "plan": "integrator-free", "principal_share_percent": 100}"#,
    );
    let mut c = envoy.client();
    for i in 1..=20u64 {
        let got = rl(&c.request("GET", LOGS, &token));
        assert_eq!((got.0, got.1, got.2), (200, 20, 20 - i));
    }
    assert_eq!(rl(&c.request("GET", LOGS, &token)).0, 429);
}

/// `/oauth2/v1/authorize` and a custom server's `/authorize`: 60 a minute per client ID + IP +
/// `dt` cookie, reported in the headers; the org's bucket (enterprise 1200) counts them all.
#[test]
fn authorize_is_limited_per_client_and_device() {
    let envoy = Envoy::start(r#"{"vendor": "okta", "plan": "enterprise"}"#);
    let mut c = envoy.client();
    let path = "/oauth2/v1/authorize?client_id=0oaPortal&response_type=code&state=s";
    let dev1 = [("cookie", "JSESSIONID=x; DT=device-1")];
    let first = rl(&c.request("GET", path, &dev1));
    assert_eq!((first.0, first.1, first.2), (200, 60, 59));
    for i in 2..=60u64 {
        let got = rl(&c.request("GET", path, &dev1));
        assert_eq!((got.0, got.1, got.2), (200, 60, 60 - i), "call {i}");
    }
    let r = c.request("GET", path, &dev1);
    assert_eq!(rl(&r), (429, 60, 0, first.3), "call 61");
    assert_eq!(r.json()["errorCode"], "E0000047");
    // Another device, another client ID, the same client on a custom authorization server
    // (one client-based bucket for both servers): another device's quota is whole.
    let dev2 = [("cookie", "DT=device-2")];
    assert_eq!(rl(&c.request("GET", path, &dev2)).2, 59);
    let other = "/oauth2/v1/authorize?client_id=0oaOther";
    assert_eq!(rl(&c.request("GET", other, &dev1)).2, 59);
    assert_eq!(
        rl(&c.request("GET", other, &[])).2,
        59,
        "no dt cookie: its own key"
    );
    let custom = "/oauth2/aus1/v1/authorize?client_id=0oaPortal";
    assert_eq!(rl(&c.request("GET", custom, &dev1)).0, 429, "same client");
    // The org authorization server's bucket saw 60 + 1 + 1 + 1 admitted calls.
    let org = rl(&c.request("GET", "/oauth2/v1/userinfo", &[]));
    assert_eq!((org.0, org.1, org.2), (200, 1200, 1200 - 64));
    // "client_limits": false: only the org bucket.
    let envoy = Envoy::start(r#"{"vendor": "okta", "plan": "enterprise", "client_limits": false}"#);
    let got = rl(&envoy.client().request("GET", path, &dev1));
    assert_eq!((got.0, got.1, got.2), (200, 1200, 1199));
}

/// `/login/login.htm`: IP + device, 60 a minute.
#[test]
fn login_htm_is_limited_per_ip_and_device() {
    let envoy = Envoy::start(r#"{"vendor": "okta", "plan": "enterprise"}"#);
    let mut c = envoy.client();
    for i in 1..=60u64 {
        let got = rl(&c.request("POST", "/login/login.htm?fromURI=/app", &[]));
        assert_eq!((got.0, got.1, got.2), (200, 60, 60 - i), "call {i}");
    }
    assert_eq!(rl(&c.request("GET", "/login/login.htm", &[])).0, 429);
    let d = [("cookie", "dt=browser-7")];
    assert_eq!(rl(&c.request("GET", "/login/login.htm", &d)).2, 59);
}

/// 5 in flight per client: the 6th of one client (held upstream) is refused, another
/// device is not, and the places come back when the requests end.
#[test]
fn five_in_flight_per_client() {
    use std::io::Write;
    let (envoy, port) = slow_listener::start(r#"{"vendor": "okta", "plan": "enterprise"}"#, 2);
    let path = "/oauth2/v1/authorize?client_id=0oaSlow";
    let held: Vec<std::net::TcpStream> = (0..5)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: acme.okta.com\r\nCookie: DT=d1\r\n{}: 2000\r\n\r\n",
                slow_listener::DELAY
            );
            s.write_all(req.as_bytes()).unwrap();
            s
        })
        .collect();
    let name = "idp_ratelimit.okta.client.authorize.concurrent.admitted";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while envoy.stat(name).unwrap_or(0) < 5 {
        assert!(std::time::Instant::now() < deadline, "5 never in flight");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let h = [("host", "acme.okta.com"), ("cookie", "DT=d1")];
    let r = Client::connect(port).request("GET", path, &h);
    assert_eq!(r.status, 429, "{:?}", r.headers);
    assert_eq!(r.header_u64("x-rate-limit-limit"), Some(5));
    assert_eq!(r.header_u64("x-rate-limit-remaining"), Some(0));
    let other = [("host", "acme.okta.com"), ("cookie", "DT=d2")];
    assert_eq!(
        Client::connect(port).request("GET", path, &other).status,
        200
    );
    for s in held {
        let mut r = std::io::BufReader::new(s);
        assert_eq!(read_response(&mut r, false).unwrap().0.status, 200);
    }
    assert_eq!(Client::connect(port).request("GET", path, &h).status, 200);
}
