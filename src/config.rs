//! The plugin configuration (Envoy's `configuration` StringValue, Istio's
//! `pluginConfig`): parsed and checked once at configure time. Every error
//! names the field (as a path, e.g. `overrides[2].limit`) and what is accepted.

use serde_json::{Map, Value};

use crate::catalog::{auth0, okta, onelogin};
use crate::limiter::{Algorithm, Limit, MICROS_PER_SEC};
use crate::policy::{Bucket, PolicySpec, Route, Scope, Target};

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

fn err<T>(field: impl Into<String>, problem: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        field: field.into(),
        problem: problem.into(),
    })
}

/// Which vendor's responses (headers, 429 bodies) the filter speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Okta,
    Auth0,
    OneLogin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Shadow,
}

/// Which rate-limit response headers to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderStyle {
    Vendor,
    Ietf,
    Both,
    None,
}

pub const DEFAULT_MAX_KEYS: u32 = 16_384;
pub const DEFAULT_STAT_PREFIX: &str = "idp_ratelimit";

fn is_stat_prefix(p: &str) -> bool {
    (1..=64).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
const MIN_MAX_KEYS: u64 = 64;
const MAX_MAX_KEYS: u64 = 4_194_304;

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub vendor: String,
    pub plan: String,
    pub dialect: Dialect,
    pub mode: Mode,
    pub headers: HeaderStyle,
    /// Slot-table capacity: at most this many bucket keys live at once.
    pub max_keys: u32,
    /// Names this instance's stats: `<stat_prefix>.<bucket id>.admitted`.
    pub stat_prefix: String,
    pub policy: PolicySpec,
}

/// Every top-level field the configuration accepts: the parser refuses any
/// other, and `tests/properties.rs` generates from this list, so a new field
/// is added here once and fuzzed from the day it exists.
pub const FIELDS: &[&str] = &[
    "vendor",
    "plan",
    "catalogs",
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
    only_for("catalogs", &["okta"])?;
    only_for("import_job_hold_seconds", &["auth0"])?;
    only_for("routes", &["custom"])?;
    only_for("dialect", &["custom"])?;

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
            (plan, okta::policy(plan, &catalogs), Dialect::Okta)
        }
        "auth0" => {
            let plan = plan(&obj, &auth0::PLANS, &["trial"], auth0::canonical_plan)?;
            let hold = match obj.get("import_job_hold_seconds") {
                None => auth0::DEFAULT_IMPORT_JOB_HOLD_SECS,
                Some(v) => integer(v, "import_job_hold_seconds", 1, 86_400)?,
            };
            (plan, auth0::policy(plan, hold), Dialect::Auth0)
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
            add_limit_routes(&mut spec, routes, "routes", default_algorithm(vendor))?;
            if spec.routes.is_empty() {
                return err("routes", "must hold at least one route");
            }
            ("custom", spec, dialect)
        }
    };

    let scope = match obj.get("scope") {
        None => Scope::Host,
        Some(v) => parse_scope(v, "scope")?,
    };
    for b in policy.buckets.iter_mut().filter(|b| b.scope == Scope::Host) {
        b.scope = scope.clone();
    }
    if let Some(v) = obj.get("bucket_scopes") {
        let Value::Object(map) = v else {
            return err(
                "bucket_scopes",
                "must be an object of bucket id (or id prefix) to scope",
            );
        };
        for (id, s) in map {
            let field = format!("bucket_scopes.{id}");
            let s = parse_scope(s, &field)?;
            let mut hit = false;
            for b in policy
                .buckets
                .iter_mut()
                .filter(|b| b.id == *id || b.id.starts_with(&format!("{id}.")))
            {
                b.scope = s.clone();
                hit = true;
            }
            if !hit {
                return err(
                    field,
                    format!("no such bucket; buckets: {}", bucket_ids(&policy)),
                );
            }
        }
    }
    if let Some(v) = obj.get("overrides") {
        add_overrides(&mut policy, v, default_algorithm(vendor))?;
    }
    if let Some(v) = obj.get("headroom_percent") {
        let pct = integer(v, "headroom_percent", 1, 100)?;
        for b in policy
            .buckets
            .iter_mut()
            .filter(|b| b.limit.algorithm != Algorithm::Concurrency)
        {
            b.limit.limit = (b.limit.limit * pct / 100).max(1);
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
    Ok(Config {
        vendor: vendor.to_string(),
        plan: plan.to_string(),
        dialect,
        mode,
        headers,
        max_keys,
        stat_prefix,
        policy,
    })
}

fn bucket_ids(policy: &PolicySpec) -> String {
    policy
        .buckets
        .iter()
        .map(|b| b.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn plan(
    obj: &Map<String, Value>,
    plans: &[&'static str],
    aliases: &[&str],
    canonical: fn(&str) -> Option<&'static str>,
) -> Result<&'static str, ConfigError> {
    let accepted = plans
        .iter()
        .chain(aliases)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let Some(v) = obj.get("plan") else {
        return err("plan", format!("missing; one of: {accepted}"));
    };
    let Value::String(s) = v else {
        return err("plan", format!("must be a string, one of: {accepted}"));
    };
    canonical(s).map_or_else(
        || err("plan", format!("unknown plan {s:?}; one of: {accepted}")),
        Ok,
    )
}

fn one_of<'a>(v: &Value, field: &str, accepted: &[&'a str]) -> Result<&'a str, ConfigError> {
    let list = accepted.join(", ");
    let Value::String(s) = v else {
        return err(field, format!("must be a string, one of: {list}"));
    };
    accepted.iter().copied().find(|a| a == s).map_or_else(
        || err(field, format!("unknown value {s:?}; one of: {list}")),
        Ok,
    )
}

fn integer(v: &Value, field: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => err(
            field,
            format!("must be a whole number from {min} to {max}, got {v}"),
        ),
    }
}

fn string_list(
    v: &Value,
    field: &str,
    accepted: Option<&[&str]>,
) -> Result<Vec<String>, ConfigError> {
    let Value::Array(items) = v else {
        return err(field, "must be a list of strings");
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let s = match accepted {
            Some(acc) => one_of(item, &f, acc)?.to_string(),
            None => match item {
                Value::String(s) => s.clone(),
                _ => return err(f, "must be a string"),
            },
        };
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

fn parse_scope(v: &Value, field: &str) -> Result<Scope, ConfigError> {
    const ACCEPTED: &str = "\"host\", \"global\", \"client_ip\" or {\"header\": \"<name>\"}";
    match v {
        Value::String(s) => match s.as_str() {
            "host" => Ok(Scope::Host),
            "global" => Ok(Scope::Global),
            "client_ip" => Ok(Scope::ClientIp),
            _ => err(field, format!("unknown scope {s:?}; one of {ACCEPTED}")),
        },
        Value::Object(m) => match (m.len(), m.get("header")) {
            (1, Some(Value::String(h))) if is_header_name(h) => {
                Ok(Scope::Header(h.to_ascii_lowercase()))
            }
            (1, Some(_)) => err(
                format!("{field}.header"),
                "must be a header name (letters, digits, '-', '_')",
            ),
            _ => err(field, format!("must be {ACCEPTED}")),
        },
        _ => err(field, format!("must be {ACCEPTED}")),
    }
}

fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && !h.starts_with(':')
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

/// `window`: "second", "minute", "hour", "day", or a number of seconds.
fn window(v: &Value, field: &str) -> Result<u64, ConfigError> {
    let secs = match v {
        Value::String(s) => match s.as_str() {
            "second" => 1,
            "minute" => 60,
            "hour" => 3600,
            "day" => 86_400,
            _ => {
                return err(
                    field,
                    format!(
                    "unknown window {s:?}; \"second\", \"minute\", \"hour\", \"day\" or seconds"
                ),
                )
            }
        },
        _ => integer(v, field, 1, 31 * 86_400)?,
    };
    Ok(secs * MICROS_PER_SEC)
}

/// The algorithm of a route an operator adds: the vendor's own (Okta and
/// OneLogin count fixed windows; Auth0, and custom vendors, refill evenly).
fn default_algorithm(vendor: &str) -> Algorithm {
    match vendor {
        "okta" | "onelogin" => Algorithm::FixedWindow,
        _ => Algorithm::TokenBucket,
    }
}

fn algorithm(v: Option<&Value>, field: &str, default: Algorithm) -> Result<Algorithm, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) => Ok(match one_of(v, field, &["fixed_window", "token_bucket"])? {
            "fixed_window" => Algorithm::FixedWindow,
            _ => Algorithm::TokenBucket,
        }),
    }
}

/// `overrides`: entries `{"bucket": id, "limit"?, "window"?}` change an existing
/// bucket; entries `{"route", "methods"?, "limit", "window", "algorithm"?}`
/// add a route that replaces what the catalog routes at that pattern.
fn add_overrides(
    policy: &mut PolicySpec,
    v: &Value,
    default: Algorithm,
) -> Result<(), ConfigError> {
    let Value::Array(items) = v else {
        return err("overrides", "must be a list");
    };
    for (i, item) in items.iter().enumerate() {
        let field = format!("overrides[{i}]");
        let Value::Object(o) = item else {
            return err(field, "must be an object with `bucket` or `route`");
        };
        if let Some(id) = o.get("bucket") {
            for k in o.keys() {
                if !["bucket", "limit", "window"].contains(&k.as_str()) {
                    return err(
                        format!("{field}.{k}"),
                        "unknown field; a bucket override takes bucket, limit, window",
                    );
                }
            }
            let Value::String(id) = id else {
                return err(format!("{field}.bucket"), "must be a bucket id string");
            };
            let Some(b) = policy.bucket_index(id) else {
                return err(
                    format!("{field}.bucket"),
                    format!("no bucket {id:?}; buckets: {}", bucket_ids(policy)),
                );
            };
            if let Some(l) = o.get("limit") {
                policy.buckets[b].limit.limit =
                    integer(l, &format!("{field}.limit"), 1, u64::from(u32::MAX))?;
            }
            if let Some(w) = o.get("window") {
                policy.buckets[b].limit.window_us = window(w, &format!("{field}.window"))?;
            }
        } else {
            add_limit_route(
                policy,
                item,
                &field,
                &format!("overrides.{i}"),
                true,
                default,
            )?;
        }
    }
    Ok(())
}

/// Routes of the form `{route, methods?, limit, window, algorithm?}`, each
/// with a bucket of its own (`<field>.<index>`).
fn add_limit_routes(
    policy: &mut PolicySpec,
    v: &Value,
    field: &str,
    default: Algorithm,
) -> Result<(), ConfigError> {
    let Value::Array(items) = v else {
        return err(
            field,
            "must be a list of {\"route\", \"methods\", \"limit\", \"window\"}",
        );
    };
    for (i, item) in items.iter().enumerate() {
        add_limit_route(
            policy,
            item,
            &format!("{field}[{i}]"),
            &format!("{field}.{i}"),
            false,
            default,
        )?;
    }
    Ok(())
}

/// One `{route, methods?, limit, window, algorithm?}` entry (at config path
/// `f`), with a bucket of its own named `id`.
fn add_limit_route(
    policy: &mut PolicySpec,
    item: &Value,
    f: &str,
    id: &str,
    replace: bool,
    default: Algorithm,
) -> Result<(), ConfigError> {
    let Value::Object(o) = item else {
        return err(
            f,
            "must be an object {\"route\", \"methods\", \"limit\", \"window\"}",
        );
    };
    for k in o.keys() {
        if !["route", "methods", "limit", "window", "algorithm"].contains(&k.as_str()) {
            return err(
                format!("{f}.{k}"),
                "unknown field; a route takes route, methods, limit, window, algorithm",
            );
        }
    }
    let patterns =
        match o.get("route") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(v @ Value::Array(_)) => string_list(v, &format!("{f}.route"), None)?,
            _ => return err(
                format!("{f}.route"),
                "missing or not a path pattern (e.g. \"/api/v1/users/{id}\" or \"/api/v1/apps/*\")",
            ),
        };
    if let Err(e) = crate::router::Router::new(&[crate::router::RouteSpec {
        methods: None,
        patterns: patterns.clone(),
        target: 0,
        replace: false,
    }]) {
        return err(
            format!("{f}.route"),
            format!("bad pattern {:?}: {}", e.pattern, e.reason),
        );
    }
    let methods = match o.get("methods") {
        None => None,
        Some(v) => {
            let ms: Vec<String> = string_list(v, &format!("{f}.methods"), Some(&METHODS))?;
            if ms.is_empty() {
                return err(
                    format!("{f}.methods"),
                    "must name at least one method (or be left out for all)",
                );
            }
            Some(ms)
        }
    };
    let limit = match o.get("limit") {
        Some(l) => integer(l, &format!("{f}.limit"), 1, u64::from(u32::MAX))?,
        None => return err(format!("{f}.limit"), "missing: requests per window"),
    };
    let window_us = match o.get("window") {
        Some(w) => window(w, &format!("{f}.window"))?,
        None => {
            return err(
                format!("{f}.window"),
                "missing: \"second\", \"minute\", \"hour\", \"day\" or seconds",
            )
        }
    };
    let algorithm = algorithm(o.get("algorithm"), &format!("{f}.algorithm"), default)?;
    let label = format!("{id} {}", patterns.join(" "));
    let b = policy.bucket(Bucket::new(
        id,
        &label,
        Limit {
            algorithm,
            limit,
            window_us,
        },
        Scope::Host,
    ));
    policy.routes.push(Route {
        methods,
        patterns,
        target: Target::Buckets(vec![b]),
        replace,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c =
            parse_str(r#"{"vendor": "okta", "plan": "enterprise", "stat_prefix": "okta_egress"}"#)
                .unwrap();
        assert_eq!(c.stat_prefix, "okta_egress");
        assert_eq!(c.policy.buckets.len(), 14 + 7);
        let c =
            parse_str(r#"{"vendor": "okta", "plan": "developer-free", "catalogs": ["end-user"]}"#)
                .unwrap();
        assert_eq!(c.plan, "integrator-free");
        assert_eq!(c.policy.buckets.len(), 7);
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
                r#"{"vendor": "okta", "plan": "enterprise", "stat_prefix": "Bad.Prefix"}"#,
                "stat_prefix",
            ),
            (
                r#"{"vendor": "okta", "plan": "enterprise", "stat_prefix": ""}"#,
                "stat_prefix",
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
                r#"{"vendor": "auth0", "plan": "enterprise-prod", "catalogs": ["management"]}"#,
                "catalogs",
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
        }
        let c = parse_str(r#"{"vendor": "onelogin"}"#).unwrap();
        crate::policy::Policy::compile(c.policy).unwrap();
        let c = parse_str(r#"{"vendor": "custom", "dialect": "okta", "routes": [{"route": "/v1/*", "limit": 5, "window": "minute"}]}"#).unwrap();
        assert_eq!(c.dialect, Dialect::Okta);
        assert_eq!(c.policy.buckets[0].limit.algorithm, Algorithm::TokenBucket);
        crate::policy::Policy::compile(c.policy).unwrap();
    }
}
