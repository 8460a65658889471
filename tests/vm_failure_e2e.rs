//! A wasm VM that fails: traps under fail_open / failure_policy, and a refused configuration
//! stopping Envoy whatever the failure policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
