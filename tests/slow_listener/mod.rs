//! A second listener, `slow`, merged into the harness's Envoy with `--config-yaml`: its own
//! filter instance (plugin `idp_ratelimit_slow`, own VM, stats under the config's
//! `stat_prefix`), then Envoy's fault filter, so that a request header
//! `x-envoy-fault-delay-request: <ms>` holds the request that long *after* the filter counted it
//! (a slow upstream, with no server to run), then the router. Routes:
//! * `x-test-upstream: reset`: a cluster whose server (a thread here, on 127.0.0.1) reads the
//!   request and closes the connection without answering: Envoy's 503 after an upstream reset.
//! * `x-test-upstream: refused`: a cluster on a port nobody listens on: the router's local 503.
//! * `x-upstream-status: 201`: 201 `{}`; anything else 200 `ok\n` (with `x-upstream: direct`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{listener_port, wasm_path, Envoy, EnvoyOptions};
use serde_json::{json, Value};
use std::io::Read;
use std::net::TcpListener;

pub const DELAY: &str = "x-envoy-fault-delay-request";

/// A server that reads each request's head and hangs up without a response.
fn resetting_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the resetting upstream");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                // Dropped here: the upstream closes before any response byte.
            });
        }
    });
    port
}

/// A port with no listener (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn cluster(name: &str, port: u16) -> Value {
    let addr = json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
    json!({"name": name, "connect_timeout": "1s", "type": "STATIC",
           "load_assignment": {"cluster_name": name,
               "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr}}]}]}})
}

fn listener(plugin_config: &str) -> Value {
    const T: &str = "type.googleapis.com/";
    let wasm = json!({
        "name": "idp_ratelimit_slow", "root_id": "idp_ratelimit",
        "configuration": {"@type": format!("{T}google.protobuf.StringValue"), "value": plugin_config},
        "vm_config": {"vm_id": "idp_ratelimit_slow", "runtime": EnvoyOptions::default().runtime,
                      "code": {"local": {"filename": wasm_path().to_string_lossy()}}}});
    let fault = json!({"@type": format!("{T}envoy.extensions.filters.http.fault.v3.HTTPFault"),
                       "delay": {"header_delay": {},
                                 "percentage": {"numerator": 100, "denominator": "HUNDRED"}}});
    let to = |header: &str, value: &str, cluster: &str| {
        json!({"match": {"prefix": "/", "headers": [{"name": header, "string_match": {"exact": value}}]},
               "route": {"cluster": cluster, "timeout": "5s"}})
    };
    let direct =
        |status: u16, body: &str| json!({"status": status, "body": {"inline_string": body}});
    let hcm_type =
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    let hcm = json!({
        "@type": format!("{T}{hcm_type}"),
        "stat_prefix": "slow", "codec_type": "AUTO", "use_remote_address": true,
        "normalize_path": false, "merge_slashes": false,
        "http_filters": [
            {"name": "envoy.filters.http.wasm",
             "typed_config": {"@type": format!("{T}envoy.extensions.filters.http.wasm.v3.Wasm"),
                              "config": wasm}},
            {"name": "envoy.filters.http.fault", "typed_config": fault},
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": format!("{T}envoy.extensions.filters.http.router.v3.Router")}}],
        "route_config": {"virtual_hosts": [{
            "name": "slow", "domains": ["*"],
            "response_headers_to_add": [{"header": {"key": "x-upstream", "value": "direct"}}],
            "routes": [
                to("x-test-upstream", "reset", "resetter"),
                to("x-test-upstream", "refused", "refused"),
                {"match": {"prefix": "/", "headers": [{"name": "x-upstream-status",
                                                       "string_match": {"exact": "201"}}]},
                 "direct_response": direct(201, "{}")},
                {"match": {"prefix": "/"}, "direct_response": direct(200, "ok\n")}]}]}});
    json!({"name": "slow",
           "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
           "filter_chains": [{"filters": [
               {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]})
}

/// Envoy with `workers` worker threads; the `slow` listener's filter has `plugin_config` (the
/// harness's own listener gets the same configuration). Returns Envoy and the slow port.
pub fn start(plugin_config: &str, workers: u32) -> (Envoy, u16) {
    let extra = json!({"static_resources": {
        "listeners": [listener(plugin_config)],
        "clusters": [cluster("resetter", resetting_server()), cluster("refused", closed_port())]}});
    let envoy = Envoy::start_with(EnvoyOptions {
        plugin_config: plugin_config.to_string(),
        concurrency: workers,
        extra_args: vec!["--config-yaml".into(), extra.to_string()],
        ..Default::default()
    });
    let port = listener_port(&envoy, "slow");
    (envoy, port)
}
