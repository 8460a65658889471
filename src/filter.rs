//! The proxy-wasm glue: Envoy callbacks in, engine decisions out. Kept thin;
//! every host call's result is handled (a panic here would kill the VM and
//! fail every later request on its worker).

use std::borrow::Cow;
use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use prost::Message;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::config::Upstream;
use crate::engine::{Count, Decision, Engine, Hold, Pending, RequestFacts, Teach, Verdict};
use crate::header_map::HeaderMap;
use crate::learned::Learned;
use crate::peak::{self, Marks};
use crate::phase::{self, Phase};
use crate::profile::{self, Callback, HostCall};
use crate::response::Headers;
use crate::rls::breaker::Breaker;
use crate::store::{SharedStore, StoreError};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Envoy shared data (one map per `vm_id`, shared by every worker). Counts
/// the keys it creates (a write with no CAS token only happens to a missing
/// key), so the key cap can be observed from Envoy's stats.
#[derive(Default)]
struct EnvoySharedData {
    created: Cell<u64>,
}

impl SharedStore for EnvoySharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match profile::host(HostCall::SharedGet, || hostcalls::get_shared_data(key)) {
            Ok((Some(bytes), cas)) => Ok(Some((bytes, cas.unwrap_or(0)))),
            Ok((None, _)) => Ok(None),
            Err(s) => Err(host_error(key, s)),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        match profile::host(HostCall::SharedSet, || {
            hostcalls::set_shared_data(key, Some(value), cas)
        }) {
            Ok(()) => {
                if cas.is_none() {
                    self.created.set(self.created.get() + 1);
                }
                Ok(true)
            }
            Err(proxy_wasm::types::Status::CasMismatch) => Ok(false),
            Err(s) => Err(host_error(key, s)),
        }
    }
}

/// A failed shared-data call, by kind.
fn host_error(key: &str, status: proxy_wasm::types::Status) -> StoreError {
    use proxy_wasm::types::Status;
    match status {
        Status::NotFound => StoreError::NotFound(key.to_string()),
        Status::BadArgument => StoreError::BadArgument(key.to_string()),
        other => StoreError::Host {
            key: key.to_string(),
            status: format!("{other:?}"),
        },
    }
}

/// Counter ids, per bucket: admitted, rejected, shadow-rejected; and the
/// how-close gauge of each bucket.
struct Metrics {
    per_bucket: Vec<[Option<u32>; 3]>,
    peak: Vec<Option<u32>>,
    /// `"upstream": "vendor"` only, per bucket: answers learned, answers
    /// unusable (absent or garbled: the filter's own count decided), and a
    /// gauge of the vendor-reported limit where it differs from the table.
    vendor: Vec<[Option<u32>; 3]>,
    store_errors: Option<u32>,
    /// Shared-data keys created, by any worker, ever: stays at the table's
    /// capacity (`max_keys / 4` groups + the overflow cell + a peak record
    /// per bucket).
    keys_created: Option<u32>,
    /// Fleet mode: calls made, calls that failed, requests `on_failure` decided.
    rls_calls: Option<u32>,
    rls_failures: Option<u32>,
    rls_fallbacks: Option<u32>,
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        increment(id, 1);
    }
}

fn increment(id: u32, by: i64) {
    let _ = profile::host(HostCall::Metric, || hostcalls::increment_metric(id, by));
}

fn record(id: u32, value: u64) {
    let _ = profile::host(HostCall::Metric, || hostcalls::record_metric(id, value));
}

impl Metrics {
    fn define(engine: &Engine) -> Metrics {
        let counter = |name: String| hostcalls::define_metric(MetricType::Counter, &name).ok();
        let gauge = |name: String| hostcalls::define_metric(MetricType::Gauge, &name).ok();
        // Defined only in fleet mode, so a local-only filter's stats are unchanged.
        let fleet = |name: &str| {
            engine
                .fleet
                .as_ref()
                .and_then(|_| hostcalls::define_metric(MetricType::Counter, name).ok())
        };
        Metrics {
            peak: engine
                .policy
                .buckets
                .iter()
                .map(|b| gauge(format!("{}.{}.peak_used_percent", engine.stat_prefix, b.id)))
                .collect(),
            per_bucket: engine
                .policy
                .buckets
                .iter()
                .map(|b| {
                    ["admitted", "rejected", "shadow_rejected"]
                        .map(|what| counter(format!("{}.{}.{what}", engine.stat_prefix, b.id)))
                })
                .collect(),
            vendor: match engine.upstream {
                Upstream::Emulate => Vec::new(),
                Upstream::Vendor => engine
                    .policy
                    .buckets
                    .iter()
                    .map(|b| {
                        let name = |what: &str| format!("{}.{}.{what}", engine.stat_prefix, b.id);
                        [
                            counter(name("vendor_answers")),
                            counter(name("vendor_answers_unusable")),
                            hostcalls::define_metric(MetricType::Gauge, &name("vendor_limit")).ok(),
                        ]
                    })
                    .collect(),
            },
            store_errors: counter(format!("{}.store_errors", engine.stat_prefix)),
            keys_created: counter(format!("{}.shared_data_keys_created", engine.stat_prefix)),
            rls_calls: fleet(&format!("{}.rls_calls", engine.stat_prefix)),
            rls_failures: fleet(&format!("{}.rls_failures", engine.stat_prefix)),
            rls_fallbacks: fleet(&format!("{}.rls_fallbacks", engine.stat_prefix)),
        }
    }

    fn keys_created(&self, n: u64) {
        if let Some(id) = self.keys_created.filter(|_| n > 0) {
            increment(id, n as i64);
        }
    }

    fn vendor(&self, bucket: usize, which: usize, value: Option<i64>) {
        if let Some(id) = self.vendor.get(bucket).and_then(|m| m[which]) {
            match value {
                Some(v) => record(id, v as u64),
                None => increment(id, 1),
            }
        }
    }

    fn record(&self, decision: &Decision) {
        for (bucket, count) in &decision.counts {
            let which = match count {
                Count::Admitted => 0,
                Count::Rejected => 1,
                Count::ShadowRejected => 2,
            };
            if let Some(id) = self.per_bucket.get(*bucket).and_then(|m| m[which]) {
                increment(id, 1);
            }
        }
        if let Some(id) = self.store_errors.filter(|_| !decision.errors.is_empty()) {
            increment(id, decision.errors.len() as i64);
        }
    }

    fn set_peak(&self, bucket: usize, percent: u8) {
        if let Some(id) = self.peak.get(bucket).copied().flatten() {
            record(id, u64::from(percent));
        }
    }
}

struct Plugin {
    engine: Engine,
    metrics: Metrics,
    breaker: Breaker,
    /// Fleet mode: the serialized `GrpcService` naming the cluster (see `rls::proto::GrpcService`).
    grpc_service: Vec<u8>,
    /// Whether this worker has logged that the service lacks a bucket's limit.
    warned_unconfigured: Cell<bool>,
    /// This worker's how-close high-water marks.
    marks: RefCell<Marks>,
    /// Per bucket: the vendor-reported limit this worker last logged.
    vendor_limits: RefCell<Vec<u64>>,
}

impl Plugin {
    /// Raises this worker's marks with what the decision wrote; publishes a
    /// mark (shared data, then the gauge) only when it rose.
    fn observe_peaks(&self, decision: &Decision, now_us: u64, store: &EnvoySharedData) {
        let Ok(mut marks) = self.marks.try_borrow_mut() else {
            return;
        };
        for &(b, remaining) in &decision.remaining {
            let Some(bucket) = self.engine.policy.buckets.get(b) else {
                continue;
            };
            let mark = peak::Mark {
                period: peak::period_of(&bucket.limit, now_us),
                percent: peak::used_percent(bucket.limit.limit, remaining),
            };
            if !marks.observe(b, mark.period, mark.percent) {
                continue;
            }
            match self.engine.peaks.publish(store, b, mark) {
                Ok(Some(percent)) => self.metrics.set_peak(b, percent),
                Ok(None) => {}
                // Not a store error of the request: it was counted.
                Err(e) => log::warn!("could not publish a peak: {e}"),
            }
        }
    }

    /// Sets every bucket's gauge from its shared record: 0 once a period has
    /// passed without traffic. Runs on the tick, never on the request path.
    fn refresh_peaks(&self, now_us: u64) {
        let store = EnvoySharedData::default();
        for (b, bucket) in self.engine.policy.buckets.iter().enumerate() {
            let period = peak::period_of(&bucket.limit, now_us);
            match self.engine.peaks.current(&store, b, period) {
                Ok(percent) => self.metrics.set_peak(b, percent),
                Err(e) => log::debug!("could not read a peak: {e}"),
            }
        }
    }

    /// Publishes the request's access-log line as filter state
    /// (`wasm.<stat_prefix>`), one host call; none with `"access_log": false`.
    fn publish_log_line(&self, decision: &Decision) {
        let engine = &self.engine;
        let Some(summary) = decision.summary.as_ref().filter(|_| engine.access_log) else {
            return;
        };
        let line = crate::request_log::line(
            &engine.policy.buckets,
            summary,
            engine.mode,
            engine.log_scope_keys,
        );
        let _ = profile::host(HostCall::SetProperty, || {
            hostcalls::set_property(vec![engine.stat_prefix.as_str()], Some(line.as_bytes()))
        });
    }
}

#[derive(Default)]
struct Root {
    plugin: Option<Rc<Plugin>>,
}

impl Context for Root {}

/// The host's clock in µs since the epoch; 0 if the host refuses (the SDK's
/// own wrapper panics on a refusal).
fn now_us() -> u64 {
    crate::divide::divide(profile::host(HostCall::Clock, raw::now_nanos), 1_000)
}

fn property(path: &[&str]) -> Option<String> {
    let bytes = profile::host(HostCall::Property, || {
        hostcalls::get_property(path.to_vec())
    })
    .ok()??;
    String::from_utf8(bytes).ok()
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        profile::install();
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let failures =
            hostcalls::define_metric(MetricType::Counter, "idp_ratelimit.config_failures").ok();
        let fail = |message: String| {
            log::error!("configuration refused: {message}");
            if let Some(id) = failures {
                let _ = hostcalls::increment_metric(id, 1);
            }
            false
        };
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
            Err(s) => return fail(format!("could not read the plugin configuration: {s:?}")),
        };
        // Counters are namespaced by the plugin's name, so two filter
        // instances sharing a vm_id never read each other's counters.
        let name = property(&["plugin_name"]).unwrap_or_default();
        let prefix = format!("idprl/{name}/");
        // The same function `idp-ratelimit check` runs: one code path.
        let (plan, engine) = match crate::configure::configure(&bytes, &prefix) {
            Ok(c) => (c.plan, c.engine),
            Err(e) => return fail(e.to_string()),
        };
        let (vendor, mode) = (engine.vendor.clone(), engine.mode);
        let store = EnvoySharedData::default();
        if let Err(e) = engine.create_keys(&store) {
            return fail(format!("could not create the counter table: {e}"));
        }
        log::info!(
            "{vendor}/{plan} ({mode:?}): {} buckets, at most {} shared-data keys under {prefix}",
            engine.policy.buckets.len(),
            engine.key_capacity()
        );
        if engine
            .policy
            .buckets
            .iter()
            .any(|b| b.scope == crate::policy::Scope::ClientIp)
        {
            log::info!(
                "client_ip scope reads source.address: give the HTTP connection manager \
                 use_remote_address: true, or clients choose it with X-Forwarded-For"
            );
        }
        let metrics = Metrics::define(&engine);
        metrics.keys_created(store.created.get());
        let buckets = engine.policy.buckets.len();
        let mut grpc_service = Vec::new();
        if let Some(fleet) = engine.fleet.as_ref() {
            let f = &fleet.config;
            grpc_service = crate::rls::proto::GrpcService {
                envoy_grpc: Some(crate::rls::proto::EnvoyGrpc {
                    cluster_name: f.cluster.clone(),
                }),
            }
            .encode_to_vec();
            let remote = fleet.remote.iter().filter(|r| **r).count();
            log::info!(
                "fleet mode: {remote} of {} buckets counted by {} at cluster {:?} (domain {:?}, \
                 timeout {} ms, on_failure {:?})",
                engine.policy.buckets.len(),
                f.server.name(),
                f.cluster,
                f.domain,
                f.timeout_ms,
                f.on_failure
            );
            match raw::probe_cluster(&grpc_service) {
                0 => {}
                // Envoy 1.40: InternalFailure when the named cluster is missing.
                2 | 10 => log::warn!(
                    "fleet.cluster: Envoy has no cluster {:?} (yet); until it has, every call \
                     fails and on_failure {:?} applies",
                    f.cluster,
                    f.on_failure
                ),
                status => log::info!(
                    "fleet.cluster: could not check cluster {:?} now (host status {status})",
                    f.cluster
                ),
            }
        }
        self.plugin = Some(Rc::new(Plugin {
            engine,
            metrics,
            breaker: Breaker::new(&prefix),
            grpc_service,
            warned_unconfigured: Cell::new(false),
            marks: RefCell::new(Marks::new(buckets)),
            vendor_limits: RefCell::new(vec![0; buckets]),
        }));
        // Only brings idle buckets' gauges back to 0; counting never waits on it.
        let _ = hostcalls::set_tick_period(Duration::from_secs(1));
        true
    }

    fn on_tick(&mut self) {
        profile::flush();
        if let Some(plugin) = &self.plugin {
            plugin.refresh_peaks(now_us());
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let _timed = profile::enter(Callback::CreateContext);
        let plugin = self.plugin.clone()?;
        Some(Box::new(Http {
            plugin,
            context_id,
            headers: Headers::new(),
            holds: Vec::new(),
            waiting: None,
            in_flight: Vec::new(),
            teach: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    plugin: Rc<Plugin>,
    context_id: u32,
    /// Rate-limit headers to add to the upstream's response.
    headers: Headers,
    /// Held places to give back if the upstream refuses the request.
    holds: Vec<Hold>,
    /// Fleet mode: the call in flight and what the request waits on.
    waiting: Option<(u32, Pending)>,
    /// Places held while the request is in flight, given back when the
    /// stream ends (`on_done` or `on_log`, whichever Envoy calls first).
    in_flight: Vec<Hold>,
    /// `"upstream": "vendor"`: the learned records the answer may update.
    teach: Vec<Teach>,
}

impl Context for Http {
    /// Envoy calls `proxy_on_done` as it destroys the stream, and the access
    /// log's `proxy_on_log`; either ends the request's time in flight.
    fn on_done(&mut self) -> bool {
        let _timed = profile::enter(Callback::Done);
        self.stream_ended();
        true
    }

    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, size: usize) {
        let Some((expected, pending)) = self.waiting.take() else {
            return;
        };
        if token != expected {
            self.waiting = Some((expected, pending));
            return;
        }
        let plugin = self.plugin.clone();
        let Some(fleet) = plugin.engine.fleet.as_ref() else {
            // Not reached (only fleet mode calls out); never leave a request paused.
            let _ = raw::resume_request();
            return;
        };
        let store = EnvoySharedData::default();
        let now = now_us();
        let answer = if status_code != 0 {
            Err(format!("gRPC status {}", grpc_status_name(status_code)))
        } else {
            match hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size) {
                Ok(bytes) => {
                    let asked: Vec<&str> = pending
                        .remote
                        .iter()
                        .filter_map(|r| plugin.engine.policy.buckets.get(r.bucket))
                        .map(|b| b.id.as_str())
                        .collect();
                    crate::rls::answer::read(
                        fleet.config.server,
                        &bytes.unwrap_or_default(),
                        &asked,
                    )
                }
                Err(s) => Err(format!("could not read the answer: {s:?}")),
            }
        };
        let answer = match answer {
            Ok(a) => {
                if let Err(e) = plugin.breaker.success(&store) {
                    log::warn!("rate-limit breaker: {e}");
                }
                let unlimited = pending
                    .remote
                    .iter()
                    .zip(&a.statuses)
                    .find(|(_, s)| s.is_none())
                    .and_then(|(r, _)| plugin.engine.policy.buckets.get(r.bucket));
                if let (Some(b), crate::rls::config::Server::EnvoyRatelimit) =
                    (unlimited, fleet.config.server)
                {
                    if !plugin.warned_unconfigured.replace(true) {
                        log::warn!(
                            "the rate-limit service has no limit for bucket {} in domain {:?}: \
                             it is not limited there; deploy the config.yaml generated from this \
                             configuration (logged once per worker)",
                            b.id,
                            fleet.config.domain
                        );
                    }
                }
                Some(a)
            }
            Err(why) => {
                self.failed(&plugin, &store, &why, now);
                None
            }
        };
        let decision = plugin
            .engine
            .conclude(&store, pending, answer.as_ref(), now);
        if answer.is_none() {
            bump(plugin.metrics.rls_fallbacks);
        }
        if self.apply(decision, &store, now) == Action::Continue && raw::resume_request() != 0 {
            log::warn!("could not resume the request after the rate-limit answer");
        }
    }
}

/// The gRPC status code's name, for logs.
fn grpc_status_name(code: u32) -> String {
    let name = match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        4 => "DEADLINE_EXCEEDED",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        // Also what Envoy 1.40 reports when fleet.timeout_ms runs out.
        14 => "UNAVAILABLE",
        _ => "",
    };
    format!("{code} {name}").trim_end().to_string()
}

/// Host calls made without the SDK's wrappers, which panic on statuses
/// Envoy does return (proxy-wasm-rust-sdk#255): the raw status is handled.
mod raw {
    pub use crate::raw_headers::request_header_pairs;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_continue_stream(stream_type: u32) -> u32;
        fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        #[allow(clippy::too_many_arguments)]
        fn proxy_grpc_call(
            upstream: *const u8,
            upstream_len: usize,
            service: *const u8,
            service_len: usize,
            method: *const u8,
            method_len: usize,
            metadata: *const u8,
            metadata_len: usize,
            message: *const u8,
            message_len: usize,
            timeout_ms: u32,
            token: *mut u32,
        ) -> u32;
        fn proxy_grpc_cancel(token: u32) -> u32;
    }

    /// The host's clock in ns since the epoch; 0 when the host refuses.
    pub fn now_nanos() -> u64 {
        let mut nanos: u64 = 0;
        // SAFETY: the out-pointer is a live local for the call.
        match unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } {
            0 => nanos,
            _ => 0,
        }
    }

    const HTTP_REQUEST: u32 = 0;

    /// Resumes the paused request; the proxy-wasm status (0 = Ok).
    pub fn resume_request() -> u32 {
        // SAFETY: a host call with plain integer arguments.
        unsafe { proxy_continue_stream(HTTP_REQUEST) }
    }

    /// Whether Envoy can call the cluster the serialized `grpc_service` names: the raw status, 0 when it can; Envoy 1.40 answers
    /// InternalFailure (10) for a missing cluster (BadArgument, 2, by bare
    /// name in older hosts). A call it accepts (to a method no server has,
    /// with no message) is cancelled at once.
    pub fn probe_cluster(grpc_service: &[u8]) -> u32 {
        let service = crate::rls::proto::SERVICE;
        let method = "IdpRateLimitConfigureProbe";
        // An empty header map: a u32 count of 0.
        let metadata = [0u8; 4];
        let mut token = 0u32;
        // SAFETY: every pointer/length pair is a live slice; `token` outlives the call.
        let status = unsafe {
            proxy_grpc_call(
                grpc_service.as_ptr(),
                grpc_service.len(),
                service.as_ptr(),
                service.len(),
                method.as_ptr(),
                method.len(),
                metadata.as_ptr(),
                metadata.len(),
                std::ptr::null(),
                0,
                1000,
                &mut token,
            )
        };
        if status == 0 {
            // SAFETY: plain integer argument.
            let _ = unsafe { proxy_grpc_cancel(token) };
        }
        status
    }
}

impl Http {
    /// The stream ended (response complete, local reply, upstream or client
    /// reset): the request is no longer in flight. Runs at most once.
    fn stream_ended(&mut self) {
        let waiting = self.waiting.take();
        if self.in_flight.is_empty() && waiting.is_none() {
            return;
        }
        let holds = std::mem::take(&mut self.in_flight);
        let mut errors = Vec::new();
        let store = EnvoySharedData::default();
        let engine = &self.plugin.engine;
        let now = now_us();
        engine.release(&store, &holds, now, &mut errors);
        // Still waiting for the rate-limit service (Envoy drops the call).
        if let Some((_, pending)) = waiting {
            engine.abandon(&store, &pending, now, &mut errors);
        }
        for e in errors {
            log::warn!("could not give back an in-flight place: {e}");
        }
    }
}

/// The request as Envoy's host calls see it: its headers fetched with one
/// host call the first time any is needed (one call costs less than even
/// two single reads; bench/RESULTS.md), then looked up in that buffer.
/// Header values that are not UTF-8 are read lossily.
#[derive(Default)]
struct EnvoyRequest {
    headers: OnceCell<HeaderMap>,
}

impl EnvoyRequest {
    fn headers(&self) -> &HeaderMap {
        self.headers.get_or_init(|| {
            HeaderMap::parse(profile::host(
                HostCall::RequestHeader,
                raw::request_header_pairs,
            ))
        })
    }
}

impl RequestFacts for EnvoyRequest {
    fn method(&self) -> Option<Cow<'_, str>> {
        self.headers().get(":method")
    }
    fn path(&self) -> Option<Cow<'_, str>> {
        self.headers().get(":path")
    }
    fn authority(&self) -> Option<Cow<'_, str>> {
        self.headers().get(":authority")
    }
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers().get(name)
    }
    fn source_address(&self) -> Option<String> {
        property(&["source", "address"])
    }
}

/// The request counted in `teach` ended without a usable answer.
fn forget(engine: &Engine, store: &EnvoySharedData, teach: &[Teach]) {
    let mut errors = Vec::new();
    engine.forget(store, teach, now_us(), &mut errors);
    for e in errors {
        log::warn!("could not update the vendor's record: {e}");
    }
}

fn response_header(name: &str) -> Option<String> {
    match profile::host(HostCall::ResponseHeaderRead, || {
        hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
    }) {
        Ok(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
        _ => None,
    }
}

fn set_response_header(name: &str, value: &str) {
    let _ = profile::host(HostCall::ResponseHeaderWrite, || {
        hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value))
    });
}

impl Http {
    /// Reads the vendor's answer from the upstream response and learns it;
    /// false when there is no usable answer (the filter's own headers go out).
    fn learn(&mut self, status: u32) -> bool {
        let teach = std::mem::take(&mut self.teach);
        let plugin = &self.plugin;
        let engine = &plugin.engine;
        let store = EnvoySharedData::default();
        let answer = match crate::vendor_answer::read(engine.dialect, status, &response_header) {
            Ok(a) => a,
            Err(why) => {
                if let Some(t) = teach.iter().find(|t| t.reported).or(teach.first()) {
                    plugin.metrics.vendor(t.bucket, 1, None);
                }
                log::debug!("upstream answer not usable ({why:?}): counting locally");
                forget(engine, &store, &teach);
                return false;
            }
        };
        let lesson = match engine.learn(&store, &teach, &answer, now_us()) {
            Ok(Some(l)) => l,
            Ok(None) => return true,
            Err(e) => {
                log::warn!("could not store the vendor's answer: {e}");
                return true;
            }
        };
        if lesson.stored == Learned::NoRoom {
            log::debug!("no room for the vendor's answer: counting locally");
        }
        plugin.metrics.vendor(lesson.bucket, 0, None);
        if lesson.vendor_limit != lesson.table_limit {
            let mut logged = plugin.vendor_limits.borrow_mut();
            if let Some(last) = logged.get_mut(lesson.bucket) {
                if *last != lesson.vendor_limit {
                    // This worker's first sighting; the shared flag makes the
                    // log line one per bucket across workers.
                    if *last == 0 && engine.claim_limit_notice(&store, lesson.bucket) == Ok(true) {
                        let id = engine
                            .policy
                            .buckets
                            .get(lesson.bucket)
                            .map_or("?", |b| b.id.as_str());
                        log::info!(
                            "{id}: the vendor reports a limit of {} where the table says {}; \
                             the vendor's figure wins",
                            lesson.vendor_limit,
                            lesson.table_limit
                        );
                    }
                    *last = lesson.vendor_limit;
                    plugin
                        .metrics
                        .vendor(lesson.bucket, 2, Some(lesson.vendor_limit as i64));
                }
            }
        }
        true
    }
}

impl Http {
    /// Sends the decision: forward (headers for the response) or a local reply.
    fn apply(&mut self, decision: Decision, store: &EnvoySharedData, now: u64) -> Action {
        let engine = &self.plugin.engine;
        self.plugin.metrics.record(&decision);
        self.plugin.observe_peaks(&decision, now, store);
        self.plugin.publish_log_line(&decision);
        for e in &decision.errors {
            log::warn!("counter store failed, request let through: {e}");
        }
        let refused = decision.summary.as_ref().and_then(|s| s.refused);
        if let (Some(key), Some(bucket)) = (
            &decision.refused_key,
            refused.and_then(|b| engine.policy.buckets.get(b)),
        ) {
            let (id, kind) = (&bucket.id, crate::request_log::scope_kind(&bucket.scope));
            let what = match engine.mode {
                crate::policy::Mode::Enforce => "rejected",
                crate::policy::Mode::Shadow => "shadow-rejected",
            };
            match engine.log_scope_keys {
                true => log::debug!("{what} by {id} for {kind} {key:?}"),
                false => log::debug!("{what} by {id} for a {kind} key"),
            }
        }
        match decision.verdict {
            Verdict::Unlimited | Verdict::Ask(_) => Action::Continue,
            Verdict::Forward {
                headers,
                holds,
                in_flight,
                teach,
            } => {
                self.headers = headers;
                self.holds = holds;
                self.in_flight = in_flight;
                self.teach = teach;
                Action::Continue
            }
            Verdict::Reply(reply) => {
                let headers: Vec<(&str, &str)> = reply
                    .headers
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect();
                match profile::host(HostCall::SendHttpResponse, || {
                    hostcalls::send_http_response(
                        reply.status,
                        headers,
                        Some(reply.body.as_bytes()),
                    )
                }) {
                    Ok(()) => Action::Pause,
                    Err(s) => {
                        log::warn!("could not send the local reply: {s:?}");
                        Action::Continue
                    }
                }
            }
        }
    }

    /// Fleet mode: one call to the rate-limit service, the request paused
    /// until it answers; or, if the call cannot be made, `on_failure` now.
    fn ask(
        &mut self,
        plugin: &Rc<Plugin>,
        store: &EnvoySharedData,
        pending: Pending,
        now: u64,
    ) -> Action {
        let Some(fleet) = plugin.engine.fleet.as_ref() else {
            return Action::Continue;
        };
        let allowed = plugin.breaker.allows(store, now).unwrap_or_else(|e| {
            log::warn!("rate-limit breaker: {e}");
            true
        });
        if allowed {
            let message = crate::rls::request::encode(
                &fleet.config.domain,
                &plugin.engine.policy.buckets,
                &pending.remote,
            );
            bump(plugin.metrics.rls_calls);
            // A serialized GrpcService, not a bare name (see rls::proto::GrpcService);
            // valid UTF-8 for every cluster name the configuration accepts.
            let call = std::str::from_utf8(&plugin.grpc_service)
                .map_err(|_| "the cluster name does not encode as UTF-8".to_string())
                .and_then(|upstream| {
                    hostcalls::dispatch_grpc_call(
                        upstream,
                        crate::rls::proto::SERVICE,
                        crate::rls::proto::METHOD,
                        Vec::new(),
                        Some(&message),
                        std::time::Duration::from_millis(fleet.config.timeout_ms),
                    )
                    .map_err(|s| format!("dispatch refused: {s:?}"))
                });
            match call {
                Ok(token) => {
                    self.waiting = Some((token, pending));
                    return Action::Pause;
                }
                Err(why) => self.failed(plugin, store, &why, now),
            }
        }
        bump(plugin.metrics.rls_fallbacks);
        let decision = plugin.engine.conclude(store, pending, None, now);
        self.apply(decision, store, now)
    }

    /// A call failed: log it naming the cluster, count it, feed the breaker.
    fn failed(&self, plugin: &Plugin, store: &EnvoySharedData, why: &str, now: u64) {
        bump(plugin.metrics.rls_failures);
        let Some(fleet) = plugin.engine.fleet.as_ref() else {
            return;
        };
        let f = &fleet.config;
        let opened = plugin.breaker.failure(store, now).unwrap_or_else(|e| {
            log::warn!("rate-limit breaker: {e}");
            false
        });
        log::warn!(
            "rate-limit service at cluster {:?} failed: {why}; on_failure {:?}{}",
            f.cluster,
            f.on_failure,
            if opened {
                format!(
                    "; not called again for {} ms",
                    crate::rls::breaker::BACKOFF_US / 1000
                )
            } else {
                String::new()
            }
        );
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let _timed = profile::enter(Callback::RequestHeaders);
        let now = now_us();
        let plugin = self.plugin.clone();
        let engine = &plugin.engine;
        let store = EnvoySharedData::default();
        let decision = engine.decide(
            &store,
            &EnvoyRequest::default(),
            now,
            u64::from(self.context_id),
        );
        phase::reached(Phase::Decided);
        if store.created.get() > 0 {
            // Only if configure could not create the table; see table.rs.
            log::warn!(
                "created {} shared-data keys on the request path",
                store.created.get()
            );
            plugin.metrics.keys_created(store.created.get());
        }
        if let Verdict::Ask(pending) = decision.verdict {
            for e in &decision.errors {
                log::warn!("counter store failed, request let through: {e}");
            }
            return self.ask(&plugin, &store, *pending, now);
        }
        self.apply(decision, &store, now)
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let _timed = profile::enter(Callback::ResponseHeaders);
        // Read at most once, and only when something needs it.
        let read = OnceCell::new();
        let status = || {
            *read.get_or_init(|| match response_header(":status") {
                Some(s) => s.parse::<u32>().unwrap_or(0),
                None => 0,
            })
        };
        // Emulate mode never teaches: no extra host calls there.
        let vendor_answered = !self.teach.is_empty() && self.learn(status());
        if !vendor_answered {
            for (name, value) in &self.headers {
                set_response_header(name, value);
            }
        }
        if !self.headers.is_empty() && self.plugin.engine.dialect == crate::response::Dialect::Okta
        {
            // Envoy's Date is cached (refreshed every 500 ms), so it can lag the
            // second the Reset was computed from; Okta's Reset - Date never exceeds
            // the window, so a counted response carries the filter's own clock.
            let date = crate::httpdate::format(crate::limiter::whole_secs(now_us()));
            set_response_header("date", &date);
        }
        if !self.holds.is_empty() {
            if !(200..300).contains(&status()) {
                let mut errors = Vec::new();
                let store = EnvoySharedData::default();
                self.plugin
                    .engine
                    .release(&store, &self.holds, now_us(), &mut errors);
                for e in errors {
                    log::warn!("could not release a hold: {e}");
                }
            }
            self.holds.clear();
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let _timed = profile::enter(Callback::Log);
        self.stream_ended();
        // No response headers came back (upstream reset, client gone).
        if !self.teach.is_empty() {
            forget(
                &self.plugin.engine,
                &EnvoySharedData::default(),
                &self.teach,
            );
        }
    }
}
