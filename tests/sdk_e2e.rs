//! End-to-end: the vendors' official SDKs retry correctly on the filter's 429s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod common;
mod slow_listener;
use common::*;

// Each test starts Envoy with one vendor's catalog and one bucket shrunk (through `overrides`)
// to 2 requests per a few seconds, then runs `tests/sdk/<vendor>_sdk.py <port>` with the
// project venv's Python, where `make e2e` installs the SDKs pinned in
// tests/sdk/requirements.txt. The script drives the SDK against the filter, records every HTTP
// attempt below the SDK's retry logic and exits 0 only if the SDK got the filter's 429, waited
// what that 429 told it to, retried once and succeeded (see each script's docstring). Here we
// check the script's verdict and, from the filter's own counters, that the retry path was
// taken exactly as the script saw it. The limits and windows below are repeated as LIMIT and
// WINDOW at the top of each script.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Far above what a script needs (about 5 s of waiting plus SDK import time).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A temporary directory holding the script's HOME, working directory and output; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("idp-rl-sdk-{name}-{}-{nanos}", std::process::id()));
        for sub in ["home", "work", "tmp"] {
            fs::create_dir_all(dir.join(sub)).expect("create scratch dir");
        }
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `tests/sdk/<script> <port>` in a clean environment (only the variables set here, a
/// fresh HOME and working directory, so no okta.yaml or OKTA_CLIENT_* can leak in) and panics
/// with its output unless it exits 0. Envoy's log tail follows from `Envoy`'s drop.
fn run_sdk_script(envoy: &Envoy, script: &str, env: &[(&str, &str)]) {
    run_sdk_script_on(envoy.port(), script, env)
}

/// The same, against the listener on `port`.
fn run_sdk_script_on(port: u16, script: &str, env: &[(&str, &str)]) {
    let python = crate_path(".venv/bin/python");
    let path = crate_path("tests/sdk").join(script);
    assert!(
        python.exists(),
        "no {}: run `make e2e` (it creates the venv and installs tests/sdk/requirements.txt)",
        python.display()
    );
    let scratch = Scratch::new(script.trim_end_matches(".py"));
    let out_path = scratch.0.join("output.txt");
    let out = File::create(&out_path).expect("create output file");
    let mut cmd = Command::new(&python);
    cmd.arg(&path)
        .arg(port.to_string())
        .env_clear()
        .env("HOME", scratch.0.join("home"))
        .env("TMPDIR", scratch.0.join("tmp"))
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied())
        .current_dir(scratch.0.join("work"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone output file"))
        .stderr(out);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} {}: {e}", python.display(), path.display()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the SDK script") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let output = fs::read_to_string(&out_path).unwrap_or_default();
    let hint = if output.contains("ModuleNotFoundError") {
        "\n(SDK missing from .venv? `make e2e` installs tests/sdk/requirements.txt)"
    } else {
        ""
    };
    match status {
        Some(s) if s.success() => println!("--- {script} passed in {elapsed:.1?} ---\n{output}"),
        Some(s) => panic!("{script} failed ({s}) after {elapsed:.1?}:\n{output}{hint}"),
        None => panic!("{script} still running after {SCRIPT_TIMEOUT:?}, killed:\n{output}{hint}"),
    }
}

#[test]
fn okta_sdk_waits_for_the_reset_and_retries() {
    // Fixed window of 4 per 3 s, opened by the script's first call; the SDK's one API token
    // may use half of it (Okta's default per-principal share), so it meets its 429 after 2.
    let bucket = "okta.management.users.principal";
    let envoy = Envoy::start(
        r#"{"vendor": "okta", "plan": "enterprise",
            "overrides": [{"bucket": "okta.management.users", "limit": 4, "window": 3}]}"#,
    );
    run_sdk_script(
        &envoy,
        "okta_sdk.py",
        &[("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", "true")],
    );
    // Admitted: the 2 calls that filled the window and the retry. Refused: the call made with
    // maxRetries 0 and the retrying call's first attempt. Any extra attempt shows here.
    assert_eq!(envoy.counter(&format!("{bucket}.admitted")), 3);
    assert_eq!(envoy.counter(&format!("{bucket}.rejected")), 2);
    // The org's bucket admitted the same 3 and refused none.
    assert_eq!(envoy.counter("okta.management.users.admitted"), 3);
    assert_eq!(envoy.counter("okta.management.users.rejected"), 0);
}

#[test]
fn okta_sdk_recognises_the_concurrency_429() {
    // One place in flight per org; the script holds it with one slow request.
    let (envoy, port) = slow_listener::start(
        r#"{"vendor": "okta", "plan": "enterprise", "stat_prefix": "slow",
            "overrides": [{"bucket": "okta.concurrency", "limit": 1}]}"#,
        2,
    );
    run_sdk_script_on(
        port,
        "okta_sdk.py",
        &[
            ("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", "true"),
            ("OKTA_SDK_MODE", "concurrency"),
        ],
    );
    let counter = |what: &str| {
        envoy
            .stat(&format!("slow.okta.concurrency.{what}"))
            .unwrap_or_else(|| panic!("no concurrency counter {what}"))
    };
    // Admitted: the held request and the retry. Refused: the no-retry call and the retrying
    // call's first attempt.
    assert_eq!(counter("admitted"), 2);
    assert_eq!(counter("rejected"), 2);
}

#[test]
fn auth0_sdk_honours_retry_after() {
    // Token bucket: a burst of 2, then one token every 2 s.
    let bucket = "auth0.self-service.read-users.per-second";
    let envoy = Envoy::start(&format!(
        r#"{{"vendor": "auth0", "plan": "free",
            "overrides": [{{"bucket": "{bucket}", "limit": 2, "window": 4}}]}}"#
    ));
    run_sdk_script(&envoy, "auth0_sdk.py", &[]);
    assert_eq!(envoy.counter(&format!("{bucket}.admitted")), 3);
    assert_eq!(envoy.counter(&format!("{bucket}.rejected")), 2);
    // The 429s were this bucket's, not the tenant-wide limit's.
    for tenant in ["auth0.tenant.per-second", "auth0.tenant.per-minute"] {
        assert_eq!(envoy.counter(&format!("{tenant}.rejected")), 0, "{tenant}");
    }
}

#[test]
fn onelogin_sdk_does_not_retry_without_retry_after_as_against_onelogin() {
    // Fixed window of 2 per 3 s over every /api/ and /auth/ call.
    let bucket = "onelogin.account";
    let envoy = Envoy::start(&format!(
        r#"{{"vendor": "onelogin",
            "overrides": [{{"bucket": "{bucket}", "limit": 2, "window": 3}}]}}"#
    ));
    run_sdk_script(&envoy, "onelogin_sdk.py", &[("ONELOGIN_RETRY_AFTER", "0")]);
    // 2 to fill the window, 1 after it; refused: the no-retry call and the default call, each
    // once (urllib3 did not retry).
    assert_eq!(envoy.counter(&format!("{bucket}.admitted")), 3);
    assert_eq!(envoy.counter(&format!("{bucket}.rejected")), 2);
}

#[test]
fn onelogin_sdk_retries_through_urllib3_when_retry_after_is_on() {
    let bucket = "onelogin.account";
    let envoy = Envoy::start(&format!(
        r#"{{"vendor": "onelogin", "retry_after": true,
            "overrides": [{{"bucket": "{bucket}", "limit": 2, "window": 3}}]}}"#
    ));
    run_sdk_script(&envoy, "onelogin_sdk.py", &[("ONELOGIN_RETRY_AFTER", "1")]);
    // The script's last call, GET /auth/rate_limit, is answered by the filter and not counted.
    assert_eq!(envoy.counter(&format!("{bucket}.admitted")), 3);
    assert_eq!(envoy.counter(&format!("{bucket}.rejected")), 2);
}
