//! A proxy-wasm HTTP filter for bench/run.py. Its plugin configuration is
//! empty (do nothing: every callback is the SDK's default, which continues)
//! or `<call>:<n>`, n host calls of one kind per request, as idp-ratelimit
//! makes them:
//!
//! * `time`: `get_current_time`;
//! * `header`: read the `:authority` request header;
//! * `shared`: read a 160-byte shared-data value and write it back with its
//!   CAS token (one slot-table group update);
//! * `metric`: increment a counter;
//! * `resp_header`: set a response header (on the response headers);
//! * `property`: set a new filter-state property (`set_property`), as the
//!   filter publishes its access-log fields.
//!
//! Or one of two *floor* probes, the least host work any filter with
//! idp-ratelimit's behaviour must do per request, made as idp-ratelimit
//! makes those calls and nothing else (no metrics, no properties, no
//! allocation beyond what the calls hand over):
//!
//! * `floor-counted`, a counted request: on the request headers one clock
//!   read, the request headers in one `proxy_get_header_map_pairs` call, one
//!   shared-data get of a `FLOOR_CELL_BYTES` cell and one CAS write of it
//!   back; on the response headers three rate-limit header writes with
//!   values as long as the filter's;
//! * `floor-unmatched`, a request no route matches: the request headers in
//!   one `proxy_get_header_map_pairs` call (`:method` and `:path` are needed
//!   to know that).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Call {
    #[default]
    Nothing,
    Time,
    Header,
    Shared,
    Metric,
    RespHeader,
    Property,
    FloorCounted,
    FloorUnmatched,
}

#[derive(Clone, Copy, Default)]
struct Probe {
    call: Call,
    n: u32,
    metric: u32,
}

const SHARED_KEY: &str = "probe/group";
const FLOOR_KEY: &str = "probe/floor/g0";
/// The cell a counted Okta request reads and writes (src/table.rs): the
/// 8-byte header and one 48-byte entry for each of its two buckets under the
/// org's key (okta.management.users, okta.concurrency).
const FLOOR_CELL_BYTES: usize = 8 + 2 * 48;
/// The word a count changes: the first entry's first state word (an entry is
/// owner, bucket, stale_after, then its three state words).
const FLOOR_COUNT_AT: usize = 8 + 3 * 8;
/// Okta's three rate-limit headers, values as long as the bench's.
const FLOOR_RESPONSE_HEADERS: [(&str, &str); 3] = [
    ("x-rate-limit-limit", "1000000000"),
    ("x-rate-limit-remaining", "999999999"),
    ("x-rate-limit-reset", "1796173399"),
];
#[rustfmt::skip]
const PROPERTIES: [&str; 32] = [
    "probe.p0", "probe.p1", "probe.p2", "probe.p3", "probe.p4", "probe.p5", "probe.p6",
    "probe.p7", "probe.p8", "probe.p9", "probe.p10", "probe.p11", "probe.p12", "probe.p13",
    "probe.p14", "probe.p15", "probe.p16", "probe.p17", "probe.p18", "probe.p19", "probe.p20",
    "probe.p21", "probe.p22", "probe.p23", "probe.p24", "probe.p25", "probe.p26", "probe.p27",
    "probe.p28", "probe.p29", "probe.p30", "probe.p31",
];
const RESPONSE_HEADERS: [&str; 8] = [
    "x-p0", "x-p1", "x-p2", "x-p3", "x-p4", "x-p5", "x-p6", "x-p7",
];

#[derive(Default)]
struct Root {
    probe: Probe,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim().trim_matches('"');
        if text.is_empty() {
            return true;
        }
        let floor = match text {
            "floor-counted" => Some(Call::FloorCounted),
            "floor-unmatched" => Some(Call::FloorUnmatched),
            _ => None,
        };
        if let Some(call) = floor {
            let cell = [0u8; FLOOR_CELL_BYTES];
            if hostcalls::set_shared_data(FLOOR_KEY, Some(&cell), None).is_err() {
                return false;
            }
            self.probe = Probe {
                call,
                n: 0,
                metric: 0,
            };
            return true;
        }
        let Some((call, n)) = text.split_once(':') else {
            return false;
        };
        let call = match call {
            "time" => Call::Time,
            "header" => Call::Header,
            "shared" => Call::Shared,
            "metric" => Call::Metric,
            "resp_header" => Call::RespHeader,
            "property" => Call::Property,
            _ => return false,
        };
        let Ok(n) = n.parse() else { return false };
        let metric = hostcalls::define_metric(MetricType::Counter, "probe.calls").unwrap_or(0);
        if hostcalls::set_shared_data(SHARED_KEY, Some(&[0u8; 160]), None).is_err() {
            return false;
        }
        self.probe = Probe { call, n, metric };
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http { probe: self.probe }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    probe: Probe,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let p = self.probe;
        match p.call {
            Call::FloorCounted => floor_counted_request(),
            Call::FloorUnmatched => {
                let _ = raw::request_header_pairs();
            }
            _ => {}
        }
        for i in 0..p.n {
            match p.call {
                Call::Time => {
                    let _ = hostcalls::get_current_time();
                }
                Call::Header => {
                    let _ =
                        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":authority");
                }
                Call::Shared => {
                    if let Ok((Some(value), cas)) = hostcalls::get_shared_data(SHARED_KEY) {
                        let _ = hostcalls::set_shared_data(SHARED_KEY, Some(&value), cas);
                    }
                }
                Call::Metric => {
                    let _ = hostcalls::increment_metric(p.metric, 1);
                }
                Call::Property => {
                    // A new filter-state entry each call, as the filter's fields are.
                    let name = PROPERTIES[i as usize % PROPERTIES.len()];
                    let _ = hostcalls::set_property(vec![name], Some(b"okta.management.users"));
                }
                Call::Nothing | Call::RespHeader | Call::FloorCounted | Call::FloorUnmatched => {}
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if self.probe.call == Call::FloorCounted {
            for (name, value) in FLOOR_RESPONSE_HEADERS {
                let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
            }
        }
        if self.probe.call == Call::RespHeader {
            for i in 0..self.probe.n as usize {
                let name = RESPONSE_HEADERS[i % RESPONSE_HEADERS.len()];
                let _ = hostcalls::set_map_value(
                    MapType::HttpResponseHeaders,
                    name,
                    Some("1234567890"),
                );
            }
        }
        Action::Continue
    }
}

/// A counted request's request-side host calls, as idp-ratelimit makes them:
/// the clock, the header map, the cell's get and its CAS write.
fn floor_counted_request() {
    let _ = hostcalls::get_current_time();
    let _ = raw::request_header_pairs();
    if let Ok((Some(mut cell), cas)) = hostcalls::get_shared_data(FLOOR_KEY) {
        if let Some(count) = cell.get_mut(FLOOR_COUNT_AT) {
            *count = count.wrapping_add(1);
        }
        let _ = hostcalls::set_shared_data(FLOOR_KEY, Some(&cell), cas);
    }
}

/// The request headers with one raw `proxy_get_header_map_pairs`: the
/// filter's own function (src/raw_headers.rs), so the probe makes exactly
/// its call.
#[path = "../../src/raw_headers.rs"]
mod raw;
