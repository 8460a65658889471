//! Several filter instances in one Envoy (listeners merged in with `--config-yaml`): plugin
//! names and vm_ids decide which instances share counters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
use common::*;

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
    assert_eq!(e.counter("okta.management.logs.admitted"), 20);
    assert_eq!(e.counter("okta.management.logs.rejected"), 2);
    assert_eq!(e.counter("routes.0.admitted"), 5);
    assert_eq!(e.counter("routes.0.rejected"), 2);
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
    assert_eq!(e.counter("okta.management.logs.admitted"), 20);
    assert_eq!(e.counter("okta.management.logs.rejected"), 2);
    let other_stat = |what: &str| {
        e.stat_value(&format!(
            "wasmcustom.idp_ratelimit_other.okta.management.logs.{what}"
        ))
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
    assert_eq!(e.counter("okta.management.logs.admitted"), 20);
    assert_eq!(e.counter("okta.management.logs.rejected"), 2);
    // Envoy even shares the plugin: an identical config creates no more VMs than one instance.
    assert_eq!(active_vms(&e), 4, "{:?}", wasm_stats(&e));
}
