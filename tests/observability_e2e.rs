//! What an operator sees, in a real Envoy: the access-log line of each counted request (with
//! the exact format of envoy/envoy.yaml), the optional debug header, the how-close gauge, and
//! the Prometheus names that the Grafana dashboard and the alert rules query.
//!
//! The Envoy under test takes envoy/envoy.yaml's `stats_config` (the `idp_bucket` tag) and its
//! access-log format as they are shipped, through `--config-yaml`: a listener `observed` with
//! the filter and a file access log, so a change to either file is what these tests check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};

fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read_yaml(rel: &str) -> Value {
    let text = fs::read_to_string(crate_path(rel)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// envoy/envoy.yaml's HTTP connection manager.
fn shipped_hcm(bootstrap: &Value) -> Value {
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        .clone()
}

/// An Envoy whose listener `observed` runs the filter with `plugin_config` and writes
/// envoy/envoy.yaml's access-log format to a file.
struct Observed {
    envoy: Envoy,
    access_log: PathBuf,
    port: u16,
}

impl Observed {
    fn start(plugin_config: Value) -> Observed {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let shipped = read_yaml("envoy/envoy.yaml");
        let hcm = shipped_hcm(&shipped);
        let log_format = hcm["access_log"][0]["typed_config"]["log_format"].clone();
        assert!(
            log_format.is_object(),
            "no access-log format in envoy/envoy.yaml"
        );
        let access_log = std::env::temp_dir().join(format!(
            "idp-rl-access-{}-{}.log",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        const T: &str = "type.googleapis.com/";
        let wasm = json!({
            "name": "idp_ratelimit", "root_id": "idp_ratelimit",
            "configuration": {"@type": format!("{T}google.protobuf.StringValue"),
                              "value": plugin_config.to_string()},
            "vm_config": {"vm_id": "idp_ratelimit", "runtime": EnvoyOptions::default().runtime,
                          "code": {"local": {"filename": wasm_path().to_string_lossy()}}}});
        let file_log = json!({
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": format!("{T}envoy.extensions.access_loggers.file.v3.FileAccessLog"),
                "path": access_log.to_string_lossy(), "log_format": log_format}});
        let hcm = json!({
            "@type": hcm["@type"], "stat_prefix": "observed", "use_remote_address": true,
            "access_log": [file_log],
            "http_filters": [
                {"name": "envoy.filters.http.wasm",
                 "typed_config": {"@type": format!("{T}envoy.extensions.filters.http.wasm.v3.Wasm"),
                                  "config": wasm}},
                {"name": "envoy.filters.http.router",
                 "typed_config": {"@type": format!("{T}envoy.extensions.filters.http.router.v3.Router")}}],
            "route_config": {"virtual_hosts": [{
                "name": "observed", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]}]}});
        let extra = json!({
            "stats_config": shipped["stats_config"],
            "static_resources": {"listeners": [{
                "name": "observed",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [
                    {"name": "envoy.filters.network.http_connection_manager",
                     "typed_config": hcm}]}]}]}});
        let envoy = Envoy::start_with(EnvoyOptions {
            with_filter: false,
            extra_args: vec!["--config-yaml".into(), extra.to_string()],
            ..Default::default()
        });
        let port = listener_port(&envoy, "observed");
        Observed {
            envoy,
            access_log,
            port,
        }
    }

    fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// The access log, once it has at least `n` lines (Envoy flushes it about once a second).
    fn access_log_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = fs::read_to_string(&self.access_log).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= n || Instant::now() > deadline {
                assert_eq!(lines.len(), n, "access log lines:\n{text}");
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn prometheus(&self) -> String {
        let r = self.envoy.admin("GET", "/stats/prometheus");
        assert_eq!(r.status, 200);
        r.body_str()
    }

    /// The how-close gauge of `bucket`, as /stats shows it.
    fn peak(&self, bucket: &str) -> Option<u64> {
        self.envoy
            .stat(&format!("idp_ratelimit.{bucket}.peak_used_percent"))
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.access_log);
    }
}

/// What follows the request in the shipped format: the status and the filter's line.
fn fields(line: &str) -> &str {
    line.split_once("\" ").map_or(line, |(_, rest)| rest)
}

#[test]
fn the_access_log_line_of_a_429_names_the_bucket_and_the_scope_kind() {
    let o =
        Observed::start(json!({"vendor": "okta", "plan": "integrator-free", "scope": "client_ip"}));
    let mut c = o.client();
    for i in 0..20 {
        assert_eq!(c.request("GET", "/api/v1/logs", &[]).status, 200, "#{i}");
    }
    let refused = c.request("GET", "/api/v1/logs", &[]);
    assert_eq!(refused.status, 429);
    assert_eq!(c.request("GET", "/unlimited", &[]).status, 200);
    let lines = o.access_log_lines(22);
    assert_eq!(
        fields(&lines[0]),
        "200 bucket=okta.management.logs refused=- scope=client_ip remaining=19 limit=20 \
         mode=enforce"
    );
    assert!(lines[0].contains("\"GET /api/v1/logs\""), "{}", lines[0]);
    assert_eq!(
        fields(&lines[20]),
        "429 bucket=okta.management.logs refused=okta.management.logs scope=client_ip \
         remaining=0 limit=20 mode=enforce"
    );
    assert_eq!(fields(&lines[21]), "200 -", "a request no bucket counts");
    // The key itself (the client's address) is in no line.
    assert!(lines.iter().all(|l| !l.contains("127.0.0.1")), "{lines:#?}");
}

#[test]
fn access_log_false_publishes_no_line_and_counts_as_before() {
    let o = Observed::start(json!({
        "vendor": "okta", "plan": "integrator-free", "scope": "client_ip", "access_log": false}));
    let mut c = o.client();
    for i in 0..20 {
        let r = c.request("GET", "/api/v1/logs", &[]);
        assert_eq!(r.status, 200, "#{i}");
        let remaining = (19 - i).to_string();
        assert_eq!(r.header("x-rate-limit-remaining"), Some(remaining.as_str()));
    }
    assert_eq!(c.request("GET", "/api/v1/logs", &[]).status, 429);
    let lines = o.access_log_lines(21);
    assert_eq!(fields(&lines[0]), "200 -", "{lines:#?}");
    assert_eq!(fields(&lines[20]), "429 -", "{lines:#?}");
}

#[test]
fn raw_keys_are_logged_only_when_the_operator_asks_and_shadow_names_the_would_be_refusal() {
    let o = Observed::start(json!({
        "vendor": "okta", "plan": "integrator-free", "mode": "shadow",
        "scope": {"header": "x-team"}, "log_scope_keys": true}));
    let mut c = o.client();
    for _ in 0..21 {
        assert_eq!(
            c.request("GET", "/api/v1/logs", &[("x-team", "blue")])
                .status,
            200
        );
    }
    assert_eq!(c.request("GET", "/api/v1/logs", &[]).status, 200);
    let lines = o.access_log_lines(22);
    assert_eq!(
        fields(&lines[19]),
        "200 bucket=okta.management.logs refused=- scope=blue remaining=0 limit=20 mode=shadow"
    );
    assert_eq!(
        fields(&lines[20]),
        "200 bucket=okta.management.logs refused=okta.management.logs scope=blue remaining=0 \
         limit=20 mode=shadow"
    );
    assert_eq!(
        fields(&lines[21]),
        "200 bucket=okta.management.logs refused=- scope=(missing) remaining=19 limit=20 \
         mode=shadow",
        "requests without the header share one key"
    );
}

#[test]
fn the_debug_header_names_the_reported_bucket_only_when_enabled() {
    const HEADER: &str = "x-idp-ratelimit-bucket";
    let plain = Observed::start(json!({"vendor": "okta", "plan": "integrator-free"}));
    let r = plain.client().request("GET", "/api/v1/logs", &[]);
    assert_eq!((r.status, r.header(HEADER)), (200, None), "off by default");

    let o = Observed::start(
        json!({"vendor": "okta", "plan": "integrator-free", "debug_headers": true}),
    );
    let mut c = o.client();
    let r = c.request("GET", "/api/v1/users", &[]);
    assert_eq!(r.header(HEADER), Some("okta.management.users"), "{r:?}");
    for _ in 0..19 {
        let r = c.request("GET", "/api/v1/logs", &[]);
        assert_eq!(r.header(HEADER), Some("okta.management.logs"), "{r:?}");
    }
    let r = c.request("GET", "/api/v1/logs", &[]);
    assert_eq!(r.status, 200);
    let r = c.request("GET", "/api/v1/logs", &[]);
    assert_eq!(r.status, 429);
    assert_eq!(r.header(HEADER), Some("okta.management.logs"), "{r:?}");
    let r = c.request("GET", "/unlimited", &[]);
    assert_eq!(r.header(HEADER), None, "not counted, not named");
}

fn unix_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Waits until `check` holds, for at most `timeout`; returns whether it did.
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_peak_gauge_is_the_worst_keys_share_across_workers_and_falls_back_after_its_period() {
    // One bucket (`routes.0`), 10 a minute per x-k; its period is the minute, epoch-aligned.
    let o = Observed::start(json!({
        "vendor": "custom", "dialect": "okta", "scope": {"header": "x-k"},
        "routes": [{"route": "/x", "limit": 10, "window": "minute", "algorithm": "fixed_window"}]}));
    assert_eq!(o.peak("routes.0"), Some(0), "defined at configure, at 0");
    // Keep clear of a minute boundary while filling (the gauge restarts there).
    let into_minute = unix_secs_f64() % 60.0;
    if into_minute > 45.0 {
        std::thread::sleep(Duration::from_secs_f64(61.0 - into_minute));
    }
    // Key a: 9 of 10 over three connections (both workers); key b: 3 of 10.
    let mut clients: Vec<Client> = (0..3).map(|_| o.client()).collect();
    for i in 0..9 {
        let r = clients[i % 3].request("GET", "/x", &[("x-k", "a")]);
        assert_eq!(r.status, 200);
    }
    for c in clients.iter_mut() {
        assert_eq!(c.request("GET", "/x", &[("x-k", "b")]).status, 200);
    }
    assert_eq!(o.peak("routes.0"), Some(90), "the worst key, not a sum");
    let line = "idp_ratelimit_peak_used_percent{idp_bucket=\"routes.0\"} 90";
    assert!(
        o.prometheus().lines().any(|l| l == line),
        "{line} not scraped"
    );
    assert_eq!(clients[0].request("GET", "/x", &[("x-k", "a")]).status, 200);
    assert_eq!(o.peak("routes.0"), Some(100));
    assert_eq!(clients[1].request("GET", "/x", &[("x-k", "a")]).status, 429);
    assert_eq!(o.peak("routes.0"), Some(100));
    // A minute without traffic: back to 0 within about a second of the boundary.
    let to_boundary = 60.0 - unix_secs_f64() % 60.0;
    std::thread::sleep(Duration::from_secs_f64(to_boundary + 0.2));
    assert!(
        eventually(Duration::from_secs(3), || o.peak("routes.0") == Some(0)),
        "gauge still {:?} after its period",
        o.peak("routes.0")
    );
}

/// Metric families and the label names each carries, from Prometheus text exposition.
fn scraped_families(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut families: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (name, labels) = match line.split_once('{') {
            Some((name, rest)) => (name, rest.split_once('}').map_or("", |(l, _)| l)),
            None => (line.split_whitespace().next().unwrap_or(""), ""),
        };
        let entry = families.entry(name.to_string()).or_default();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            if let Some((label, _)) = pair.split_once('=') {
                entry.insert(label.to_string());
            }
        }
        // A histogram's series name its family too.
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                families.entry(base.to_string()).or_default();
            }
        }
    }
    families
}

/// The metric names a PromQL expression reads: identifiers of the filter's and Envoy's
/// families (label values inside quotes are skipped).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    let mut in_quote = false;
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        if word.starts_with("idp_ratelimit_") || word.starts_with("envoy_") {
            names.insert(word.clone());
        }
        word.clear();
    };
    while let Some(ch) = rest.chars().next() {
        rest = &rest[ch.len_utf8()..];
        if ch == '"' {
            in_quote = !in_quote;
            flush(&mut word);
        } else if !in_quote && (ch.is_ascii_alphanumeric() || ch == '_' || ch == ':') {
            word.push(ch);
        } else {
            flush(&mut word);
        }
    }
    flush(&mut word);
    names
}

/// Every string under a key named `expr`, `query` or `definition`, anywhere in `v`.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
        _ => {}
    }
}

fn promtool() -> PathBuf {
    let bin = match std::env::var_os("PROMTOOL_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => crate_path(".venv/bin/promtool"),
    };
    assert!(
        bin.exists(),
        "no promtool at {} (`make e2e` takes it from Debian's prometheus package)",
        bin.display()
    );
    bin
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    for args in [
        &["check", "rules", "alerts.yaml"][..],
        &["test", "rules", "alerts_test.yaml"][..],
    ] {
        let out = Command::new(promtool())
            .args(args)
            .current_dir(crate_path("envoy/prometheus"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_dashboard_and_the_alerts_query_only_metrics_envoy_exports() {
    // Okta (fixed windows) and Auth0 (token buckets, the import-jobs concurrency bucket)
    // in one Envoy: every kind of bucket's stats.
    let o = Observed::start(json!({"vendor": "okta", "plan": "enterprise"}));
    let families = scraped_families(&o.prometheus());
    let auth0 = Observed::start(json!({"vendor": "auth0", "plan": "enterprise-prod"}));
    // Fleet mode defines its own stats (the service's cluster need not exist for that).
    let fleet = Observed::start(json!({"vendor": "okta", "plan": "enterprise",
                                      "fleet": {"cluster": "ratelimit"}}));
    // So does `"upstream": "vendor"` (per bucket: answers learned, unusable, the vendor's limit).
    let vendor = Observed::start(json!({"vendor": "okta", "plan": "enterprise",
                                       "upstream": "vendor"}));
    let mut all = families.clone();
    for other in [&auth0, &fleet, &vendor] {
        for (k, v) in scraped_families(&other.prometheus()) {
            all.entry(k).or_default().extend(v);
        }
    }

    // Per-bucket families carry the bucket as the `idp_bucket` label (envoy.yaml's stats tag).
    for f in [
        "admitted",
        "rejected",
        "shadow_rejected",
        "peak_used_percent",
        "vendor_answers",
        "vendor_answers_unusable",
        "vendor_limit",
    ] {
        let labels = all.get(&format!("idp_ratelimit_{f}"));
        assert!(
            labels.is_some_and(|l| l.contains("idp_bucket")),
            "idp_ratelimit_{f} with an idp_bucket label not scraped: {labels:?}"
        );
    }
    // No per-bucket stat escapes the tag as one family per bucket.
    for f in all.keys() {
        assert!(
            !["okta_", "auth0_", "onelogin_"]
                .iter()
                .any(|v| f.starts_with(&format!("idp_ratelimit_{v}"))),
            "{f}: a per-bucket stat the idp_bucket tag regex does not cover"
        );
    }
    let line = "idp_ratelimit_admitted{idp_bucket=\"okta.management.users\"} 0";
    assert!(
        o.prometheus().lines().any(|l| l == line),
        "{line} not scraped"
    );

    let mut exprs = Vec::new();
    let dashboard: Value = serde_json::from_str(
        &fs::read_to_string(crate_path("envoy/grafana/idp-ratelimit.json")).unwrap(),
    )
    .unwrap();
    queries(&dashboard["panels"], &mut exprs);
    queries(&dashboard["templating"], &mut exprs);
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 6, "dashboard panels");
    for p in panels {
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "panel {} has no query",
            p["title"]
        );
    }
    let rules = read_yaml("envoy/prometheus/alerts.yaml");
    queries(&rules, &mut exprs);
    let alerts: Vec<&str> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for needed in [
        "IdpRateLimitBucketAt80Percent",
        "IdpRateLimitBucketAt95Percent",
        "IdpRateLimitStoreErrors",
        "IdpRateLimitFleetFallback",
    ] {
        assert!(alerts.contains(&needed), "{needed} missing: {alerts:?}");
    }

    let mut referenced = BTreeSet::new();
    for e in &exprs {
        let names = metric_names(e);
        assert!(
            !names.is_empty() || e.starts_with("label_values") || e == "prometheus",
            "no metric in {e:?}"
        );
        for n in &names {
            assert!(
                all.contains_key(n),
                "{n} (in {e:?}) is not in Envoy's /stats/prometheus"
            );
            assert!(
                !e.contains("idp_bucket") || all[n].contains("idp_bucket"),
                "{e:?} reads the idp_bucket label, which {n} does not have"
            );
        }
        referenced.extend(names);
    }
    for f in [
        "idp_ratelimit_peak_used_percent",
        "idp_ratelimit_rejected",
        "idp_ratelimit_store_errors",
        "idp_ratelimit_rls_fallbacks",
    ] {
        assert!(referenced.contains(f), "nothing queries {f}");
    }

    // The README lists every family the filter exports.
    let readme = fs::read_to_string(crate_path("README.md")).unwrap();
    for f in all.keys().filter(|f| f.starts_with("idp_ratelimit_")) {
        assert!(
            readme.contains(&format!("`{f}")),
            "README does not list {f}"
        );
    }
}
