//! End-to-end hardening: hostile input, HTTP/2, several filter instances, VM failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const OKTA_FREE: &str = r#"{"vendor": "okta", "plan": "integrator-free"}"#;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A counted, forwarded response with Okta's headers saying `limit` and `remaining`.
#[track_caller]
fn assert_counted(r: &Response, limit: u64, remaining: u64, what: &str) {
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
fn assert_okta_429(r: &Response, limit: u64, what: &str) {
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
    let id = r
        .header("x-okta-request-id")
        .unwrap_or_else(|| panic!("{what}: no x-okta-request-id: {r:?}"));
    assert_eq!(
        r.json(),
        json!({"errorCode": "E0000047",
               "errorSummary": "API call exceeded rate limit due to too many requests.",
               "errorLink": "E0000047", "errorId": id, "errorCauses": []}),
        "{what}: Okta 429 body"
    );
}

/// A response Envoy produced itself, before any filter ran: no rate-limit headers, not forwarded.
#[track_caller]
fn assert_envoy_reply(r: &Response, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert!(!r.reached_upstream(), "{what}: {r:?}");
    assert_eq!(r.header("x-rate-limit-limit"), None, "{what}: {r:?}");
}

/// Value of a plugin counter (`wasmcustom.idp_ratelimit.<name>`); absent is a failure.
#[track_caller]
fn counter(e: &Envoy, name: &str) -> u64 {
    let full = format!("idp_ratelimit.{name}");
    e.stat(&full)
        .unwrap_or_else(|| panic!("no stat wasmcustom.{full}"))
}

#[track_caller]
fn stat(e: &Envoy, name: &str) -> u64 {
    e.stat(name).unwrap_or_else(|| panic!("no stat {name}"))
}

/// Envoy's own wasm stats (`wasm.*`, not the plugin's `wasmcustom.*`). Envoy 1.40 exposes
/// `wasm.envoy.wasm.runtime.<rt>.{active,created}` (VM instances), `wasm.wasm_vm_count`,
/// `wasm.<plugin name>.vm_reload{,_backoff,_failure,_success}` (failure_policy FAIL_RELOAD) and
/// `wasm.remote_load_*`. A VM killed by a trap is NOT visible in any of them (the dead VM stays
/// "active"; see `vm_trap_*` below): only a reload is. So a healthy run is checked on these
/// stats, on the log, and on every answer being a counted 200 or the filter's own 429.
fn wasm_stats(e: &Envoy) -> BTreeMap<String, u64> {
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
fn vm_failure_lines(logs: &str) -> Vec<&str> {
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
fn assert_vm_healthy(e: &Envoy, before: &BTreeMap<String, u64>, what: &str) {
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
fn wait_for_stat(e: &Envoy, name: &str, want: u64, timeout: Duration) -> bool {
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

fn raw(port: u16, bytes: &[u8]) -> Response {
    parse_response(&raw_request(port, bytes))
}

/// Closes `s` with a TCP RST instead of a FIN (SO_LINGER on, timeout 0).
fn reset_connection(s: TcpStream) {
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

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

// ---------------------------------------------------------------------------------------------
// More filter instances in one Envoy: listeners merged in with `--config-yaml`

/// A listener named `listener` with its own connection manager and wasm filter (`plugin` is the
/// plugin name, which namespaces the counters; `vm_id` picks the VM and its shared data), in
/// front of the same 200 route as the harness (`x-upstream: direct`).
fn wasm_listener(listener: &str, plugin: &str, vm_id: &str, config: &str) -> Value {
    const T: &str = "type.googleapis.com/";
    let wasm = json!({
        "name": plugin, "root_id": "idp_ratelimit",
        "configuration": {"@type": format!("{T}google.protobuf.StringValue"), "value": config},
        "vm_config": {"vm_id": vm_id, "runtime": EnvoyOptions::default().runtime,
                      "code": {"local": {"filename": wasm_path().to_string_lossy()}}}});
    let hcm_type =
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    let hcm = json!({
        "@type": format!("{T}{hcm_type}"),
        "stat_prefix": listener, "codec_type": "AUTO", "use_remote_address": true,
        "normalize_path": false, "merge_slashes": false,
        "http_filters": [
            {"name": "envoy.filters.http.wasm",
             "typed_config": {"@type": format!("{T}envoy.extensions.filters.http.wasm.v3.Wasm"),
                              "config": wasm}},
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": format!("{T}envoy.extensions.filters.http.router.v3.Router")}}],
        "route_config": {"virtual_hosts": [{
            "name": listener, "domains": ["*"],
            "response_headers_to_add": [{"header": {"key": "x-upstream", "value": "direct"}}],
            "routes": [{"match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]}]}});
    json!({
        "name": listener,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]})
}

/// Envoy arguments adding `listeners` to the harness bootstrap (protobuf merge: appended).
fn extra_listeners(listeners: Vec<Value>) -> Vec<String> {
    let config = json!({"static_resources": {"listeners": listeners}});
    vec!["--config-yaml".into(), config.to_string()]
}

/// Main listener, harness config, plus `listeners`.
fn start_with_listeners(config: &str, listeners: Vec<Value>) -> Envoy {
    Envoy::start_with(EnvoyOptions {
        plugin_config: config.into(),
        extra_args: extra_listeners(listeners),
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/2 cleartext (prior knowledge) client.
//
// curl 7.88.1 (this machine's) fails every request after the first on a reused h2c connection
// ("Error in the HTTP2 framing layer"; one request per connection works), and no HTTP/2 crate
// is a dependency, so the tests speak HTTP/2 themselves: the connection preface, SETTINGS,
// requests as HPACK literals without indexing (plain strings, no Huffman), all streams of a
// batch opened at once (multiplexed), and responses decoded with the full HPACK decoder
// (static table, dynamic table, Huffman), which `hpack_decoder_passes_rfc_7541_examples`
// checks against the RFC's own examples.

mod h2 {
    use super::Response;
    use std::collections::{BTreeMap, VecDeque};
    use std::io::{self, Read, Write};
    use std::net::TcpStream;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const DATA: u8 = 0;
    const HEADERS: u8 = 1;
    const RST_STREAM: u8 = 3;
    const SETTINGS: u8 = 4;
    const PING: u8 = 6;
    const GOAWAY: u8 = 7;
    const WINDOW_UPDATE: u8 = 8;
    const CONTINUATION: u8 = 9;
    const END_STREAM: u8 = 0x1;
    const ACK: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    const PADDED: u8 = 0x8;
    const PRIORITY: u8 = 0x20;
    /// Every peer accepts frames this large (SETTINGS_MAX_FRAME_SIZE is at least 16384).
    const MAX_FRAME: usize = 16384;
    const BIG_WINDOW: u32 = 1 << 30;

    /// A request: its header list in order, pseudo-headers first, as raw bytes.
    pub type Request = Vec<(Vec<u8>, Vec<u8>)>;

    /// `GET path`; `authority` None leaves `:authority` out.
    pub fn get(authority: Option<&[u8]>, path: &[u8], extra: &[(&str, &[u8])]) -> Request {
        let mut h: Request = vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":path".to_vec(), path.to_vec()),
        ];
        if let Some(a) = authority {
            h.push((b":authority".to_vec(), a.to_vec()));
        }
        h.extend(
            extra
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec())),
        );
        h
    }

    pub struct Conn {
        s: TcpStream,
        next_stream: u32,
        decoder: Decoder,
    }

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend([ty, flags]);
        f.extend(stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    impl Conn {
        /// Connects and sends the preface, SETTINGS (no push, 1 GiB stream windows) and a
        /// connection WINDOW_UPDATE, so responses never wait for flow control.
        pub fn open(port: u16) -> io::Result<Conn> {
            let s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(super::IO_TIMEOUT))?;
            s.set_nodelay(true)?;
            let mut out = PREFACE.to_vec();
            let mut settings = Vec::new();
            for (id, value) in [(0x2u16, 0u32), (0x4, BIG_WINDOW)] {
                settings.extend(id.to_be_bytes());
                settings.extend(value.to_be_bytes());
            }
            out.extend(frame(SETTINGS, 0, 0, &settings));
            out.extend(frame(
                WINDOW_UPDATE,
                0,
                0,
                &(BIG_WINDOW - 65535).to_be_bytes(),
            ));
            let mut conn = Conn {
                s,
                next_stream: 1,
                decoder: Decoder::new(),
            };
            conn.s.write_all(&out)?;
            Ok(conn)
        }

        /// Opens one stream per request, all at once, then reads until every stream has ended.
        /// Per request: the response, or Err naming the RST_STREAM / GOAWAY / close that ended it.
        pub fn send_all(&mut self, requests: &[Request]) -> Vec<Result<Response, String>> {
            let mut out = Vec::new();
            let mut ids = Vec::new();
            for headers in requests {
                let id = self.next_stream;
                self.next_stream += 2;
                ids.push(id);
                let block = encode(headers);
                let mut chunks = block.chunks(MAX_FRAME).peekable();
                let first = chunks.next().unwrap_or_default();
                let end = if chunks.peek().is_none() {
                    END_HEADERS
                } else {
                    0
                };
                out.extend(frame(HEADERS, END_STREAM | end, id, first));
                while let Some(chunk) = chunks.next() {
                    let end = if chunks.peek().is_none() {
                        END_HEADERS
                    } else {
                        0
                    };
                    out.extend(frame(CONTINUATION, end, id, chunk));
                }
            }
            let mut results: BTreeMap<u32, Result<Response, String>> = BTreeMap::new();
            let mut partial: BTreeMap<u32, Response> = BTreeMap::new();
            let sent = self.s.write_all(&out);
            let failure = match sent {
                Ok(()) => self.read_until_done(&ids, &mut results, &mut partial).err(),
                Err(e) => Some(format!("write: {e}")),
            };
            ids.iter()
                .map(|id| {
                    results.remove(id).unwrap_or_else(|| {
                        Err(failure.clone().unwrap_or_else(|| "no answer".into()))
                    })
                })
                .collect()
        }

        fn read_until_done(
            &mut self,
            ids: &[u32],
            results: &mut BTreeMap<u32, Result<Response, String>>,
            partial: &mut BTreeMap<u32, Response>,
        ) -> Result<(), String> {
            let mut block: Option<(u32, Vec<u8>, bool)> = None; // headers being continued
            while ids.iter().any(|id| !results.contains_key(id)) {
                let (ty, flags, stream, payload) =
                    self.read_frame().map_err(|e| match e.kind() {
                        io::ErrorKind::UnexpectedEof => "connection closed".to_string(),
                        _ => format!("read: {e}"),
                    })?;
                match ty {
                    DATA => {
                        let data = unpad(flags, &payload)?;
                        let r = partial.entry(stream).or_insert_with(empty_response);
                        r.body.extend_from_slice(data);
                        if flags & END_STREAM != 0 {
                            let r = partial.remove(&stream).unwrap_or_else(empty_response);
                            results.insert(stream, Ok(r));
                        }
                    }
                    HEADERS | CONTINUATION => {
                        let (fragment, end_stream) = if ty == HEADERS {
                            let mut data = unpad(flags, &payload)?;
                            if flags & PRIORITY != 0 {
                                data = data.get(5..).ok_or("short PRIORITY")?;
                            }
                            (data.to_vec(), flags & END_STREAM != 0)
                        } else {
                            let (s, mut acc, es) = block.take().ok_or("stray CONTINUATION")?;
                            if s != stream {
                                return Err("CONTINUATION on another stream".into());
                            }
                            acc.extend_from_slice(&payload);
                            (acc, es)
                        };
                        if flags & END_HEADERS == 0 {
                            block = Some((stream, fragment, end_stream));
                            continue;
                        }
                        let fields = self.decoder.decode(&fragment)?;
                        let r = partial.entry(stream).or_insert_with(empty_response);
                        for (k, v) in fields {
                            if k == ":status" {
                                r.status = v.parse().map_err(|_| format!(":status {v:?}"))?;
                            } else {
                                r.headers.push((k, v));
                            }
                        }
                        if end_stream {
                            let r = partial.remove(&stream).unwrap_or_else(empty_response);
                            results.insert(stream, Ok(r));
                        }
                    }
                    RST_STREAM => {
                        let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                        partial.remove(&stream);
                        results.insert(stream, Err(format!("RST_STREAM error code {code}")));
                    }
                    SETTINGS if flags & ACK == 0 => {
                        self.s
                            .write_all(&frame(SETTINGS, ACK, 0, &[]))
                            .map_err(|e| e.to_string())?;
                    }
                    PING if flags & ACK == 0 => {
                        self.s
                            .write_all(&frame(PING, ACK, 0, &payload))
                            .map_err(|e| e.to_string())?;
                    }
                    GOAWAY => {
                        let last =
                            u32::from_be_bytes(payload[..4].try_into().unwrap()) & !(1 << 31);
                        let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                        for id in ids.iter().filter(|id| **id > last) {
                            results
                                .entry(*id)
                                .or_insert_with(|| Err(format!("GOAWAY error code {code}")));
                        }
                        if code != 0 {
                            return Err(format!("GOAWAY error code {code}"));
                        }
                    }
                    _ => {} // WINDOW_UPDATE, PRIORITY, acks, unknown types
                }
            }
            Ok(())
        }

        fn read_frame(&mut self) -> io::Result<(u8, u8, u32, Vec<u8>)> {
            let mut head = [0u8; 9];
            self.s.read_exact(&mut head)?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & !(1 << 31);
            let mut payload = vec![0u8; len];
            self.s.read_exact(&mut payload)?;
            Ok((head[3], head[4], stream, payload))
        }
    }

    fn empty_response() -> Response {
        Response {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8], String> {
        if flags & PADDED == 0 {
            return Ok(payload);
        }
        let pad = *payload.first().ok_or("empty padded frame")? as usize;
        payload
            .get(1..payload.len().saturating_sub(pad))
            .ok_or_else(|| "bad padding".into())
    }

    // -- HPACK (RFC 7541) ------------------------------------------------------------------

    fn encode_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut v: usize) {
        let max = (1usize << prefix_bits) - 1;
        if v < max {
            out.push(first | v as u8);
            return;
        }
        out.push(first | max as u8);
        v -= max;
        while v >= 128 {
            out.push((v % 128) as u8 | 0x80);
            v /= 128;
        }
        out.push(v as u8);
    }

    /// Every field as "literal header field without indexing — new name", plain strings.
    pub fn encode(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in headers {
            out.push(0x00);
            for s in [k, v] {
                encode_int(&mut out, 0, 7, s.len());
                out.extend_from_slice(s);
            }
        }
        out
    }

    const STATIC: [(&str, &str); 61] = [
        (":authority", ""),
        (":method", "GET"),
        (":method", "POST"),
        (":path", "/"),
        (":path", "/index.html"),
        (":scheme", "http"),
        (":scheme", "https"),
        (":status", "200"),
        (":status", "204"),
        (":status", "206"),
        (":status", "304"),
        (":status", "400"),
        (":status", "404"),
        (":status", "500"),
        ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"),
        ("accept-language", ""),
        ("accept-ranges", ""),
        ("accept", ""),
        ("access-control-allow-origin", ""),
        ("age", ""),
        ("allow", ""),
        ("authorization", ""),
        ("cache-control", ""),
        ("content-disposition", ""),
        ("content-encoding", ""),
        ("content-language", ""),
        ("content-length", ""),
        ("content-location", ""),
        ("content-range", ""),
        ("content-type", ""),
        ("cookie", ""),
        ("date", ""),
        ("etag", ""),
        ("expect", ""),
        ("expires", ""),
        ("from", ""),
        ("host", ""),
        ("if-match", ""),
        ("if-modified-since", ""),
        ("if-none-match", ""),
        ("if-range", ""),
        ("if-unmodified-since", ""),
        ("last-modified", ""),
        ("link", ""),
        ("location", ""),
        ("max-forwards", ""),
        ("proxy-authenticate", ""),
        ("proxy-authorization", ""),
        ("range", ""),
        ("referer", ""),
        ("refresh", ""),
        ("retry-after", ""),
        ("server", ""),
        ("set-cookie", ""),
        ("strict-transport-security", ""),
        ("transfer-encoding", ""),
        ("user-agent", ""),
        ("vary", ""),
        ("via", ""),
        ("www-authenticate", ""),
    ];

    /// HPACK Huffman code lengths, symbols 0..=256 (RFC 7541 Appendix B). The code is
    /// canonical (codes ascend with (length, symbol)), so the lengths define it.
    pub const HUFFMAN_LENGTHS: [u8; 257] = [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
        28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
        5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
        13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
        7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
        6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
        24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
        21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
        19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
        26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
        30,
    ];

    /// Canonical decoding tables: per length, the first code, how many codes, and where its
    /// symbols start in `symbols` (sorted by (length, symbol)).
    struct Huffman {
        first: [u32; 31],
        count: [u32; 31],
        offset: [usize; 31],
        symbols: Vec<u16>,
    }

    fn huffman() -> &'static Huffman {
        static TABLE: std::sync::OnceLock<Huffman> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            let mut symbols: Vec<u16> = (0..257).collect();
            symbols.sort_by_key(|s| (HUFFMAN_LENGTHS[*s as usize], *s));
            let mut h = Huffman {
                first: [0; 31],
                count: [0; 31],
                offset: [0; 31],
                symbols,
            };
            for len in HUFFMAN_LENGTHS {
                h.count[len as usize] += 1;
            }
            let (mut code, mut offset) = (0u32, 0usize);
            for len in 1..31 {
                code <<= 1;
                h.first[len] = code;
                h.offset[len] = offset;
                code += h.count[len];
                offset += h.count[len] as usize;
            }
            h
        })
    }

    pub fn huffman_decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
        let h = huffman();
        let mut out = Vec::new();
        let (mut code, mut len) = (0u32, 0usize);
        for byte in bytes {
            for bit in (0..8).rev() {
                code = (code << 1) | u32::from((byte >> bit) & 1);
                len += 1;
                if len > 30 {
                    return Err("Huffman code longer than 30 bits".into());
                }
                let index = code.wrapping_sub(h.first[len]);
                if code >= h.first[len] && index < h.count[len] {
                    match h.symbols[h.offset[len] + index as usize] {
                        256 => return Err("EOS in a Huffman string".into()),
                        sym => out.push(sym as u8),
                    }
                    (code, len) = (0, 0);
                }
            }
        }
        // Padding: fewer than 8 bits, all ones (a prefix of EOS).
        if len > 7 || code != (1 << len) - 1 {
            return Err("bad Huffman padding".into());
        }
        Ok(out)
    }

    pub struct Decoder {
        dynamic: VecDeque<(String, String)>,
        size: usize,
        max_size: usize,
    }

    impl Decoder {
        pub fn new() -> Decoder {
            Decoder {
                dynamic: VecDeque::new(),
                size: 0,
                max_size: 4096,
            }
        }

        fn entry(&self, index: usize) -> Result<(String, String), String> {
            match index {
                0 => Err("HPACK index 0".into()),
                1..=61 => {
                    let (k, v) = STATIC[index - 1];
                    Ok((k.into(), v.into()))
                }
                _ => self
                    .dynamic
                    .get(index - 62)
                    .cloned()
                    .ok_or_else(|| format!("HPACK index {index} out of range")),
            }
        }

        fn evict_to(&mut self, max: usize) {
            while self.size > max {
                let (k, v) = self.dynamic.pop_back().expect("size > 0 means entries");
                self.size -= k.len() + v.len() + 32;
            }
        }

        fn insert(&mut self, k: String, v: String) {
            let size = k.len() + v.len() + 32;
            self.evict_to(self.max_size.saturating_sub(size));
            if size <= self.max_size {
                self.size += size;
                self.dynamic.push_front((k, v));
            }
        }

        /// One header block, in order. Strings are decoded lossily (responses are ASCII).
        pub fn decode(&mut self, mut b: &[u8]) -> Result<Vec<(String, String)>, String> {
            let mut fields = Vec::new();
            while let Some(&first) = b.first() {
                if first & 0x80 != 0 {
                    let index = int(&mut b, 7)?;
                    fields.push(self.entry(index)?);
                } else if first & 0xe0 == 0x20 {
                    let size = int(&mut b, 5)?;
                    if size > 4096 {
                        return Err(format!("table size update to {size} above our 4096"));
                    }
                    self.max_size = size;
                    self.evict_to(size);
                } else {
                    let (prefix, index_it) = if first & 0xc0 == 0x40 {
                        (6, true)
                    } else {
                        (4, false) // without indexing (0000) or never indexed (0001)
                    };
                    let index = int(&mut b, prefix)?;
                    let name = match index {
                        0 => string(&mut b)?,
                        i => self.entry(i)?.0,
                    };
                    let value = string(&mut b)?;
                    if index_it {
                        self.insert(name.clone(), value.clone());
                    }
                    fields.push((name, value));
                }
            }
            Ok(fields)
        }
    }

    fn int(b: &mut &[u8], prefix_bits: u32) -> Result<usize, String> {
        let max = (1usize << prefix_bits) - 1;
        let (&first, rest) = b.split_first().ok_or("truncated integer")?;
        *b = rest;
        let mut v = usize::from(first) & max;
        if v < max {
            return Ok(v);
        }
        let mut shift = 0;
        loop {
            let (&byte, rest) = b.split_first().ok_or("truncated integer")?;
            *b = rest;
            v += usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
            if shift > 28 {
                return Err("integer too large".into());
            }
        }
    }

    fn string(b: &mut &[u8]) -> Result<String, String> {
        let huffman = b.first().ok_or("truncated string")? & 0x80 != 0;
        let len = int(b, 7)?;
        if b.len() < len {
            return Err("truncated string".into());
        }
        let (raw, rest) = b.split_at(len);
        *b = rest;
        let bytes = if huffman {
            huffman_decode(raw)?
        } else {
            raw.to_vec()
        };
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Hex (whitespace ignored) to bytes, for the RFC examples.
fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// The h2 client's decoder against RFC 7541's own examples (C.4.1 Huffman request, C.6.1 and
/// C.6.2 Huffman responses sharing a dynamic table), so the HTTP/2 tests rest on a checked
/// decoder. No Envoy needed.
#[test]
fn hpack_decoder_passes_rfc_7541_examples() {
    // The code lengths form a complete prefix code (Kraft sum exactly 1).
    let kraft: u64 = h2::HUFFMAN_LENGTHS.iter().map(|l| 1u64 << (30 - l)).sum();
    assert_eq!(kraft, 1 << 30, "Huffman code lengths");
    let mut d = h2::Decoder::new();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        d.decode(&unhex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))
            .unwrap(),
        pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com")
        ])
    );
    let mut d = h2::Decoder::new();
    let c61 = "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 \
               82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3";
    let response = [
        (":status", "302"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    assert_eq!(d.decode(&unhex(c61)).unwrap(), pairs(&response));
    // C.6.2: ":status 307" is a new literal, the rest come from the dynamic table.
    let mut second = response;
    second[0] = (":status", "307");
    assert_eq!(
        d.decode(&unhex("4883 640e ffc1 c0bf")).unwrap(),
        pairs(&second)
    );
    // Our encoder's literals decode to what was encoded, long values (multi-byte lengths) too.
    let long = vec![b'x'; 70_000];
    let fields = vec![
        (b":path".to_vec(), b"/a".to_vec()),
        (b"x-long".to_vec(), long),
    ];
    let decoded = h2::Decoder::new().decode(&h2::encode(&fields)).unwrap();
    assert_eq!(decoded[1].1.len(), 70_000);
    assert_eq!(decoded[0], (":path".into(), "/a".into()));
    // Padding that is not all ones, and an EOS symbol, are refused.
    assert!(h2::huffman_decode(&[0x00]).is_err(), "padding of zeros");
    assert!(
        h2::huffman_decode(&[0xff, 0xff, 0xff, 0xff]).is_err(),
        "EOS"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Hostile input

/// Huge headers and paths, non-UTF-8 bytes, missing authorities, 10,000 distinct paths in
/// parallel, pipelining, and clients vanishing mid-request: Envoy stays up, the VM never
/// fails, and every count stays exact.
#[test]
fn hostile_input_keeps_envoy_up_and_counts_exact() {
    let started = Instant::now();
    // A second filter instance counting per `x-tenant`: the one way a non-UTF-8 value reaches a
    // header the filter reads (Envoy refuses such bytes in Host and, over HTTP/1.1, in the path).
    let tenant_config =
        r#"{"vendor": "okta", "plan": "integrator-free", "scope": {"header": "x-tenant"}}"#;
    let tenant = wasm_listener(
        "tenant",
        "idp_ratelimit_tenant",
        "idp_ratelimit",
        tenant_config,
    );
    let e = start_with_listeners(OKTA_FREE, vec![tenant]);
    let (port, tenant_port) = (e.port(), listener_port(&e, "tenant"));
    let mut c = e.client();
    assert_counted(
        &c.request("GET", "/api/v1/meta/types", &[]),
        100,
        99,
        "warm-up (api-v1)",
    );
    let vms = wasm_stats(&e);
    assert!(
        vms.iter()
            .any(|(k, v)| k.starts_with("wasm.envoy.wasm.runtime.")
                && k.ends_with(".active")
                && *v > 0),
        "no active wasm VM in {vms:?}"
    );

    // (a) Huge headers. users (limit 100), localhost.
    let big = "h".repeat(60 * 1024);
    let r = c.request("GET", "/api/v1/users", &[("x-big", &big)]);
    assert_counted(&r, 100, 99, "a 60 KiB header");
    let third = "h".repeat(30 * 1024);
    let three = [("x-a", third.as_str()), ("x-b", &third), ("x-c", &third)];
    assert_counted(
        &c.request("GET", "/api/v1/users", &three),
        100,
        98,
        "three 30 KiB headers (90 KiB)",
    );
    let over = format!(
        "GET /api/v1/users HTTP/1.1\r\nHost: localhost\r\nx-big: {}\r\nConnection: close\r\n\r\n",
        "h".repeat(100 * 1024)
    );
    assert_envoy_reply(&raw(port, over.as_bytes()), 431, "a 100 KiB header");
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many =
        format!("GET /api/v1/users HTTP/1.1\r\nHost: localhost\r\n{many}Connection: close\r\n\r\n");
    assert_envoy_reply(
        &raw(port, many.as_bytes()),
        431,
        "150 headers (Envoy's max 100)",
    );
    assert_counted(
        &c.request("GET", "/api/v1/users", &[]),
        100,
        97,
        "after Envoy's 431s (never counted)",
    );

    // (b) 64 KiB paths, and paths whose normalisation does 30,000 steps.
    let id = "g".repeat(64 * 1024);
    let group = format!("/api/v1/groups/{id}");
    assert_counted(
        &c.request("GET", &group, &[]),
        100,
        99,
        "a 64 KiB group id (group-by-id)",
    );
    let dots = format!("/api/v1/{}logs", "./".repeat(30_000));
    assert_counted(&c.request("GET", &dots, &[]), 20, 19, "30,000 `./` (logs)");
    let deep = format!("/api/v1/apps/{}", "a/".repeat(30_000));
    assert_counted(
        &c.request("GET", &deep, &[]),
        20,
        19,
        "30,000 segments under /api/v1/apps (apps)",
    );
    let up = format!("/{}api/v1/events", "../".repeat(20_000));
    assert_counted(
        &c.request("GET", &up, &[]),
        20,
        19,
        "20,000 `../` above the root (events)",
    );
    // Over HTTP/2, a header block split over CONTINUATION frames: a 60 KiB path is counted.
    // The 64 KiB one is, on Envoy 1.40, a connection error before any filter (GOAWAY
    // COMPRESSION_ERROR: its HPACK decoder takes at most 64 KiB per field), so not counted;
    // Envoy 1.36 answers it, counted like any other.
    let mut h = h2::Conn::open(port).unwrap();
    let group60 = format!("/api/v1/groups/{}", "g".repeat(60 * 1024));
    let r = h.send_all(&[h2::get(Some(b"localhost"), group60.as_bytes(), &[])]);
    let r = r[0].as_ref().expect("h2 60 KiB path");
    assert_counted(r, 100, 98, "h2: a 60 KiB group id (group-by-id, same org)");
    let mut h_big = h2::Conn::open(port).unwrap();
    let r = h_big.send_all(&[h2::get(Some(b"localhost"), group.as_bytes(), &[])]);
    let groups_left = match &r[0] {
        Err(e) if e == "GOAWAY error code 9" => 97,
        Ok(r) => {
            assert_counted(r, 100, 97, "h2: the 64 KiB path, answered");
            96
        }
        Err(e) => panic!("h2: the 64 KiB path: {e}"),
    };
    let r = h.send_all(&[h2::get(Some(b"localhost"), group60.as_bytes(), &[])]);
    let r = r[0].as_ref().expect("h2 60 KiB path again");
    assert_counted(r, 100, groups_left, "h2: the 60 KiB group id again");

    // (c) Non-UTF-8 bytes. HTTP/1.1: Envoy answers 400 itself to such bytes in the path or in
    // Host (and to a NUL anywhere), before the filter: never counted.
    let refused: [(&str, &[u8]); 4] = [
        (
            "path",
            b"GET /api/v1/logs/\xff\xfe HTTP/1.1\r\nHost: localhost\r\n",
        ),
        (
            "path, overlong UTF-8",
            b"GET /api/v1/logs/\xc0\xaf HTTP/1.1\r\nHost: localhost\r\n",
        ),
        (
            "Host",
            b"GET /api/v1/logs HTTP/1.1\r\nHost: ex\xffample\r\n",
        ),
        (
            "NUL in a header",
            b"GET /api/v1/logs HTTP/1.1\r\nHost: localhost\r\nx-a: a\x00b\r\n",
        ),
    ];
    for (what, head) in refused {
        let req = [head, b"Connection: close\r\n\r\n"].concat();
        assert_envoy_reply(&raw(port, &req), 400, &format!("non-UTF-8 {what}"));
    }
    // In any other header they pass (obs-text), and the request is counted as usual.
    let junk = b"GET /api/v1/logs HTTP/1.1\r\nHost: localhost\r\nx-junk: \xff\xfe\x80\xc3\x28\r\n\
                 Connection: close\r\n\r\n";
    assert_counted(&raw(port, junk), 20, 18, "a non-UTF-8 header (logs)");
    // HTTP/2 passes non-UTF-8 path bytes to the filter, which reads them lossily.
    let r = h.send_all(&[h2::get(
        Some(b"localhost"),
        b"/api/v1/logs/\xff\xfe\x80",
        &[],
    )]);
    let r = r[0].as_ref().expect("h2 non-UTF-8 path");
    assert_counted(r, 20, 17, "h2: a non-UTF-8 path (logs)");
    // A non-UTF-8 value of the header the tenant instance keys on: one bucket per value.
    let by_tenant = |value: &[u8]| {
        let head = b"GET /api/v1/sessions/me HTTP/1.1\r\nHost: localhost\r\nx-tenant: ";
        raw(
            tenant_port,
            &[head, value, b"\r\nConnection: close\r\n\r\n"].concat(),
        )
    };
    assert_counted(
        &by_tenant(b"acme\xff\xfe"),
        100,
        99,
        "tenant acme\\xff\\xfe",
    );
    assert_counted(
        &by_tenant(b"acme\xff\xfe"),
        100,
        98,
        "tenant acme\\xff\\xfe again",
    );
    assert_counted(&by_tenant(b"acme"), 100, 99, "tenant acme: its own bucket");
    assert_eq!(counter(&e, "okta.end-user.sessions.admitted"), 3);

    // (d) No authority. HTTP/1.1 without Host: 400; HTTP/1.0: 426 (Envoy's accept_http_10 is
    // off). Never counted.
    let no_host = b"GET /api/v1/users HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_envoy_reply(&raw(port, no_host), 400, "HTTP/1.1 without Host");
    let http10 = b"GET /api/v1/users HTTP/1.0\r\n\r\n";
    assert_envoy_reply(&raw(port, http10), 426, "HTTP/1.0 without Host");
    // HTTP/2 without :authority (or host): Envoy 1.40 closes the whole connection, unanswered.
    let mut h_bare = h2::Conn::open(port).unwrap();
    let r = h_bare.send_all(&[h2::get(None, b"/api/v1/users", &[])]);
    assert!(
        matches!(&r[0], Err(e) if e == "connection closed" || e.starts_with("read: ")),
        "h2 without :authority: {:?}",
        r[0]
    );
    // An empty Host is accepted by Envoy: the empty authority is one more org, counted.
    let empty = b"GET /api/v1/users HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n";
    assert_counted(&raw(port, empty), 100, 99, "empty Host");
    assert_counted(&raw(port, empty), 100, 98, "empty Host again: the same key");
    // Absolute form: the authority is the request line's (lower-cased, port stripped).
    let absolute = b"GET http://Other.Example:8080/api/v1/users HTTP/1.1\r\nHost: localhost\r\n\
                     Connection: close\r\n\r\n";
    assert_counted(&raw(port, absolute), 100, 99, "absolute-form other.example");

    // (e) 10,000 distinct paths in one bucket (devices, limit 100), four keep-alive
    // connections in parallel: exactly 100 admitted, each Remaining value exactly once.
    const PATHS: usize = 10_000;
    const THREADS: usize = 4;
    let flood: Vec<(Vec<u64>, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut c = Client::connect(port);
                    let (mut admitted, mut rejected) = (Vec::new(), 0);
                    for i in (t..PATHS).step_by(THREADS) {
                        let what = format!("/api/v1/devices/{i}");
                        let r = c.request("GET", &what, &[]);
                        match r.status {
                            200 => {
                                assert!(r.reached_upstream(), "{what}: {r:?}");
                                assert_eq!(r.header_u64("x-rate-limit-limit"), Some(100), "{what}");
                                admitted.push(r.header_u64("x-rate-limit-remaining").unwrap());
                            }
                            _ => {
                                assert_okta_429(&r, 100, &what);
                                rejected += 1;
                            }
                        }
                    }
                    (admitted, rejected)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut remaining: Vec<u64> = flood.iter().flat_map(|(a, _)| a.clone()).collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..100).collect::<Vec<u64>>(),
        "Remaining of the admitted requests"
    );
    assert_eq!(flood.iter().map(|(_, r)| r).sum::<usize>(), PATHS - 100);
    assert_eq!(counter(&e, "okta.management.devices.admitted"), 100);
    assert_eq!(counter(&e, "okta.management.devices.rejected"), 9_900);
    // 120 pipelined requests in one write (certificate-authorities, limit 100). Envoy 1.40 does
    // not serve a pipeline: it answers the first one or two, then closes the connection (seen:
    // 2 answers, one more request started and destroyed). Whatever it answered is counted
    // down in order, and the bucket's count agrees with the next Remaining.
    let mut s = connect(port);
    let one = "GET /api/v1/certificateAuthorities HTTP/1.1\r\nHost: localhost\r\n\r\n";
    s.write_all(one.repeat(120).as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes); // until Envoy closes (or resets)
    let mut rest = bytes.as_slice();
    let mut answered = 0;
    while !rest.is_empty() {
        let (r, _) = read_response(&mut rest, false).expect("pipelined response");
        assert_counted(
            &r,
            100,
            99 - answered,
            &format!("pipelined #{}", answered + 1),
        );
        answered += 1;
    }
    let pipelined = counter(&e, "okta.management.certificate-authorities.admitted");
    assert!(
        (answered..=120).contains(&pipelined) && pipelined < 100,
        "{pipelined} counted, {answered} answered"
    );
    assert_counted(
        &c.request("GET", "/api/v1/certificateAuthorities", &[]),
        100,
        99 - pipelined,
        "after the pipeline",
    );
    eprintln!("pipeline of 120: {answered} answered, {pipelined} counted");

    // (f) Clients that vanish mid-request. groups (limit 100).
    // Half a request head, then FIN or RST: never counted.
    for i in 0..50 {
        let mut s = connect(port);
        s.write_all(b"GET /api/v1/groups HTTP/1.1\r\nHost: loc")
            .unwrap();
        match i % 2 {
            0 => drop(s),
            _ => reset_connection(s),
        }
    }
    // A whole head with Content-Length 1000 and 5 bytes of body: the filter decides on the head
    // and the route answers at once; the client leaves (FIN or RST) without sending the rest.
    // Each is counted exactly once.
    let partial =
        b"POST /api/v1/groups HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nshort";
    for i in 0..40u64 {
        let mut s = connect(port);
        s.write_all(partial).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let (r, _) = read_response(&mut reader, false).expect("answer to a partial body");
        assert_counted(&r, 100, 99 - i, &format!("partial body #{}", i + 1));
        match i % 2 {
            0 => drop(s),
            _ => reset_connection(s),
        }
    }
    // The same, reset at once without reading: counted if Envoy read the head first. Whatever
    // happened, the count and the next Remaining must agree.
    for _ in 0..40 {
        let mut s = connect(port);
        s.write_all(partial).unwrap();
        reset_connection(s);
    }
    drop((c, h, h_big, h_bare));
    assert!(
        wait_for_stat(
            &e,
            "http.ingress.downstream_cx_active",
            0,
            Duration::from_secs(10)
        ),
        "connections still open: {:?}",
        e.stat("http.ingress.downstream_cx_active")
    );
    let admitted = counter(&e, "okta.management.groups.admitted");
    assert!((40..=80).contains(&admitted), "groups admitted {admitted}");
    eprintln!(
        "{} of the 40 requests reset at once were counted",
        admitted - 40
    );
    let mut c = e.client();
    assert_counted(
        &c.request("GET", "/api/v1/groups", &[]),
        100,
        100 - admitted - 1,
        "after the resets",
    );

    // After all of it: still up, same VMs, nothing failed, and the counts are exact.
    let r = c.request("GET", "/api/v1/users", &[]);
    assert_counted(&r, 100, 96, "final users request");
    assert_okta_429(
        &c.request("GET", "/api/v1/devices/final", &[]),
        100,
        "final devices request",
    );
    assert_eq!(counter(&e, "okta.management.devices.admitted"), 100);
    assert_eq!(counter(&e, "okta.management.devices.rejected"), 9_901);
    assert_eq!(counter(&e, "okta.management.users.admitted"), 7);
    assert_eq!(counter(&e, "store_errors"), 0);
    assert_eq!(
        stat(&e, "http.ingress.downstream_rq_5xx"),
        0,
        "a 5xx (a dead VM answers 503)"
    );
    assert_vm_healthy(&e, &vms, "after the hostile input");
    eprintln!(
        "hostile input: {:.1?}, wasm stats {vms:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. HTTP/2 and HTTP/1.1 share the buckets

/// h2c (prior knowledge, through the AUTO codec) and HTTP/1.1 clients of one org count in the
/// same buckets: interleaved one by one, and concurrently with 30 multiplexed streams.
#[test]
fn http2_and_http1_clients_share_the_same_buckets() {
    let e = Envoy::start(OKTA_FREE);
    let port = e.port();
    let mut h = h2::Conn::open(port).unwrap();
    let mut c = e.client();
    // One by one, alternating, on logs (limit 20). The org is spelled differently each time:
    // it is lower-cased, its port and trailing dot dropped, on either protocol.
    let spellings = [
        "localhost",
        "LOCALHOST:10000",
        "localhost.",
        "Localhost:443",
    ];
    let mut resets = BTreeSet::new();
    for i in 0..26u64 {
        let authority = spellings[i as usize % 4];
        let path = format!("/api/v1/logs/{i}");
        let (what, r) = if i % 2 == 0 {
            let r = h.send_all(&[h2::get(Some(authority.as_bytes()), path.as_bytes(), &[])]);
            let what = format!("h2 #{} ({authority})", i + 1);
            (what, r.into_iter().next().unwrap().expect("h2 response"))
        } else {
            let what = format!("h1 #{} ({authority})", i + 1);
            (what, c.request("GET", &path, &[("host", authority)]))
        };
        match i {
            0..=19 => assert_counted(&r, 20, 19 - i, &what),
            _ => assert_okta_429(&r, 20, &what),
        }
        resets.insert(r.header("x-rate-limit-reset").unwrap().to_string());
    }
    assert_eq!(resets.len(), 1, "one window, one reset time: {resets:?}");

    // apps (limit 20): five one by one (h1, h2, h1, h2, h1), then, all starting together, 30
    // streams on one h2 connection (3 batches of 10 multiplexed streams) and two HTTP/1.1
    // keep-alive connections sending 15 each.
    for i in 0..5u64 {
        let path = format!("/api/v1/apps/seq{i}/users");
        let r = match i % 2 {
            0 => c.request("GET", &path, &[]),
            _ => h
                .send_all(&[h2::get(Some(b"localhost"), path.as_bytes(), &[])])
                .remove(0)
                .expect("h2 response"),
        };
        assert_counted(&r, 20, 19 - i, &format!("apps #{}", i + 1));
    }
    let start = std::sync::Barrier::new(3);
    let answers: Vec<(String, Response)> = std::thread::scope(|s| {
        let h2_batches = s.spawn(|| {
            let mut h = h2::Conn::open(port).unwrap();
            start.wait();
            let mut all = Vec::new();
            for b in 0..3 {
                let batch: Vec<h2::Request> = (0..10)
                    .map(|i| format!("/api/v1/apps/{b}-{i}/users"))
                    .map(|path| h2::get(Some(b"localhost"), path.as_bytes(), &[]))
                    .collect();
                for (i, r) in h.send_all(&batch).into_iter().enumerate() {
                    all.push((format!("h2 batch {b} stream {i}"), r.expect("h2 response")));
                }
            }
            all
        });
        let h1: Vec<_> = (0..2)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    let mut c = Client::connect(port);
                    start.wait();
                    (0..15)
                        .map(|i| {
                            let r =
                                c.request("GET", &format!("/api/v1/apps/h1-{t}-{i}/users"), &[]);
                            (format!("h1 {t}/{i}"), r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = h2_batches.join().unwrap();
        for t in h1 {
            all.extend(t.join().unwrap());
        }
        all
    });
    assert_eq!(answers.len(), 60);
    let mut remaining = Vec::new();
    for (what, r) in &answers {
        match r.status {
            200 => {
                assert!(r.reached_upstream(), "{what}: {r:?}");
                assert_eq!(r.header_u64("x-rate-limit-limit"), Some(20), "{what}");
                remaining.push(r.header_u64("x-rate-limit-remaining").unwrap());
            }
            _ => assert_okta_429(r, 20, what),
        }
    }
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..15).collect::<Vec<u64>>(),
        "Remaining of the last 15 admitted, over both protocols"
    );
    let h2_admitted = answers
        .iter()
        .filter(|(what, r)| what.starts_with("h2") && r.status == 200)
        .count();
    eprintln!("concurrent: {h2_admitted} of the 15 admitted were h2 streams");

    assert_eq!(counter(&e, "okta.management.logs.admitted"), 20);
    assert_eq!(counter(&e, "okta.management.logs.rejected"), 6);
    assert_eq!(counter(&e, "okta.management.apps.admitted"), 20);
    assert_eq!(counter(&e, "okta.management.apps.rejected"), 45);
    // It really was HTTP/2: 13 + 2 + 30 streams on 2 connections; 13 + 3 + 30 HTTP/1.1 requests.
    assert_eq!(stat(&e, "http.ingress.downstream_rq_http2_total"), 45);
    assert_eq!(stat(&e, "http.ingress.downstream_cx_http2_total"), 2);
    assert_eq!(stat(&e, "http.ingress.downstream_rq_http1_total"), 46);
}

// ---------------------------------------------------------------------------------------------
// 3. Several filter instances in one Envoy

/// Sends `n + 1` requests to `path` on `port` (org localhost): `n` counted down from `limit`,
/// then Okta's 429 (the custom instances below speak the Okta dialect too).
#[track_caller]
fn exhaust(port: u16, path: &str, limit: u64, what: &str) {
    let mut c = Client::connect(port);
    for i in 0..limit {
        let r = c.request("GET", path, &[]);
        assert_counted(&r, limit, limit - 1 - i, &format!("{what} #{}", i + 1));
    }
    assert_okta_429(
        &c.request("GET", path, &[]),
        limit,
        &format!("{what}: over"),
    );
}

/// Live wasm VMs (`wasm.envoy.wasm.runtime.<runtime>.active`; 1.40 also has
/// `wasm.wasm_vm_count`, 1.36 does not).
fn active_vms(e: &Envoy) -> u64 {
    let stats = wasm_stats(e);
    let active = stats
        .iter()
        .filter(|(k, _)| k.starts_with("wasm.envoy.wasm.runtime.") && k.ends_with(".active"));
    active.map(|(_, v)| v).sum()
}

const LOGS5: &str = r#"{"vendor": "custom", "dialect": "okta", "routes": [
    {"route": "/api/v1/logs/*", "limit": 5, "window": "minute", "algorithm": "fixed_window"}]}"#;

/// (a) Different plugin names, different policies, the SAME vm_id (so one VM per worker runs
/// both, over one shared-data map): each instance keeps to its own limits.
#[test]
fn instances_with_different_names_on_one_vm_count_apart() {
    let custom = wasm_listener("custom", "idp_ratelimit_custom", "idp_ratelimit", LOGS5);
    let e = start_with_listeners(OKTA_FREE, vec![custom]);
    let (main, custom) = (e.port(), listener_port(&e, "custom"));
    // Same org (localhost), same path, same shared data: only the plugin name tells them apart.
    exhaust(main, "/api/v1/logs", 20, "okta instance");
    exhaust(
        custom,
        "/api/v1/logs",
        5,
        "custom instance, after okta's 20",
    );
    assert_okta_429(&get(main, "/api/v1/logs"), 20, "okta instance again");
    // And the other way round, on a bucket only the okta instance has.
    assert_okta_429(&get(custom, "/api/v1/logs/x"), 5, "custom instance again");
    assert_counted(&get(main, "/api/v1/users"), 100, 99, "okta users");
    assert_eq!(counter(&e, "okta.management.logs.admitted"), 20);
    assert_eq!(counter(&e, "okta.management.logs.rejected"), 2);
    assert_eq!(counter(&e, "routes.0.admitted"), 5);
    assert_eq!(counter(&e, "routes.0.rejected"), 2);
    // One VM per vm_id and thread: base + main thread + 2 workers, both plugins in each.
    assert_eq!(active_vms(&e), 4, "{:?}", wasm_stats(&e));
    for prefix in ["idprl/idp_ratelimit/", "idprl/idp_ratelimit_custom/"] {
        assert!(
            e.logs()
                .contains(&format!("shared-data keys under {prefix}")),
            "{prefix}"
        );
    }
}

/// (b) The same name and policy on two vm_ids: separate VMs, separate shared data.
#[test]
fn instances_on_different_vm_ids_count_apart() {
    // Its own stat_prefix too, so its stats do not add into the first one's.
    let other = wasm_listener(
        "other",
        "idp_ratelimit",
        "idp_ratelimit_other_vm",
        r#"{"vendor": "okta", "plan": "integrator-free", "stat_prefix": "idp_ratelimit_other"}"#,
    );
    let e = start_with_listeners(OKTA_FREE, vec![other]);
    let (main, other) = (e.port(), listener_port(&e, "other"));
    exhaust(main, "/api/v1/logs", 20, "vm idp_ratelimit");
    exhaust(
        other,
        "/api/v1/logs",
        20,
        "vm idp_ratelimit_other_vm, after the first",
    );
    assert_okta_429(&get(main, "/api/v1/logs"), 20, "vm idp_ratelimit again");
    assert_okta_429(
        &get(other, "/api/v1/logs"),
        20,
        "vm idp_ratelimit_other_vm again",
    );
    // Two sets of VMs (4 each, as above).
    assert_eq!(active_vms(&e), 8, "{:?}", wasm_stats(&e));
    // Stats are Envoy-wide names (`wasmcustom.<stat_prefix>.<bucket>.admitted`): with its own
    // stat_prefix each instance reports its own counts.
    assert_eq!(counter(&e, "okta.management.logs.admitted"), 20);
    assert_eq!(counter(&e, "okta.management.logs.rejected"), 2);
    let other_stat = |what: &str| {
        stat(
            &e,
            &format!("wasmcustom.idp_ratelimit_other.okta.management.logs.{what}"),
        )
    };
    assert_eq!(other_stat("admitted"), 20);
    assert_eq!(other_stat("rejected"), 2);
}

/// (c) The same name, vm_id and policy: one set of counters, as the README says (the plugin
/// name namespaces the counters, and shared data is per vm_id).
#[test]
fn instances_with_the_same_name_and_vm_id_share_counters() {
    let twin = wasm_listener("twin", "idp_ratelimit", "idp_ratelimit", OKTA_FREE);
    let e = start_with_listeners(OKTA_FREE, vec![twin]);
    let ports = [e.port(), listener_port(&e, "twin")];
    let mut clients = ports.map(Client::connect);
    for i in 0..20u64 {
        let which = (i % 2) as usize;
        let r = clients[which].request("GET", "/api/v1/logs", &[]);
        assert_counted(&r, 20, 19 - i, &format!("listener {which}, #{}", i + 1));
    }
    for (which, c) in clients.iter_mut().enumerate() {
        let r = c.request("GET", "/api/v1/logs", &[]);
        assert_okta_429(&r, 20, &format!("listener {which}, over"));
    }
    assert_eq!(counter(&e, "okta.management.logs.admitted"), 20);
    assert_eq!(counter(&e, "okta.management.logs.rejected"), 2);
    // Envoy even shares the plugin: an identical config creates no more VMs than one instance.
    assert_eq!(active_vms(&e), 4, "{:?}", wasm_stats(&e));
}

// ---------------------------------------------------------------------------------------------
// 4. VM failure, fail_open / failure_policy

/// The test fixture tests/fixtures/crash_plugin (never shipped): a plugin that traps in
/// on_http_request_headers when the request has `x-crash`, and otherwise marks the response
/// `x-crash-plugin: passed`. Built once per test run into target/crash_plugin (cached by cargo).
fn crash_plugin() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target_dir = root.join("target/crash_plugin");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--release", "--quiet", "--target", "wasm32-wasip1"])
            .arg("--manifest-path")
            .arg(root.join("tests/fixtures/crash_plugin/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .output()
            .map_err(|e| format!("cargo: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "building tests/fixtures/crash_plugin failed:\n{stderr}"
            ));
        }
        Ok(target_dir.join("wasm32-wasip1/release/crash_plugin.wasm"))
    });
    built.clone().unwrap_or_else(|e| panic!("{e}"))
}

/// What became of one request behind the crash plugin.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Through the plugin: forwarded, marked `x-crash-plugin: passed`.
    Filtered,
    /// Forwarded without the plugin (its VM is dead and the policy fails open).
    Bypassed,
    /// Envoy's empty 503 (the VM trapped, or is dead and the policy fails closed).
    Failed,
}

#[track_caller]
fn fate(r: &Response, what: &str) -> Fate {
    let marked = r.header("x-crash-plugin");
    match (r.status, r.reached_upstream(), marked) {
        (200, true, Some("passed")) => Fate::Filtered,
        (200, true, None) => Fate::Bypassed,
        (503, false, None) if r.body.is_empty() => Fate::Failed,
        _ => panic!("{what}: unexpected answer {r:?}"),
    }
}

fn send(port: u16, crash: bool) -> Response {
    let headers: &[(&str, &str)] = if crash { &[("x-crash", "1")] } else { &[] };
    Client::connect(port).request("GET", "/anything", headers)
}

/// One Envoy worker (so "the worker whose VM died" is every request's worker).
fn start_crash_plugin(fail_open: bool, failure_policy: Option<&str>) -> Envoy {
    Envoy::start_with(EnvoyOptions {
        wasm: Some(crash_plugin()),
        concurrency: 1,
        fail_open,
        failure_policy: failure_policy.map(String::from),
        ..Default::default()
    })
}

/// Starts Envoy with the crash plugin under a policy: one request before the trap, the trapping
/// request, then four after it. Returns what is wrong, if anything.
fn trap_problem(
    (fail_open, policy, trapping, later): (bool, Option<&str>, Fate, Fate),
) -> Option<String> {
    let name = match policy {
        Some(p) => format!("failure_policy {p}"),
        None => format!("fail_open {fail_open}"),
    };
    let e = start_crash_plugin(fail_open, policy);
    let port = e.port();
    let before = wasm_stats(&e);
    let seen = (
        fate(&send(port, false), &name),
        fate(&send(port, true), &name),
        (0..4)
            .map(|_| fate(&send(port, false), &name))
            .collect::<Vec<_>>(),
    );
    let want = (Fate::Filtered, trapping, vec![later; 4]);
    if seen != want {
        return Some(format!(
            "{name}: (before, trapping, after) = {seen:?}, expected {want:?}"
        ));
    }
    // The trap is logged (the panic message, then the runtime's trap)...
    let logs = e.logs();
    if !logs.contains("crash_plugin: x-crash requested a trap")
        || !logs.contains("Function: proxy_on_request_headers failed")
    {
        return Some(format!("{name}: trap not logged:\n{logs}"));
    }
    // (and the detector the hostile-input test relies on sees it)...
    if vm_failure_lines(&logs).is_empty() {
        return Some(format!("{name}: vm_failure_lines missed the trap:\n{logs}"));
    }
    // ...but nothing in Envoy's wasm stats shows it: the dead VM still counts as active.
    let after = wasm_stats(&e);
    if after != before {
        return Some(format!(
            "{name}: wasm stats changed: {before:?} -> {after:?}"
        ));
    }
    if !e.is_running() {
        return Some(format!("{name}: envoy exited"));
    }
    None
}

/// A trap kills the worker's VM for good (no reload). Fail closed: the trapping request and
/// every later one get 503. `fail_open: true` (deprecated): the trapping request and every
/// later one skip the filter. `failure_policy: FAIL_OPEN`: the trapping request still gets 503,
/// later ones skip the filter.
#[test]
fn vm_trap_fails_closed_or_open_as_configured() {
    use Fate::{Bypassed, Failed};
    let cases = [
        (false, None, Failed, Failed),
        (false, Some("FAIL_CLOSED"), Failed, Failed),
        (true, None, Bypassed, Bypassed),
        (false, Some("FAIL_OPEN"), Failed, Bypassed),
    ];
    let problems: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = cases
            .chunks(2)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|c| trap_problem(*c))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec!["a worker panicked".into()])
            })
            .collect()
    });
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// `failure_policy: FAIL_RELOAD`: the trapping request gets 503, and so does every request
/// during the reload backoff (1 s by default); the first request after it reloads the VM and is
/// filtered again. Unlike a plain trap, this shows in the stats: one more VM created, one
/// vm_reload_success, one vm_reload_backoff per request refused in the backoff.
#[test]
fn vm_trap_with_fail_reload_restarts_the_vm_after_the_backoff() {
    let e = start_crash_plugin(false, Some("FAIL_RELOAD"));
    let port = e.port();
    assert_eq!(fate(&send(port, false), "before"), Fate::Filtered);
    let before = wasm_stats(&e);
    assert_eq!(fate(&send(port, true), "trapping"), Fate::Failed);
    let trapped = Instant::now();
    let mut refused = 0;
    let recovered = loop {
        let r = send(port, false);
        match fate(&r, "after the trap") {
            Fate::Failed => refused += 1,
            Fate::Filtered => break trapped.elapsed(),
            Fate::Bypassed => panic!("FAIL_RELOAD bypassed the filter: {r:?}"),
        }
        assert!(
            trapped.elapsed() < Duration::from_secs(10),
            "no reload within 10 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        recovered >= Duration::from_millis(800),
        "reloaded after {recovered:?}, before the 1 s backoff"
    );
    assert!(refused >= 1, "no request was refused during the backoff");
    eprintln!("FAIL_RELOAD: filtered again {recovered:?} after the trap, {refused} refused");
    let after = wasm_stats(&e);
    let delta = |k: &str| after[k] - before[k];
    let created = after
        .keys()
        .find(|k| k.starts_with("wasm.envoy.wasm.runtime.") && k.ends_with(".created"))
        .expect("runtime created stat");
    assert_eq!(delta(created), 1, "{before:?} -> {after:?}");
    assert_eq!(delta("wasm.idp_ratelimit.vm_reload_success"), 1);
    assert_eq!(delta("wasm.idp_ratelimit.vm_reload_failure"), 0);
    assert_eq!(delta("wasm.idp_ratelimit.vm_reload_backoff"), refused);
    // And it keeps filtering.
    for _ in 0..3 {
        assert_eq!(fate(&send(port, false), "after the reload"), Fate::Filtered);
    }
}

/// Our filter refusing its configuration stops Envoy at startup, whatever the failure policy:
/// fail_open / FAIL_OPEN / FAIL_RELOAD do not let Envoy run without the filter, and the log
/// names the field.
#[test]
fn a_refused_configuration_stops_envoy_whatever_the_failure_policy() {
    let cases: [(bool, Option<&str>); 5] = [
        (false, None),
        (true, None),
        (false, Some("FAIL_CLOSED")),
        (false, Some("FAIL_OPEN")),
        (false, Some("FAIL_RELOAD")),
    ];
    let refusal = r#"configuration refused: field `plan`: unknown plan "gold""#;
    const FAIL_CLOSED_LINE: &str = "Plugin configured to fail closed failed to load";
    let problems: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = cases
            .chunks(3)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|(fail_open, policy)| {
                            let started = Envoy::try_start(EnvoyOptions {
                                plugin_config: r#"{"vendor": "okta", "plan": "gold"}"#.into(),
                                fail_open: *fail_open,
                                failure_policy: policy.map(String::from),
                                ..Default::default()
                            });
                            let name = format!("fail_open {fail_open}, failure_policy {policy:?}");
                            match started {
                                Ok(_) => Some(format!("{name}: Envoy started")),
                                Err(log) if !log.starts_with("envoy exited during startup") => {
                                    Some(format!("{name}: {log}"))
                                }
                                Err(log) if !log.contains(refusal) => {
                                    Some(format!("{name}: no {refusal:?} in:\n{log}"))
                                }
                                Err(log)
                                    if !log
                                        .contains("Unable to create Wasm plugin idp_ratelimit") =>
                                {
                                    Some(format!("{name}: not refused as a plugin:\n{log}"))
                                }
                                // Envoy 1.40 logs this whenever the deprecated `fail_open`
                                // is false, FAIL_OPEN or not.
                                Err(log) if log.contains(FAIL_CLOSED_LINE) == *fail_open => {
                                    Some(format!("{name}: {FAIL_CLOSED_LINE:?} wrong:\n{log}"))
                                }
                                Err(_) => None,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec!["a worker panicked".into()])
            })
            .collect()
    });
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
