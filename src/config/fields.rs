//! Reading JSON fields: each reader takes the value and the field's path
//! (e.g. `overrides[2].limit`) and answers a `ConfigError` that names it and
//! says what is accepted.

use serde_json::{Map, Value};

use super::ConfigError;
use crate::limiter::{Algorithm, MICROS_PER_SEC};
use crate::policy::Scope;

/// The refusal naming `field`; one out-of-line copy per type instead of the
/// `String` conversions inlined at each of the parser's ~50 call sites.
#[cold]
#[inline(never)]
pub(super) fn err<T>(
    field: impl Into<String>,
    problem: impl Into<String>,
) -> Result<T, ConfigError> {
    Err(ConfigError {
        field: field.into(),
        problem: problem.into(),
    })
}

pub(super) fn plan(
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

pub(super) fn one_of<'a>(
    v: &Value,
    field: &str,
    accepted: &[&'a str],
) -> Result<&'a str, ConfigError> {
    let list = accepted.join(", ");
    let Value::String(s) = v else {
        return err(field, format!("must be a string, one of: {list}"));
    };
    accepted.iter().copied().find(|a| a == s).map_or_else(
        || err(field, format!("unknown value {s:?}; one of: {list}")),
        Ok,
    )
}

pub(super) fn integer(v: &Value, field: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => err(
            field,
            format!("must be a whole number from {min} to {max}, got {v}"),
        ),
    }
}

pub(super) fn string_list(
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

pub(super) fn parse_scope(v: &Value, field: &str) -> Result<Scope, ConfigError> {
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

pub(super) fn is_stat_prefix(p: &str) -> bool {
    (1..=64).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `window`: "second", "minute", "hour", "day", or a number of seconds.
pub(super) fn window(v: &Value, field: &str) -> Result<u64, ConfigError> {
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

pub(super) fn algorithm(
    v: Option<&Value>,
    field: &str,
    default: Algorithm,
) -> Result<Algorithm, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) => Ok(match one_of(v, field, &["fixed_window", "token_bucket"])? {
            "fixed_window" => Algorithm::FixedWindow,
            _ => Algorithm::TokenBucket,
        }),
    }
}
