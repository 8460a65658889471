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
}

#[derive(Clone, Copy, Default)]
struct Probe {
    call: Call,
    n: u32,
    metric: u32,
}

const SHARED_KEY: &str = "probe/group";
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
                Call::Nothing | Call::RespHeader => {}
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
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
