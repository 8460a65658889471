//! Operator options applied to a vendor's policy: the default and per-bucket
//! scopes, overrides (a bucket's limit and window, or a route of its own),
//! headroom; and the routes of a custom vendor.

use serde_json::{Map, Value};

use super::fields::{algorithm, err, integer, parse_scope, string_list, window};
use super::ConfigError;
use crate::limiter::{Algorithm, Limit};
use crate::policy::{Bucket, PolicySpec, Route, Scope, Target};
use crate::router::KNOWN_METHODS;

/// What `apply` leaves beside the policy.
pub(super) struct Applied {
    /// `headroom_percent`, 100 when not given.
    pub headroom_percent: u64,
    /// Each bucket's limit before headroom (the table's, or an override's).
    pub published_limits: Vec<u64>,
}

/// Applies `scope`, `bucket_scopes`, `overrides` and `headroom_percent`, in
/// that order (an override's limit is then held to the headroom too).
pub(super) fn apply(
    policy: &mut PolicySpec,
    obj: &Map<String, Value>,
    vendor: &str,
) -> Result<Applied, ConfigError> {
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
                    format!("no such bucket; buckets: {}", bucket_ids(policy)),
                );
            }
        }
    }
    if let Some(v) = obj.get("overrides") {
        add_overrides(policy, v, default_algorithm(vendor))?;
    }
    let published_limits = policy.buckets.iter().map(|b| b.limit.limit).collect();
    let headroom_percent = match obj.get("headroom_percent") {
        None => 100,
        Some(v) => integer(v, "headroom_percent", 1, 100)?,
    };
    if headroom_percent < 100 {
        for b in policy.buckets.iter_mut().filter(|b| {
            !matches!(
                b.limit.algorithm,
                Algorithm::Concurrency | Algorithm::InFlight
            )
        }) {
            b.limit.limit = (b.limit.limit * headroom_percent / 100).max(1);
        }
    }
    Ok(Applied {
        headroom_percent,
        published_limits,
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

/// The algorithm of a route an operator adds: the vendor's own (Okta and
/// OneLogin count fixed windows; Auth0, and custom vendors, refill evenly).
pub(super) fn default_algorithm(vendor: &str) -> Algorithm {
    match vendor {
        "okta" | "onelogin" => Algorithm::FixedWindow,
        _ => Algorithm::TokenBucket,
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
pub(super) fn add_limit_routes(
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
    if let Err(e) = crate::router::check_patterns(&patterns) {
        return err(
            format!("{f}.route"),
            format!("bad pattern {:?}: {}", e.pattern, e.reason),
        );
    }
    let methods = match o.get("methods") {
        None => None,
        Some(v) => {
            let ms: Vec<String> = string_list(v, &format!("{f}.methods"), Some(&KNOWN_METHODS))?;
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
