//! The plugin configuration (Envoy's `configuration` StringValue, Istio's
//! `pluginConfig`): parsed and checked once at configure time. Every error
//! names the field (as a path, e.g. `overrides[2].limit`) and what is accepted.
//!
//! `fields` reads JSON values with those errors; `options` applies the
//! operator's options to the vendor's policy; this module ties them together.

mod fields;
mod options;

use serde_json::Value;

use crate::catalog::{auth0, okta, onelogin};
use crate::policy::{Mode, PolicySpec};
use crate::response::{Dialect, HeaderStyle};
use fields::{err, integer, is_stat_prefix, one_of, plan, string_list};

/// A configuration error: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.problem)
    }
}

/// Where the upstream's rate-limit answers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// The upstream is not the vendor (or is not trusted): the filter's own
    /// count is the only truth, and its headers replace any upstream's.
    Emulate,
    /// The upstream is the vendor itself: its rate-limit headers and 429s pass
    /// through, and the filter learns the org's true quota from them.
    Vendor,
}

pub const DEFAULT_MAX_KEYS: u32 = 16_384;
pub const DEFAULT_STAT_PREFIX: &str = "idp_ratelimit";
const MIN_MAX_KEYS: u64 = 64;
const MAX_MAX_KEYS: u64 = 4_194_304;

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub vendor: String,
    pub plan: String,
    /// Auth0: which Management API tables the policy was built from.
    pub edition: Option<auth0::Edition>,
    pub dialect: Dialect,
    pub mode: Mode,
    pub headers: HeaderStyle,
    /// Slot-table capacity: at most this many bucket keys live at once.
    pub max_keys: u32,
    /// Names this instance's stats: `<stat_prefix>.<bucket id>.admitted`.
    pub stat_prefix: String,
    /// Add `x-idp-ratelimit-bucket` to counted responses (test environments).
    pub debug_headers: bool,
    /// Publish and log the raw scope key (a client IP, a header value)
    /// rather than its kind.
    pub log_scope_keys: bool,
    /// Publish each counted request's access-log line as filter state
    /// (`true` unless turned off: one host call a counted request).
    pub access_log: bool,
    /// OneLogin dialect: add `Retry-After` to 429s (OneLogin documents none).
    pub retry_after: bool,
    pub upstream: Upstream,
    /// `headroom_percent` (100 when not given): the share of a vendor-reported
    /// limit the filter may spend.
    pub headroom_percent: u64,
    /// Each bucket's limit as the table (and overrides) give it, before
    /// `headroom_percent`: what a vendor-reported limit is compared with.
    pub published_limits: Vec<u64>,
    pub policy: PolicySpec,
    /// Fleet mode: count through a rate-limit service (`None`: this Envoy only).
    pub fleet: Option<crate::rls::config::Fleet>,
}

/// Every top-level field the configuration accepts: the parser refuses any
/// other, and `tests/properties.rs` generates from this list, so a new field
/// is added here once and fuzzed from the day it exists.
pub const FIELDS: &[&str] = &[
    "vendor",
    "plan",
    "catalogs",
    "edition",
    "import_job_hold_seconds",
    "scope",
    "bucket_scopes",
    "headroom_percent",
    "mode",
    "overrides",
    "routes",
    "headers",
    "dialect",
    "max_keys",
    "stat_prefix",
    "debug_headers",
    "log_scope_keys",
    "access_log",
    "fleet",
    "retry_after",
    "client_limits",
    "principal_share_percent",
    "upstream",
];
const VENDORS: [&str; 4] = ["okta", "auth0", "onelogin", "custom"];

/// Parses and checks the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return err("(document)", format!("not valid JSON: {e}")),
    };
    let Value::Object(obj) = value else {
        return err(
            "(document)",
            "must be a JSON object such as {\"vendor\": \"okta\", \"plan\": \"enterprise\"}",
        );
    };
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            // An empty name is shown quoted, so the log line still names it.
            let name = if key.is_empty() { "\"\"" } else { key.as_str() };
            return err(
                name,
                format!("unknown field; accepted fields: {}", FIELDS.join(", ")),
            );
        }
    }
    let vendor = match obj.get("vendor") {
        None => return err("vendor", format!("missing; one of: {}", VENDORS.join(", "))),
        Some(v) => one_of(v, "vendor", &VENDORS)?,
    };
    let only_for = |field: &str, vendors: &[&str]| -> Result<(), ConfigError> {
        if obj.contains_key(field) && !vendors.contains(&vendor) {
            return err(
                field,
                format!("only applies to vendor {}", vendors.join(" or ")),
            );
        }
        Ok(())
    };
    only_for("catalogs", &["okta", "auth0"])?;
    only_for("import_job_hold_seconds", &["auth0"])?;
    only_for("edition", &["auth0"])?;
    only_for("routes", &["custom"])?;
    only_for("dialect", &["custom"])?;
    only_for("retry_after", &["onelogin", "custom"])?;
    only_for("client_limits", &["okta"])?;
    only_for("principal_share_percent", &["okta"])?;

    let mut auth0_edition = None;
    let (plan, mut policy, dialect) = match vendor {
        "okta" => {
            let plan = plan(
                &obj,
                &okta::PLANS,
                &["developer-free"],
                okta::canonical_plan,
            )?;
            let catalogs = match obj.get("catalogs") {
                None => okta::CATALOGS.iter().map(|c| c.to_string()).collect(),
                Some(v) => string_list(v, "catalogs", Some(&okta::CATALOGS))?,
            };
            if catalogs.is_empty() {
                return err(
                    "catalogs",
                    format!("must name at least one of: {}", okta::CATALOGS.join(", ")),
                );
            }
            let client_limits = match obj.get("client_limits") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(v) => return err("client_limits", format!("must be true or false, got {v}")),
            };
            (
                plan,
                okta::policy(plan, &catalogs, client_limits),
                Dialect::Okta,
            )
        }
        "auth0" => {
            let plan = plan(&obj, &auth0::PLANS, &["trial"], auth0::canonical_plan)?;
            let hold = match obj.get("import_job_hold_seconds") {
                None => auth0::DEFAULT_IMPORT_JOB_HOLD_SECS,
                Some(v) => integer(v, "import_job_hold_seconds", 1, 86_400)?,
            };
            let catalogs = match obj.get("catalogs") {
                None => vec!["management".to_string()],
                Some(v) => string_list(v, "catalogs", Some(&auth0::CATALOGS))?,
            };
            if catalogs.is_empty() {
                return err(
                    "catalogs",
                    format!("must name at least one of: {}", auth0::CATALOGS.join(", ")),
                );
            }
            let edition = match obj.get("edition") {
                None => auth0::Edition::Seed2020,
                Some(v) => {
                    let name = one_of(v, "edition", &auth0::EDITIONS)?;
                    auth0::Edition::from_name(name).unwrap_or(auth0::Edition::Seed2020)
                }
            };
            if !edition.has_plan(plan) {
                return err(
                    "edition",
                    format!(
                        "edition \"{}\" has no tables for plan {plan} (Auth0's current pages \
                         print none); leave `edition` out for the seed page's ({}) or choose \
                         another plan",
                        edition.name(),
                        auth0::EDITIONS[0]
                    ),
                );
            }
            auth0_edition = Some(edition);
            (
                plan,
                auth0::policy(plan, hold, &catalogs, edition),
                Dialect::Auth0,
            )
        }
        "onelogin" => {
            let plan = match obj.get("plan") {
                None => "default",
                Some(_) => plan(&obj, &onelogin::PLANS, &[], onelogin::canonical_plan)?,
            };
            (plan, onelogin::policy(), Dialect::OneLogin)
        }
        _ => {
            if obj.contains_key("plan") {
                return err(
                    "plan",
                    "a custom vendor has no plans; give `routes` instead",
                );
            }
            let dialect = match obj.get("dialect") {
                None => Dialect::Auth0,
                Some(v) => match one_of(v, "dialect", &["okta", "auth0", "onelogin"])? {
                    "okta" => Dialect::Okta,
                    "onelogin" => Dialect::OneLogin,
                    _ => Dialect::Auth0,
                },
            };
            let Some(routes) = obj.get("routes") else {
                return err(
                    "routes",
                    "missing: a custom vendor needs at least one route",
                );
            };
            let mut spec = PolicySpec::default();
            options::add_limit_routes(
                &mut spec,
                routes,
                "routes",
                options::default_algorithm(vendor),
            )?;
            if spec.routes.is_empty() {
                return err("routes", "must hold at least one route");
            }
            ("custom", spec, dialect)
        }
    };

    let mut applied = options::apply(&mut policy, &obj, vendor)?;
    if vendor == "okta" {
        let share = match obj.get("principal_share_percent") {
            None => okta::DEFAULT_PRINCIPAL_SHARE_PERCENT,
            Some(v) => integer(v, "principal_share_percent", 1, 100)?,
        };
        if share < 100 {
            okta::add_principal_share(&mut policy, share);
            // The per-principal buckets come last; their limit is their table figure.
            let known = applied.published_limits.len();
            let added = policy.buckets.iter().skip(known).map(|b| b.limit.limit);
            applied.published_limits.extend(added);
        }
    }
    let mode = match obj.get("mode") {
        None => Mode::Enforce,
        Some(v) => match one_of(v, "mode", &["enforce", "shadow"])? {
            "shadow" => Mode::Shadow,
            _ => Mode::Enforce,
        },
    };
    let headers = match obj.get("headers") {
        None => HeaderStyle::Vendor,
        Some(v) => match one_of(v, "headers", &["vendor", "ietf", "both", "none"])? {
            "ietf" => HeaderStyle::Ietf,
            "both" => HeaderStyle::Both,
            "none" => HeaderStyle::None,
            _ => HeaderStyle::Vendor,
        },
    };
    let max_keys = match obj.get("max_keys") {
        None => DEFAULT_MAX_KEYS,
        Some(v) => integer(v, "max_keys", MIN_MAX_KEYS, MAX_MAX_KEYS)? as u32,
    };
    let stat_prefix = match obj.get("stat_prefix") {
        None => DEFAULT_STAT_PREFIX.to_string(),
        Some(Value::String(p)) if is_stat_prefix(p) => p.clone(),
        Some(v) => {
            return err(
                "stat_prefix",
                format!("must be 1-64 of a-z, 0-9, '_' (as Envoy stat names), got {v}"),
            )
        }
    };
    let flag_or = |field: &str, default: bool| match obj.get(field) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => err(field, format!("must be true or false, got {v}")),
    };
    let fleet = match obj.get("fleet") {
        None => None,
        Some(v) => Some(crate::rls::config::parse_fleet(v)?),
    };
    let retry_after = match obj.get("retry_after") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return err("retry_after", format!("must be true or false, got {v}")),
    };
    let upstream = match obj.get("upstream") {
        None => Upstream::Emulate,
        Some(v) => match one_of(v, "upstream", &["emulate", "vendor"])? {
            "vendor" => Upstream::Vendor,
            _ => Upstream::Emulate,
        },
    };
    Ok(Config {
        retry_after,
        upstream,
        headroom_percent: applied.headroom_percent,
        published_limits: applied.published_limits,
        vendor: vendor.to_string(),
        plan: plan.to_string(),
        edition: auth0_edition,
        dialect,
        mode,
        headers,
        max_keys,
        stat_prefix,
        debug_headers: flag_or("debug_headers", false)?,
        log_scope_keys: flag_or("log_scope_keys", false)?,
        access_log: flag_or("access_log", true)?,
        policy,
        fleet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::{Algorithm, MICROS_PER_SEC};
    use crate::policy::Scope;

    fn parse_str(s: &str) -> Result<Config, ConfigError> {
        parse(s.as_bytes())
    }

    fn field_of(s: &str) -> String {
        parse_str(s)
            .err()
            .map(|e| e.field)
            .unwrap_or_else(|| panic!("{s} should be refused"))
    }

    #[test]
    fn minimal_okta_config() {
        let c = parse_str(r#"{"vendor": "okta", "plan": "enterprise"}"#).unwrap();
        assert_eq!(c.plan, "enterprise");
        assert_eq!(c.dialect, Dialect::Okta);
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.headers, HeaderStyle::Vendor);
        assert_eq!(c.max_keys, DEFAULT_MAX_KEYS);
        assert_eq!(c.stat_prefix, "idp_ratelimit");
        assert!(!c.debug_headers && !c.log_scope_keys && c.access_log);
        let c = parse_str(
            r#"{"vendor": "okta", "plan": "enterprise", "debug_headers": true, "log_scope_keys": true, "access_log": false}"#,
        )
        .unwrap();
        assert!(c.debug_headers && c.log_scope_keys && !c.access_log);
        assert_eq!(c.upstream, Upstream::Emulate);
        assert_eq!(c.headroom_percent, 100);
        let c =
            parse_str(r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor"}"#).unwrap();
        assert_eq!(c.upstream, Upstream::Vendor);
        let c =
            parse_str(r#"{"vendor": "okta", "plan": "enterprise", "stat_prefix": "okta_egress"}"#)
                .unwrap();
        assert_eq!(c.stat_prefix, "okta_egress");
        // Both tables' rows, the concurrency limit, the client-based limits
        // (2 endpoints x per minute and in flight), each management row's
        // per-principal share.
        assert_eq!(c.policy.buckets.len(), 14 + 7 + 1 + 4 + 14);
        let c =
            parse_str(r#"{"vendor": "okta", "plan": "developer-free", "catalogs": ["end-user"]}"#)
                .unwrap();
        assert_eq!(c.plan, "integrator-free");
        assert_eq!(c.policy.buckets.len(), 7 + 1 + 4);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("{", "(document)"),
            ("[]", "(document)"),
            (r#"{"plan": "enterprise"}"#, "vendor"),
            (r#"{"vendor": "ping", "plan": "x"}"#, "vendor"),
            (r#"{"vendor": 7}"#, "vendor"),
            (r#"{"vendor": "okta"}"#, "plan"),
            (r#"{"vendor": "okta", "plan": "gold"}"#, "plan"),
            (r#"{"vendor": "okta", "plan": 5}"#, "plan"),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "plna": 1}"#,
                "plna",
            ),
            (r#"{"": {"": -7}}"#, "\"\""),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "retry_after": true}"#,
                "retry_after",
            ),
            (
                r#"{"vendor": "onelogin", "retry_after": "yes"}"#,
                "retry_after",
            ),
            (
                r#"{"vendor": "onelogin", "catalogs": ["management"]}"#,
                "catalogs",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "principal_share_percent": 0}"#,
                "principal_share_percent",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "client_limits": 1}"#,
                "client_limits",
            ),
            (
                r#"{"vendor": "auth0", "plan": "free", "client_limits": false}"#,
                "client_limits",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "upstream": "okta"}"#,
                "upstream",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "upstream": true}"#,
                "upstream",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "stat_prefix": "Bad.Prefix"}"#,
                "stat_prefix",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "stat_prefix": ""}"#,
                "stat_prefix",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "debug_headers": "yes"}"#,
                "debug_headers",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "log_scope_keys": 1}"#,
                "log_scope_keys",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "access_log": "off"}"#,
                "access_log",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "catalogs": ["admin"]}"#,
                "catalogs[0]",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "catalogs": []}"#,
                "catalogs",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "catalogs": "management"}"#,
                "catalogs",
            ),
            (
                r#"{"vendor": "auth0", "plan": "enterprise-prod", "catalogs": ["end-user"]}"#,
                "catalogs[0]",
            ),
            (
                r#"{"vendor": "auth0", "plan": "enterprise-prod", "import_job_hold_seconds": 0}"#,
                "import_job_hold_seconds",
            ),
            (r#"{"vendor": "onelogin", "plan": "pro"}"#, "plan"),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "scope": "ip"}"#,
                "scope",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "scope": {"header": ""}}"#,
                "scope.header",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "headroom_percent": 0}"#,
                "headroom_percent",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "headroom_percent": 101}"#,
                "headroom_percent",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "mode": "dry-run"}"#,
                "mode",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "headers": "all"}"#,
                "headers",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "max_keys": 10}"#,
                "max_keys",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "bucket_scopes": {"nope": "global"}}"#,
                "bucket_scopes.nope",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "overrides": [{"bucket": "nope", "limit": 5}]}"#,
                "overrides[0].bucket",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "overrides": [{"route": "/x", "limit": 5}]}"#,
                "overrides[0].window",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "overrides": [{}, {"route": "x", "limit": 5, "window": 60}]}"#,
                "overrides[0].route",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "overrides": [{"route": "/a", "limit": 1, "window": 1}, {"route": "x", "limit": 5, "window": 60}]}"#,
                "overrides[1].route",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "overrides": [{"route": "/a/{*r}/b", "limit": 5, "window": 60}]}"#,
                "overrides[0].route",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "overrides": [{"route": "/a", "limit": -1, "window": 60}]}"#,
                "overrides[0].limit",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "overrides": [{"route": "/a", "limit": 1, "window": "week"}]}"#,
                "overrides[0].window",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "overrides": [{"route": "/a", "methods": ["FETCH"], "limit": 1, "window": 1}]}"#,
                "overrides[0].methods[0]",
            ),
            (r#"{"vendor": "custom"}"#, "routes"),
            (r#"{"vendor": "custom", "routes": []}"#, "routes"),
            (r#"{"vendor": "custom", "plan": "x", "routes": []}"#, "plan"),
        ];
        for (json, field) in cases {
            assert_eq!(field_of(json), field, "{json}");
        }
        let e = parse_str(r#"{"vendor": "okta", "plan": "gold"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("integrator-free") && e.contains("workforce-identity"),
            "{e}"
        );
    }

    #[test]
    fn operator_options_shape_the_policy() {
        let c = parse_str(
            r#"{"vendor": "okta", "plan": "enterprise", "catalogs": ["management"], "scope": "client_ip",
                "headroom_percent": 50, "mode": "shadow", "headers": "both", "max_keys": 1000,
                "bucket_scopes": {"okta.management.logs": {"header": "X-Team"}},
                "overrides": [{"bucket": "okta.management.users", "limit": 2000},
                              {"route": "/api/v1/users", "methods": ["GET"], "limit": 9, "window": "second"}]}"#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Shadow);
        assert_eq!(c.headers, HeaderStyle::Both);
        assert_eq!(c.max_keys, 1000);
        let b = |id: &str| c.policy.buckets.iter().find(|b| b.id == id).unwrap();
        assert_eq!(
            b("okta.management.users").limit.limit,
            1000,
            "2000 at 50% headroom"
        );
        assert_eq!(b("okta.management.apps").limit.limit, 50);
        assert_eq!(b("okta.management.apps").scope, Scope::ClientIp);
        assert_eq!(
            b("okta.management.logs").scope,
            Scope::Header("x-team".into())
        );
        let o = b("overrides.1");
        assert_eq!((o.limit.limit, o.limit.window_us), (4, MICROS_PER_SEC));
        assert_eq!(o.limit.algorithm, Algorithm::FixedWindow);
    }

    #[test]
    fn headroom_never_rounds_to_zero() {
        let c =
            parse_str(r#"{"vendor": "okta", "plan": "integrator-free", "headroom_percent": 1}"#)
                .unwrap();
        let b = |id: &str| {
            c.policy
                .buckets
                .iter()
                .find(|b| b.id == id)
                .unwrap()
                .limit
                .limit
        };
        assert_eq!(
            b("okta.management.logs"),
            1,
            "20 at 1% rounds down to 0, kept at 1"
        );
        assert_eq!(b("okta.end-user.oauth2-custom-as"), 3, "300 at 1%");
    }

    #[test]
    fn every_vendor_and_plan_compiles() {
        for plan in okta::PLANS.iter().chain(&["developer-free"]) {
            let c = parse_str(&format!(r#"{{"vendor": "okta", "plan": "{plan}"}}"#)).unwrap();
            crate::policy::Policy::compile(c.policy).unwrap();
        }
        for plan in auth0::PLANS.iter().chain(&["trial"]) {
            let c = parse_str(&format!(r#"{{"vendor": "auth0", "plan": "{plan}"}}"#)).unwrap();
            crate::policy::Policy::compile(c.policy).unwrap();
            for catalogs in [
                r#"["authentication"]"#,
                r#"["management", "authentication"]"#,
            ] {
                let c = parse_str(&format!(
                    r#"{{"vendor": "auth0", "plan": "{plan}", "catalogs": {catalogs}}}"#
                ))
                .unwrap();
                crate::policy::Policy::compile(c.policy).unwrap();
            }
        }
        let c = parse_str(r#"{"vendor": "onelogin"}"#).unwrap();
        crate::policy::Policy::compile(c.policy).unwrap();
        let c = parse_str(r#"{"vendor": "custom", "dialect": "okta", "routes": [{"route": "/v1/*", "limit": 5, "window": "minute"}]}"#).unwrap();
        assert_eq!(c.dialect, Dialect::Okta);
        assert_eq!(c.policy.buckets[0].limit.algorithm, Algorithm::TokenBucket);
        crate::policy::Policy::compile(c.policy).unwrap();
    }

    #[test]
    fn auth0_edition_is_checked_and_its_errors_name_it() {
        let refused = |json: &str| parse_str(json).unwrap_err();
        let e = refused(r#"{"vendor": "auth0", "plan": "free", "edition": "2025"}"#);
        assert_eq!(e.field, "edition");
        assert_eq!(e.problem, "unknown value \"2025\"; one of: 2020, 2026");
        let e = refused(r#"{"vendor": "auth0", "plan": "free", "edition": 2026}"#);
        assert_eq!(e.field, "edition");
        assert!(e.problem.contains("must be a string"), "{}", e.problem);
        let e = refused(r#"{"vendor": "okta", "plan": "enterprise", "edition": "2026"}"#);
        assert_eq!(e.field, "edition");
        assert_eq!(e.problem, "only applies to vendor auth0");
        let e = refused(r#"{"vendor": "auth0", "plan": "developer-legacy", "edition": "2026"}"#);
        assert_eq!(e.field, "edition");
        assert!(
            e.problem.contains("no tables for plan developer-legacy"),
            "{}",
            e.problem
        );
        // Another vendor has no edition; Auth0 says which it was built from.
        let okta = parse_str(r#"{"vendor": "okta", "plan": "enterprise"}"#).unwrap();
        assert_eq!(okta.edition, None);
        let c = parse_str(r#"{"vendor": "auth0", "plan": "free", "edition": "2026"}"#).unwrap();
        assert_eq!(c.edition, Some(auth0::Edition::Current2026));
    }

    /// Naming the seed edition changes nothing: the same buckets, limits and
    /// routes as leaving `edition` out.
    #[test]
    fn auth0_seed_edition_is_the_default() {
        for plan in auth0::PLANS {
            let implicit =
                parse_str(&format!(r#"{{"vendor": "auth0", "plan": "{plan}"}}"#)).unwrap();
            let explicit = parse_str(&format!(
                r#"{{"vendor": "auth0", "plan": "{plan}", "edition": "2020"}}"#
            ))
            .unwrap();
            assert_eq!(implicit.edition, Some(auth0::Edition::Seed2020));
            assert_eq!(explicit.edition, implicit.edition);
            assert_eq!(
                format!("{:?}", explicit.policy),
                format!("{:?}", implicit.policy),
                "{plan}"
            );
        }
    }

    #[test]
    fn auth0_2026_edition_compiles_for_every_plan_it_has() {
        for plan in auth0::PLANS
            .iter()
            .filter(|p| **p != "developer-legacy")
            .chain(&["trial"])
        {
            for catalogs in [
                r#"["management"]"#,
                r#"["authentication"]"#,
                r#"["management", "authentication"]"#,
            ] {
                let c = parse_str(&format!(
                    r#"{{"vendor": "auth0", "plan": "{plan}", "edition": "2026", "catalogs": {catalogs}}}"#
                ))
                .unwrap();
                crate::policy::Policy::compile(c.policy).unwrap();
            }
        }
    }
}
