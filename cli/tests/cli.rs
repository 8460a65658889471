//! The built `idp-ratelimit` binary, run as an operator runs it: every
//! shipped manifest and README example checks clean, refusals carry the
//! filter's own words and say where they came from, exit codes are 0/1/2,
//! and `explain` and `routes` print exactly the golden files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the binary from the repository root: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_idp-ratelimit"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run idp-ratelimit");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

/// The filter's own refusal text for `json` (what on_configure logs).
fn filter_refusal(json: &str) -> String {
    match idp_ratelimit::configure::configure(json.as_bytes(), "t/") {
        Ok(_) => panic!("{json} should be refused"),
        Err(e) => format!("configuration refused: {e}"),
    }
}

#[test]
fn every_shipped_manifest_checks_clean() {
    let mut files = vec!["envoy/envoy.yaml".to_string()];
    for entry in std::fs::read_dir(repo().join("envoy/istio")).expect("envoy/istio") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("name");
        if name.ends_with(".yaml") {
            files.push(format!("envoy/istio/{name}"));
        }
    }
    assert!(files.len() >= 4, "{files:?}");
    for file in &files {
        let (code, out, err) = run(&["check", file]);
        assert_eq!((code, err.as_str()), (0, ""), "{file}: {out}");
        assert!(out.starts_with(&format!("{file}: document 1, ")), "{out}");
        assert!(out.contains(": ok: "), "{out}");
    }
}

/// The JSON code blocks of the README: each is a plugin configuration.
fn readme_json_examples() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in readme.lines() {
        match (&mut block, line.trim_end()) {
            (None, "```json") => block = Some(String::new()),
            (Some(b), "```") => {
                out.push(std::mem::take(b));
                block = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_readme_json_example_checks_clean() {
    let examples = readme_json_examples();
    assert!(examples.len() >= 4, "{examples:?}");
    for json in &examples {
        let (code, out, err) = run(&["check", json]);
        assert_eq!((code, err.as_str()), (0, ""), "{json}");
        assert!(out.starts_with("(argument): ok: "), "{out}");
    }
}

#[test]
fn a_refused_file_gets_the_filters_error_and_exit_1() {
    let file = "cli/tests/data/bad-plan.json";
    let (code, out, err) = run(&["check", file]);
    let want = filter_refusal(r#"{"vendor": "okta", "plan": "gold"}"#);
    assert_eq!(
        (code, out.as_str(), err),
        (1, "", format!("{file}: {want}\n"))
    );
}

/// `check` names the Auth0 edition when it is not the default, and refuses
/// an edition without tables for the plan in the filter's own words.
#[test]
fn check_names_the_auth0_edition() {
    let (code, out, err) = run(&[
        "check",
        r#"{"vendor": "auth0", "plan": "free", "edition": "2026"}"#,
    ]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(
        out.starts_with("(argument): ok: auth0/free, edition 2026 (enforce), 11 buckets"),
        "{out}"
    );
    let (_, out, _) = run(&[
        "check",
        r#"{"vendor": "auth0", "plan": "free", "edition": "2020"}"#,
    ]);
    assert!(
        out.starts_with("(argument): ok: auth0/free (enforce), 25 buckets"),
        "{out}"
    );
    let legacy = r#"{"vendor": "auth0", "plan": "developer-legacy", "edition": "2026"}"#;
    let (code, out, err) = run(&["check", legacy]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, format!("(argument): {}\n", filter_refusal(legacy)));
    assert!(err.contains("field `edition`"), "{err}");
}

#[test]
fn yaml_refusals_name_the_document_and_the_plugin() {
    let file = "cli/tests/data/mixed.yaml";
    let (code, out, err) = run(&["check", file]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        format!(
            "{file}: document 2, WasmPlugin good: ok: auth0/enterprise-prod (enforce), \
             16 buckets, at most 4113 shared-data keys\n"
        )
    );
    let want = filter_refusal(r#"{"vendor": "okta", "plan": "enterprise", "headroom_percnt": 90}"#);
    assert_eq!(
        err,
        format!("{file}: document 3, WasmPlugin typo: {want}\n")
    );
    // One bad file among good ones still fails the run.
    let (code, _, _) = run(&["check", "envoy/envoy.yaml", file]);
    assert_eq!(code, 1);
}

#[test]
fn envoy_refusals_name_the_filter_and_the_plugin() {
    let file = "cli/tests/data/envoy-two-filters.yaml";
    let (code, out, err) = run(&["check", file]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with(&format!(
            "{file}: document 1, Envoy filter okta_guard, plugin okta: ok: okta/enterprise"
        )),
        "{out}"
    );
    let want = filter_refusal(
        "{\"vendor\": \"auth0\", \"plan\": \"enterprise-prod\",\n \
         \"overrides\": [{\"bucket\": \"auth0.endpoint.user\", \"limit\": 10}]}\n",
    );
    assert!(want.contains("overrides[0].bucket"), "{want}");
    assert_eq!(
        err,
        format!("{file}: document 1, Envoy filter auth0_guard, plugin auth0: {want}\n")
    );
    // `explain` and `routes` pick one with --plugin (filter or plugin name).
    let (code, out, _) = run(&[
        "explain",
        file,
        "--plugin",
        "okta_guard",
        "GET",
        "/api/v1/users",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("okta.management.users"), "{out}");
}

#[test]
fn usage_errors_and_unreadable_files_exit_2() {
    assert_eq!(run(&["check"]).0, 2);
    assert_eq!(run(&["frobnicate"]).0, 2);
    assert_eq!(run(&["explain", "envoy/envoy.yaml"]).0, 2);
    let (code, _, err) = run(&["check", "no/such/file.json"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("no/such/file.json: "), "{err}");
    // Several plugins and no --plugin: the caller must choose.
    let (code, _, err) = run(&["routes", "cli/tests/data/mixed.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--plugin"), "{err}");
    let (code, _, _) = run(&["routes", "cli/tests/data/mixed.yaml", "--plugin", "good"]);
    assert_eq!(code, 0);
}

#[test]
fn explain_and_routes_refuse_what_check_refuses() {
    let want = filter_refusal(r#"{"vendor": "okta", "plan": "gold"}"#);
    for args in [
        &["explain", "cli/tests/data/bad-plan.json", "GET", "/"][..],
        &["routes", "cli/tests/data/bad-plan.json"][..],
    ] {
        let (code, out, err) = run(args);
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}");
        assert_eq!(err, format!("idp-ratelimit: {want}\n"), "{args:?}");
    }
}

/// Compares `args`' output with `cli/tests/golden/<name>` byte for byte;
/// `IDP_RL_BLESS=1` rewrites the file instead.
fn golden(name: &str, args: &[&str]) {
    let (code, out, err) = run(args);
    assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("IDP_RL_BLESS").is_some() {
        std::fs::write(&path, &out).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        out == want,
        "{args:?} differs from {}:\n--- got\n{out}\n--- want\n{want}",
        path.display()
    );
}

const OKTA_90: &str = r#"{"vendor": "okta", "plan": "one-app", "headroom_percent": 90}"#;

#[test]
fn explain_matches_its_golden_output() {
    golden(
        "explain-okta-patch-user.txt",
        &["explain", OKTA_90, "PATCH", "/api/v1/users/00u1?x=1"],
    );
    golden(
        "explain-okta-patch-user.json",
        &[
            "explain",
            OKTA_90,
            "PATCH",
            "/api/v1/users/00u1?x=1",
            "--json",
        ],
    );
    golden(
        "explain-okta-get-user-escaped.txt",
        &["explain", OKTA_90, "GET", "//api/v1/%75sers/./00u1/"],
    );
    golden(
        "explain-okta-exempt.txt",
        &["explain", OKTA_90, "GET", "/oauth2/default/v1/keys"],
    );
    golden(
        "explain-okta-not-limited.txt",
        &["explain", OKTA_90, "GET", "/healthz"],
    );
    golden(
        "explain-auth0-spa.txt",
        &[
            "explain",
            "envoy/istio/wasmplugin-auth0.yaml",
            "GET",
            "/api/v2/users",
            // {"sub": "u1", "scope": "read:current_user"}, unsigned.
            "-H",
            "authorization: Bearer e30.eyJzdWIiOiJ1MSIsInNjb3BlIjoicmVhZDpjdXJyZW50X3VzZXIifQ.x",
        ],
    );
    golden(
        "explain-auth0-2026-organizations.txt",
        &[
            "explain",
            r#"{"vendor": "auth0", "plan": "enterprise-prod", "edition": "2026"}"#,
            "POST",
            "/api/v2/organizations",
        ],
    );
    golden(
        "explain-onelogin-shadow.txt",
        &[
            "explain",
            "envoy/istio/wasmplugin-onelogin-egress.yaml",
            "DELETE",
            "/api/2/users/7",
        ],
    );
    // "upstream": "vendor": learned limits, the vendor's headers, its own status endpoint.
    golden(
        "explain-okta-vendor.txt",
        &[
            "explain",
            r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor"}"#,
            "GET",
            "/api/v1/users",
        ],
    );
    golden(
        "explain-onelogin-status-vendor.txt",
        &[
            "explain",
            r#"{"vendor": "onelogin", "upstream": "vendor"}"#,
            "GET",
            "/auth/rate_limit",
        ],
    );
    golden(
        "explain-onelogin-status.json",
        &[
            "explain",
            "envoy/istio/wasmplugin-onelogin-egress.yaml",
            "GET",
            "/auth/rate_limit",
            "--json",
        ],
    );
}

#[test]
fn routes_matches_its_golden_output() {
    let overrides = r#"{"vendor": "okta", "plan": "enterprise",
        "overrides": [{"bucket": "okta.management.users", "limit": 2000},
                      {"route": "/api/v1/users", "methods": ["GET"], "limit": 5, "window": "second"}]}"#;
    golden("routes-okta-overrides.txt", &["routes", overrides]);
    golden(
        "routes-okta-overrides.json",
        &["routes", overrides, "--json"],
    );
    golden(
        "routes-envoy-yaml.md",
        &["routes", "envoy/envoy.yaml", "--markdown"],
    );
    // Auth0's current tables (edition 2026): the edition in the title, and
    // a burst refilled at its own rate read as both.
    golden(
        "routes-auth0-2026-free.txt",
        &[
            "routes",
            r#"{"vendor": "auth0", "plan": "free", "edition": "2026"}"#,
        ],
    );
    golden(
        "routes-custom.txt",
        &[
            "routes",
            r#"{"vendor": "custom", "routes": [{"route": "/v1/things/*", "limit": 100, "window": "minute"},
                {"route": "/v1/things/{id}", "methods": ["DELETE"], "limit": 5, "window": 90}]}"#,
        ],
    );
}

/// Splits a README marker's arguments: words, or '…' quoted.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (word, tail) = match rest.strip_prefix('\'') {
            Some(q) => q.split_once('\'').expect("closing quote"),
            None => rest.split_once(' ').unwrap_or((rest, "")),
        };
        out.push(word.to_string());
        rest = tail.trim_start();
    }
    out
}

const MARK: &str = "<!-- generated by: idp-ratelimit ";
const END: &str = "<!-- end of generated table -->";

/// The README's route tables are `routes` output: each block between a
/// `generated by` marker and the end marker is what the marker's command
/// prints. `IDP_RL_BLESS=1` regenerates them.
#[test]
fn readme_route_tables_are_routes_output() {
    let path = repo().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README");
    let mut rebuilt = String::new();
    let mut rest = readme.as_str();
    let mut blocks = 0;
    while let Some(start) = rest.find(MARK) {
        let (before, from) = rest.split_at(start);
        rebuilt.push_str(before);
        let (marker, after) = from.split_once(" -->\n").expect("marker end");
        let (block, tail) = after.split_once(END).expect("end marker");
        let args = words(&marker[MARK.len()..]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = run(&args);
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
        assert!(
            block == out || std::env::var_os("IDP_RL_BLESS").is_some(),
            "README table for {args:?} differs from the tool's output \
             (IDP_RL_BLESS=1 regenerates it):\n--- README\n{block}\n--- routes\n{out}"
        );
        rebuilt.push_str(marker);
        rebuilt.push_str(" -->\n");
        rebuilt.push_str(&out);
        rebuilt.push_str(END);
        rest = tail;
        blocks += 1;
    }
    rebuilt.push_str(rest);
    assert!(blocks >= 4, "the README should hold the vendors' tables");
    if std::env::var_os("IDP_RL_BLESS").is_some() && rebuilt != readme {
        std::fs::write(&path, rebuilt).expect("write README");
    }
}

#[test]
fn rls_config_matches_its_golden_output() {
    let onelogin = r#"{"vendor": "onelogin", "fleet": {"cluster": "ratelimit"}}"#;
    golden(
        "rls-config-onelogin-envoy-ratelimit.yaml",
        &["rls-config", onelogin, "--server", "envoy-ratelimit"],
    );
    golden(
        "rls-config-onelogin-limitador.yaml",
        &["rls-config", onelogin, "--server", "limitador"],
    );
    golden(
        "rls-config-auth0-shadow.yaml",
        &[
            "rls-config",
            r#"{"vendor": "auth0", "plan": "free", "mode": "shadow"}"#,
        ],
    );
    // From a manifest, as `check` reads it: the Istio fleet example.
    let (code, out, err) = run(&["rls-config", "envoy/istio/fleet/okta-fleet.yaml"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.contains("\ndomain: \"idp_ratelimit\"\n"), "{out}");
    assert!(out.contains("value: \"okta.management.users\""), "{out}");
    // The same text the library generates (what the end-to-end fixture reads).
    let bytes = br#"{"vendor": "onelogin", "fleet": {"cluster": "ratelimit"}}"#;
    let lib = idp_ratelimit::rls::generate::from_plugin_config(
        bytes,
        idp_ratelimit::rls::config::Server::EnvoyRatelimit,
    )
    .unwrap();
    assert_eq!(
        run(&["rls-config", onelogin]).1,
        lib.yaml,
        "default server is envoy-ratelimit"
    );
}

#[test]
fn rls_config_refuses_what_the_filter_refuses() {
    let bad = r#"{"vendor": "okta", "plan": "enterprise", "fleet": {"cluster": "r", "on_failure": "maybe"}}"#;
    let (code, out, err) = run(&["rls-config", bad]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, format!("idp-ratelimit: {}\n", filter_refusal(bad)));
    let (code, _, err) = run(&[
        "rls-config",
        "{\"vendor\": \"onelogin\"}",
        "--server",
        "redis",
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn the_istio_fleet_example_checks_clean() {
    let file = "envoy/istio/fleet/okta-fleet.yaml";
    let (code, out, err) = run(&["check", file]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(
        out.contains("WasmPlugin idp-ratelimit-okta-fleet: ok: okta/enterprise"),
        "{out}"
    );
}

/// The `xds_matcher` under `value` (a YAML document), wherever it is.
fn find_xds_matcher(value: &serde_json::Value) -> Option<&serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map
            .get("xds_matcher")
            .or_else(|| map.values().find_map(find_xds_matcher)),
        serde_json::Value::Array(items) => items.iter().find_map(find_xds_matcher),
        _ => None,
    }
}

fn yaml(text: &str) -> serde_json::Value {
    serde_norway::from_str(text).expect("YAML")
}

#[test]
fn the_shipped_envoy_yaml_carries_the_guard_of_its_configuration() {
    let (code, out, err) = run(&["guard", "envoy/envoy.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("none of: /.well-known /api /login /oauth2"),
        "{out}"
    );
    let shipped = std::fs::read_to_string(repo().join("envoy/envoy.yaml")).unwrap();
    assert_eq!(
        find_xds_matcher(&yaml(&shipped)),
        find_xds_matcher(&yaml(&out)),
        "envoy/envoy.yaml's matcher is not `idp-ratelimit guard envoy/envoy.yaml`: regenerate it"
    );
}

#[test]
fn guard_refuses_routes_open_in_their_first_segment_and_bad_configurations() {
    let open =
        r#"{"vendor":"custom","routes":[{"route":"/{tenant}/x","limit":5,"window":"minute"}]}"#;
    let (code, out, err) = run(&["guard", open]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains(r#"route "/{tenant}/x" can match any first path segment"#),
        "{err}"
    );
    let bad = r#"{"vendor":"okta","plan":"nope"}"#;
    let (code, _, err) = run(&["guard", bad]);
    assert_eq!(code, 1);
    assert!(err.contains(&filter_refusal(bad)), "{err}");
}
