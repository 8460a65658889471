//! Small edits of a plugin JSON, each checked again by the library: the same
//! configuration without `headroom_percent` (the published limits), or with
//! another plan (a table across plans).

use serde_json::{Map, Value};

fn object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The configuration without `field`, or `None` when it has no such field.
pub fn without(bytes: &[u8], field: &str) -> Option<Vec<u8>> {
    let mut obj = object(bytes)?;
    obj.remove(field)?;
    serde_json::to_vec(&obj).ok()
}

/// The configuration with `plan` set.
pub fn with_plan(bytes: &[u8], plan: &str) -> Option<Vec<u8>> {
    let mut obj = object(bytes)?;
    obj.insert("plan".to_string(), Value::String(plan.to_string()));
    serde_json::to_vec(&obj).ok()
}

/// The configuration's `vendor`, if it names one.
pub fn vendor(bytes: &[u8]) -> Option<String> {
    object(bytes)?
        .get("vendor")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The configuration's `edition`, if it names one as a string.
pub fn edition(bytes: &[u8]) -> Option<String> {
    object(bytes)?
        .get("edition")
        .and_then(Value::as_str)
        .map(str::to_string)
}
