//! Checks several end-to-end suites share: Okta's counted responses and 429, Envoy's own
//! replies, the wasm VM's health, and raw-socket helpers.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use super::envoy::{Envoy, EnvoyOptions};
use super::http1::{parse_response, rate, raw_request, Response, Sent, IO_TIMEOUT};

/// The smallest Okta plan: 20 a minute on /api/v1/logs.
pub const OKTA_FREE: &str = r#"{"vendor": "okta", "plan": "integrator-free"}"#;

/// Starts Envoy with `plugin_config`, which the filter must refuse: Envoy
/// does not start. Returns the log line saying so, and its text from
/// `configuration refused` on.
#[track_caller]
pub fn refusal(plugin_config: &str) -> (String, String) {
    let log = match Envoy::try_start(EnvoyOptions {
        plugin_config: plugin_config.to_string(),
        ..Default::default()
    }) {
        Ok(envoy) => panic!(
            "Envoy started with {plugin_config}; running: {}",
            envoy.is_running()
        ),
        Err(log) => log,
    };
    let line = log
        .lines()
        .find(|l| l.contains("configuration refused"))
        .unwrap_or_else(|| panic!("{plugin_config}: no `configuration refused` line in\n{log}"));
    let text = line[line.find("configuration refused").unwrap_or(0)..].to_string();
    (line.to_string(), text)
}

/// A forwarded, counted 2xx response; returns its rate-limit headers'
/// (limit, remaining, reset).
#[track_caller]
pub fn admitted(s: &Sent, what: &str) -> (u64, u64, u64) {
    assert!(
        (200..300).contains(&s.r.status),
        "{what}: expected admitted, got {} {:?} {}",
        s.r.status,
        s.r.headers,
        s.r.body_str()
    );
    assert!(s.r.reached_upstream(), "{what}: not forwarded");
    rate(&s.r)
}

/// A counted, forwarded response with Okta's headers saying `limit` and `remaining`.
#[track_caller]
pub fn assert_counted(r: &Response, limit: u64, remaining: u64, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    assert!(r.reached_upstream(), "{what}: not forwarded: {r:?}");
    assert_eq!(
        r.header_u64("x-rate-limit-limit"),
        Some(limit),
        "{what}: {r:?}"
    );
    assert_eq!(
        r.header_u64("x-rate-limit-remaining"),
        Some(remaining),
        "{what}: Remaining: {r:?}"
    );
}

/// The filter's Okta 429: headers, JSON body, request id; never forwarded.
#[track_caller]
pub fn assert_okta_429(r: &Response, limit: u64, what: &str) {
    assert_eq!(r.status, 429, "{what}: {r:?}");
    assert!(
        !r.reached_upstream(),
        "{what}: a 429 must not reach upstream"
    );
    assert_eq!(
        r.header_u64("x-rate-limit-limit"),
        Some(limit),
        "{what}: {r:?}"
    );
    assert_eq!(
        r.header_u64("x-rate-limit-remaining"),
        Some(0),
        "{what}: {r:?}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    // As Okta's: the request id is 32 hex digits, the errorId another id (`oae…`).
    assert!(
        r.header("x-okta-request-id").is_some_and(|v| v.len() == 32),
        "{what}: no 32-hex x-okta-request-id: {r:?}"
    );
    let body = r.json();
    let id = body["errorId"].as_str().unwrap_or_default();
    assert!(id.starts_with("oae"), "{what}: errorId {id:?}");
    assert_eq!(
        body,
        json!({"errorCode": "E0000047",
               "errorSummary": "API call exceeded rate limit due to too many requests.",
               "errorLink": "E0000047", "errorId": id, "errorCauses": []}),
        "{what}: Okta 429 body"
    );
}

/// A response Envoy produced itself, before any filter ran: no rate-limit headers, not forwarded.
#[track_caller]
pub fn assert_envoy_reply(r: &Response, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert!(!r.reached_upstream(), "{what}: {r:?}");
    assert_eq!(r.header("x-rate-limit-limit"), None, "{what}: {r:?}");
}

/// Envoy's own wasm stats (`wasm.*`, not the plugin's `wasmcustom.*`). Envoy 1.40 exposes
/// `wasm.envoy.wasm.runtime.<rt>.{active,created}` (VM instances), `wasm.wasm_vm_count`,
/// `wasm.<plugin name>.vm_reload{,_backoff,_failure,_success}` (failure_policy FAIL_RELOAD) and
/// `wasm.remote_load_*`. A VM killed by a trap is NOT visible in any of them (the dead VM stays
/// "active"; see `vm_trap_*` in tests/vm_failure_e2e.rs): only a reload is. So a healthy run is checked on these
/// stats, on the log, and on every answer being a counted 200 or the filter's own 429.
pub fn wasm_stats(e: &Envoy) -> BTreeMap<String, u64> {
    e.stats()
        .lines()
        .filter(|l| l.starts_with("wasm."))
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Log lines that show a wasm VM failing: a Rust panic (proxy-wasm logs it before trapping),
/// the trap itself ("Function: proxy_on_… failed: Uncaught RuntimeError: unreachable" on V8,
/// "wasm trap" on wasmtime), a failed VM, and any error or critical line of the wasm component.
pub fn vm_failure_lines(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|l| {
            l.contains("panicked")
                || l.contains("Function: proxy_")
                || l.contains("RuntimeError")
                || l.contains("wasm trap")
                || l.contains("Wasm VM failed")
                || (l.contains("][wasm]")
                    && (l.contains("][error][") || l.contains("][critical][")))
        })
        .collect()
}

/// The VM is alive and unchanged: Envoy runs, the wasm stats are as `before`, no failure logged.
#[track_caller]
pub fn assert_vm_healthy(e: &Envoy, before: &BTreeMap<String, u64>, what: &str) {
    assert!(e.is_running(), "{what}: envoy exited");
    assert_eq!(
        &wasm_stats(e),
        before,
        "{what}: wasm VMs created, reloaded or lost"
    );
    let logs = e.logs();
    let failures = vm_failure_lines(&logs);
    assert!(failures.is_empty(), "{what}: {failures:#?}");
}

/// Polls `name` until it equals `want` (worker stats reach the admin thread asynchronously).
pub fn wait_for_stat(e: &Envoy, name: &str, want: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if e.stat(name) == Some(want) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn raw(port: u16, bytes: &[u8]) -> Response {
    parse_response(&raw_request(port, bytes))
}

/// Closes `s` with a TCP RST instead of a FIN (SO_LINGER on, timeout 0).
pub fn reset_connection(s: TcpStream) {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const i32, len: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let linger: [i32; 2] = [1, 0]; // struct linger { l_onoff = 1, l_linger = 0 }
                                   // SAFETY: a valid fd and an 8-byte `struct linger`.
    let rc = unsafe { setsockopt(s.as_raw_fd(), SOL_SOCKET, SO_LINGER, linger.as_ptr(), 8) };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
    drop(s);
}

pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}
