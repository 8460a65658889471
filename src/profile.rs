//! The profile build (`cargo build --features profile`, `make profile`): times
//! each callback, each host call the glue makes (by kind) and the segments of
//! `on_http_request_headers` between the [`Phase`] marks, with the host's
//! nanosecond clock, and exports the sums as Envoy counters on the tick:
//!
//! * `idp_ratelimit.profile.callback.<name>.{ns,calls,host_ns,host_calls,reads}`
//! * `idp_ratelimit.profile.segment.<name>.{ns,calls,host_ns,host_calls,reads}`
//! * `idp_ratelimit.profile.host.<kind>.{ns,calls}`
//! * `idp_ratelimit.profile.clock.{ns,calls}`: back-to-back clock reads, the
//!   price of one read, to take the profiler's own reads out (`reads`: the
//!   profiler's clock reads inside a window; bench/run.py subtracts them);
//! * `idp_ratelimit.profile.bookkeeping.{ns,calls}`: the wasm-side work of
//!   timing one host call besides its clock reads (in the window's self time;
//!   bench/run.py subtracts it per timed host call and mark).
//!
//! Only host calls made inside a timed callback are counted (not on_tick's or
//! on_configure's). The sums are per VM (one per worker), so two plugins on
//! one `vm_id` add up. Without the feature every wrapper here is an inline
//! pass-through and the release `.wasm` carries none of this.

/// The callbacks timed.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "profile"), allow(dead_code))]
pub(crate) enum Callback {
    CreateContext,
    RequestHeaders,
    ResponseHeaders,
    Log,
    Done,
}

/// The host calls timed, by kind.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "profile"), allow(dead_code))]
pub(crate) enum HostCall {
    RequestHeader,
    ResponseHeaderRead,
    Property,
    SharedGet,
    SharedSet,
    Metric,
    SetProperty,
    ResponseHeaderWrite,
    SendHttpResponse,
    Clock,
}

#[cfg(not(feature = "profile"))]
mod imp {
    use super::{Callback, HostCall};

    /// Times nothing.
    pub(crate) struct Timed;

    #[inline(always)]
    pub(crate) fn enter(_: Callback) -> Timed {
        Timed
    }

    #[inline(always)]
    pub(crate) fn host<T>(_: HostCall, call: impl FnOnce() -> T) -> T {
        call()
    }

    #[inline(always)]
    pub(crate) fn install() {}

    #[inline(always)]
    pub(crate) fn flush() {}
}

#[cfg(feature = "profile")]
mod imp {
    use super::{Callback, HostCall};
    use crate::phase::Phase;
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::MetricType;
    use std::cell::RefCell;
    use std::time::UNIX_EPOCH;

    const CALLBACKS: [&str; 5] = [
        "create_http_context",
        "on_http_request_headers",
        "on_http_response_headers",
        "on_log",
        "on_done",
    ];
    /// The stretches of `on_http_request_headers`: from its start to
    /// `Routed`, then from each mark to the next (or to its end).
    const SEGMENTS: [&str; 4] = ["read_and_route", "count", "respond", "apply"];
    /// By `HostCall`, then the first request-header read of each callback
    /// apart (is a first read dearer than the next?).
    const HOSTS: [&str; 11] = [
        "request_header",
        "response_header_read",
        "property",
        "shared_data_get",
        "shared_data_set",
        "metric",
        "set_property",
        "response_header_write",
        "send_http_response",
        "clock",
        "request_header_first",
    ];
    const FIRST_REQUEST_HEADER: usize = 10;
    const WINDOW_FIELDS: [&str; 5] = ["ns", "calls", "host_ns", "host_calls", "reads"];
    /// Back-to-back clock reads per tick, to price one.
    const CALIBRATION_READS: u64 = 64;

    /// Sums over the timed windows of one kind.
    #[derive(Clone, Copy, Default)]
    struct Window {
        ns: u64,
        calls: u64,
        /// Time in timed host calls inside the window, and their number.
        host_ns: u64,
        host_calls: u64,
        /// The profiler's clock reads inside the window (not its bounds).
        reads: u64,
    }

    impl Window {
        fn fields(&self) -> [u64; 5] {
            [
                self.ns,
                self.calls,
                self.host_ns,
                self.host_calls,
                self.reads,
            ]
        }
    }

    /// The window being timed (a callback, or a segment of one).
    #[derive(Clone, Copy)]
    struct Open {
        index: usize,
        start: u64,
        host_ns: u64,
        host_calls: u64,
        reads: u64,
        /// Request-header reads so far.
        request_headers: u64,
    }

    impl Open {
        fn new(index: usize, start: u64) -> Open {
            Open {
                index,
                start,
                host_ns: 0,
                host_calls: 0,
                reads: 0,
                request_headers: 0,
            }
        }
    }

    #[derive(Default)]
    struct State {
        callbacks: [Window; 5],
        segments: [Window; 4],
        hosts: [Window; 11],
        clock: Window,
        callback: Option<Open>,
        segment: Option<Open>,
        /// Counter ids, in the order `flush` walks the sums; defined at the first flush.
        ids: Vec<Option<u32>>,
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::new(State::default());
    }

    fn with(f: impl FnOnce(&mut State)) {
        STATE.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                f(&mut s);
            }
        });
    }

    fn clock() -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64)
    }

    fn close(window: &mut Window, open: &Open, end: u64) {
        window.ns += end.saturating_sub(open.start);
        window.calls += 1;
        window.host_ns += open.host_ns;
        window.host_calls += open.host_calls;
        window.reads += open.reads;
    }

    /// A callback being timed: its time ends when this is dropped.
    pub(crate) struct Timed {
        /// The callback this one interrupted, if any (a local reply's).
        outer: Option<(Option<Open>, Option<Open>)>,
    }

    pub(crate) fn enter(callback: Callback) -> Timed {
        let index = callback as usize;
        let mut outer = None;
        with(|s| outer = Some((s.callback.take(), s.segment.take())));
        let start = clock();
        with(|s| {
            s.callback = Some(Open::new(index, start));
            if let Callback::RequestHeaders = callback {
                s.segment = Some(Open::new(0, start));
            }
        });
        Timed { outer }
    }

    impl Drop for Timed {
        fn drop(&mut self) {
            let end = clock();
            let outer = self.outer.take();
            with(|s| {
                if let Some(open) = s.segment.take() {
                    if let Some(w) = s.segments.get_mut(open.index) {
                        close(w, &open, end);
                    }
                }
                if let Some(open) = s.callback.take() {
                    if let Some(w) = s.callbacks.get_mut(open.index) {
                        close(w, &open, end);
                    }
                }
                if let Some((callback, segment)) = outer {
                    s.callback = callback;
                    s.segment = segment;
                }
            });
        }
    }

    pub(crate) fn host<T>(kind: HostCall, call: impl FnOnce() -> T) -> T {
        let mut timing = false;
        with(|s| timing = s.callback.is_some());
        if !timing {
            return call();
        }
        let start = clock();
        let out = call();
        let took = clock().saturating_sub(start);
        with(|s| account(s, kind as usize, took));
        out
    }

    fn account(s: &mut State, mut kind: usize, took: u64) {
        if kind == HostCall::RequestHeader as usize {
            if let Some(callback) = s.callback.as_mut() {
                if callback.request_headers == 0 {
                    kind = FIRST_REQUEST_HEADER;
                }
                callback.request_headers += 1;
            }
        }
        if let Some(w) = s.hosts.get_mut(kind) {
            w.ns += took;
            w.calls += 1;
        }
        for open in [&mut s.callback, &mut s.segment].into_iter().flatten() {
            open.host_ns += took;
            open.host_calls += 1;
            open.reads += 2;
        }
    }

    /// Times `CALIBRATION_READS` rounds of what `host` does besides the call
    /// and its two clock reads (its wasm-side bookkeeping, counted in the
    /// window's self time), on a copy of the sums it then puts back.
    fn price_bookkeeping(s: &mut Window) {
        let mut saved = None;
        with(|st| {
            saved = Some((st.hosts, st.callback, st.segment));
            st.callback = Some(Open::new(0, 0));
            st.segment = Some(Open::new(0, 0));
        });
        let start = clock();
        for _ in 0..CALIBRATION_READS {
            let mut timing = false;
            with(|st| timing = st.callback.is_some());
            if timing {
                with(|st| account(st, HostCall::Clock as usize, 0));
            }
        }
        let end = clock();
        with(|st| {
            if let Some((hosts, callback, segment)) = saved {
                st.hosts = hosts;
                st.callback = callback;
                st.segment = segment;
            }
        });
        s.ns += end.saturating_sub(start);
        s.calls += CALIBRATION_READS;
    }

    /// The phase hook: closes the segment that ends here, opens the next.
    fn reached(phase: Phase) {
        let now = clock();
        with(|s| {
            let Some(callback) = s.callback.as_mut() else {
                return;
            };
            callback.reads += 1;
            if let Some(open) = s.segment.take() {
                if let Some(w) = s.segments.get_mut(open.index) {
                    close(w, &open, now);
                }
                s.segment = Some(Open::new(phase as usize + 1, now));
            }
        });
    }

    pub(crate) fn install() {
        crate::phase::set_hook(reached);
    }

    /// Adds this worker's sums to the counters and starts new ones; prices
    /// the clock read.
    pub(crate) fn flush() {
        let first = clock();
        let mut last = first;
        for _ in 0..CALIBRATION_READS {
            last = clock();
        }
        let mut bookkeeping = Window::default();
        price_bookkeeping(&mut bookkeeping);
        with(|s| {
            s.clock.ns += last.saturating_sub(first);
            s.clock.calls += CALIBRATION_READS;
            let mut values = Vec::new();
            let mut names = Vec::new();
            for (group, titles, windows, fields) in [
                ("callback", &CALLBACKS[..], &s.callbacks[..], 5),
                ("segment", &SEGMENTS[..], &s.segments[..], 5),
                ("host", &HOSTS[..], &s.hosts[..], 2),
            ] {
                for (title, w) in titles.iter().zip(windows) {
                    for (field, value) in WINDOW_FIELDS.iter().zip(w.fields()).take(fields) {
                        names.push(format!("idp_ratelimit.profile.{group}.{title}.{field}"));
                        values.push(value);
                    }
                }
            }
            for (field, value) in WINDOW_FIELDS.iter().zip(s.clock.fields()).take(2) {
                names.push(format!("idp_ratelimit.profile.clock.{field}"));
                values.push(value);
            }
            for (field, value) in WINDOW_FIELDS.iter().zip(bookkeeping.fields()).take(2) {
                names.push(format!("idp_ratelimit.profile.bookkeeping.{field}"));
                values.push(value);
            }
            if s.ids.len() != names.len() {
                s.ids = names
                    .iter()
                    .map(|n| hostcalls::define_metric(MetricType::Counter, n).ok())
                    .collect();
            }
            for (id, value) in s.ids.iter().zip(values) {
                if let (Some(id), true) = (id, value > 0) {
                    let _ = hostcalls::increment_metric(*id, value as i64);
                }
            }
            s.callbacks = Default::default();
            s.segments = Default::default();
            s.hosts = Default::default();
            s.clock = Window::default();
        });
    }
}

pub(crate) use imp::{enter, flush, host, install};
