//! The `fleet` section of the plugin configuration:
//!
//! ```json
//! "fleet": {"cluster": "ratelimit", "domain": "idp_ratelimit", "timeout_ms": 20,
//!           "server": "envoy-ratelimit", "on_failure": "local"}
//! ```
//!
//! Parsed on its own (the rest of the configuration only hands it the
//! value), every field checked, errors naming the field as `fleet.<name>`.

use serde_json::Value;

use crate::config::ConfigError;

/// The fields `fleet` accepts.
pub const FLEET_FIELDS: [&str; 5] = ["cluster", "domain", "timeout_ms", "server", "on_failure"];

pub const DEFAULT_DOMAIN: &str = "idp_ratelimit";
pub const DEFAULT_TIMEOUT_MS: u64 = 20;
pub const MAX_TIMEOUT_MS: u64 = 10_000;

/// Which rate-limit service answers: they fill the response differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// envoyproxy/ratelimit: one `DescriptorStatus` per descriptor, with
    /// limit, remaining and `duration_until_reset`.
    EnvoyRatelimit,
    /// Kuadrant Limitador: no statuses; with `-H DRAFT_VERSION_03`, the
    /// DRAFT-03 headers of the tightest limit in `response_headers_to_add`.
    Limitador,
}

impl Server {
    pub const NAMES: [&'static str; 2] = ["envoy-ratelimit", "limitador"];

    pub fn name(self) -> &'static str {
        match self {
            Server::EnvoyRatelimit => "envoy-ratelimit",
            Server::Limitador => "limitador",
        }
    }

    pub fn from_name(name: &str) -> Option<Server> {
        match name {
            "envoy-ratelimit" => Some(Server::EnvoyRatelimit),
            "limitador" => Some(Server::Limitador),
            _ => None,
        }
    }
}

/// What a request gets when the rate-limit service cannot answer (error,
/// timeout, missing cluster, breaker open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Count it in this Envoy's shared data, as without `fleet`: a dead
    /// service degrades to per-Envoy limits, never to no limits.
    Local,
    /// Let it through uncounted (by the fleet buckets).
    Allow,
    /// The vendor's 429.
    Deny,
}

/// A checked `fleet` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleet {
    /// The Envoy cluster (HTTP/2) of the rate-limit service.
    pub cluster: String,
    /// The `domain` of every request (Limitador's namespace).
    pub domain: String,
    pub timeout_ms: u64,
    pub server: Server,
    pub on_failure: OnFailure,
}

/// Out of line, like `config::fields::err`: cold, and called from many sites.
#[cold]
#[inline(never)]
fn err<T>(field: &str, problem: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        field: format!("fleet.{field}"),
        problem: problem.into(),
    })
}

/// The longest cluster name: the filter hands Envoy the cluster as a
/// serialized `GrpcService` through a string argument, which stays valid
/// UTF-8 only while every length prefix is one byte (see `rls::proto`).
pub const MAX_CLUSTER_NAME: usize = 125;

/// Envoy cluster names are free text, but one that cannot appear in a
/// bootstrap unquoted is surely a mistake.
fn is_cluster_name(s: &str) -> bool {
    (1..=MAX_CLUSTER_NAME).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:|".contains(&b))
}

/// Domains become Redis keys and YAML values: keep them plain.
fn is_domain(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn string<'a>(v: &'a Value, field: &str) -> Result<&'a str, ConfigError> {
    match v {
        Value::String(s) => Ok(s),
        _ => err(field, format!("must be a string, got {v}")),
    }
}

/// Parses the value of `fleet`.
pub fn parse_fleet(v: &Value) -> Result<Fleet, ConfigError> {
    let Value::Object(o) = v else {
        return Err(ConfigError {
            field: "fleet".into(),
            problem: "must be an object such as {\"cluster\": \"ratelimit\"}".into(),
        });
    };
    for key in o.keys() {
        if !FLEET_FIELDS.contains(&key.as_str()) {
            let name = if key.is_empty() { "\"\"" } else { key.as_str() };
            return err(
                name,
                format!(
                    "unknown field; accepted fields: {}",
                    FLEET_FIELDS.join(", ")
                ),
            );
        }
    }
    let cluster = match o.get("cluster") {
        None => {
            return err(
                "cluster",
                "missing: the Envoy cluster of the rate-limit service",
            )
        }
        Some(v) => string(v, "cluster")?,
    };
    if !is_cluster_name(cluster) {
        return err(
            "cluster",
            format!(
                "{cluster:?} is not a cluster name (1-{MAX_CLUSTER_NAME} of letters, digits, - _ . : |)"
            ),
        );
    }
    let domain = match o.get("domain") {
        None => DEFAULT_DOMAIN,
        Some(v) => string(v, "domain")?,
    };
    if !is_domain(domain) {
        return err(
            "domain",
            format!("{domain:?} is not a domain (1-64 of letters, digits, - _ .)"),
        );
    }
    let timeout_ms = match o.get("timeout_ms") {
        None => DEFAULT_TIMEOUT_MS,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_TIMEOUT_MS).contains(&n) => n,
            _ => {
                return err(
                    "timeout_ms",
                    format!("must be a whole number from 1 to {MAX_TIMEOUT_MS}, got {v}"),
                )
            }
        },
    };
    let server = match o.get("server") {
        None => Server::EnvoyRatelimit,
        Some(v) => {
            let s = string(v, "server")?;
            match Server::from_name(s) {
                Some(server) => server,
                None => {
                    return err(
                        "server",
                        format!("unknown server {s:?}; one of: {}", Server::NAMES.join(", ")),
                    )
                }
            }
        }
    };
    let on_failure = match o.get("on_failure") {
        None => OnFailure::Local,
        Some(v) => match string(v, "on_failure")? {
            "local" => OnFailure::Local,
            "allow" => OnFailure::Allow,
            "deny" => OnFailure::Deny,
            s => {
                return err(
                    "on_failure",
                    format!("unknown value {s:?}; one of: local, allow, deny"),
                )
            }
        },
    };
    Ok(Fleet {
        cluster: cluster.to_string(),
        domain: domain.to_string(),
        timeout_ms,
        server,
        on_failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(v: Value) -> String {
        parse_fleet(&v).unwrap_err().to_string()
    }

    #[test]
    fn the_documented_shape_parses() {
        let f = parse_fleet(&json!({"cluster": "ratelimit", "domain": "idp_ratelimit",
            "timeout_ms": 20, "server": "envoy-ratelimit", "on_failure": "local"}))
        .unwrap();
        assert_eq!(
            f,
            Fleet {
                cluster: "ratelimit".into(),
                domain: "idp_ratelimit".into(),
                timeout_ms: 20,
                server: Server::EnvoyRatelimit,
                on_failure: OnFailure::Local,
            }
        );
        let f = parse_fleet(&json!({"cluster": "outbound|8081||ratelimit.default.svc",
            "server": "limitador", "on_failure": "deny"}))
        .unwrap();
        assert_eq!(f.domain, DEFAULT_DOMAIN);
        assert_eq!(f.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(f.server, Server::Limitador);
        assert_eq!(f.on_failure, OnFailure::Deny);
    }

    #[test]
    fn every_field_is_checked_and_named() {
        assert_eq!(
            problem(json!("ratelimit")),
            "field `fleet`: must be an object such as {\"cluster\": \"ratelimit\"}"
        );
        assert!(problem(json!({})).starts_with("field `fleet.cluster`: missing"));
        assert!(
            problem(json!({"cluster": 7})).starts_with("field `fleet.cluster`: must be a string")
        );
        assert!(problem(json!({"cluster": "a b"})).starts_with("field `fleet.cluster`: \"a b\""));
        assert!(problem(json!({"cluster": ""})).starts_with("field `fleet.cluster`"));
        let long = "c".repeat(MAX_CLUSTER_NAME + 1);
        assert!(problem(json!({ "cluster": long })).starts_with("field `fleet.cluster`"));
        assert!(problem(json!({"cluster": "r", "domain": ""})).starts_with("field `fleet.domain`"));
        assert!(
            problem(json!({"cluster": "r", "domain": "a/b"})).starts_with("field `fleet.domain`")
        );
        for t in [json!(0), json!(10_001), json!(2.5), json!("20")] {
            assert!(
                problem(json!({"cluster": "r", "timeout_ms": t})).starts_with(
                    "field `fleet.timeout_ms`: must be a whole number from 1 to 10000"
                ),
                "{t}"
            );
        }
        assert_eq!(
            problem(json!({"cluster": "r", "server": "redis"})),
            "field `fleet.server`: unknown server \"redis\"; one of: envoy-ratelimit, limitador"
        );
        assert_eq!(
            problem(json!({"cluster": "r", "on_failure": "open"})),
            "field `fleet.on_failure`: unknown value \"open\"; one of: local, allow, deny"
        );
        assert_eq!(
            problem(json!({"cluster": "r", "timeout": 5})),
            "field `fleet.timeout`: unknown field; accepted fields: \
             cluster, domain, timeout_ms, server, on_failure"
        );
        assert!(problem(json!({"cluster": "r", "": 1})).starts_with("field `fleet.\"\"`"));
    }

    #[test]
    fn the_plugin_configuration_takes_fleet_and_names_its_errors() {
        let c = crate::config::parse(
            br#"{"vendor": "okta", "plan": "enterprise",
                 "fleet": {"cluster": "ratelimit", "domain": "idp_ratelimit", "timeout_ms": 20,
                           "server": "envoy-ratelimit", "on_failure": "local"}}"#,
        )
        .unwrap();
        assert_eq!(c.fleet.unwrap().cluster, "ratelimit");
        let c = crate::config::parse(br#"{"vendor": "okta", "plan": "enterprise"}"#).unwrap();
        assert!(c.fleet.is_none());
        let e = crate::config::parse(
            br#"{"vendor": "onelogin", "fleet": {"cluster": "r", "on_failure": "maybe"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "fleet.on_failure");
    }
}
