//! Where plugin configurations come from: a plugin JSON file (its bytes are
//! exactly what Envoy hands the filter), the JSON itself as an argument, or a
//! YAML file holding Istio `WasmPlugin`s (`spec.pluginConfig`) or Envoy Wasm
//! filters (`configuration`'s `StringValue`), in any of its documents.

use serde_json::Value;

/// One plugin configuration and where it was found.
pub struct Plugin {
    /// "document 2, WasmPlugin idp-ratelimit-okta"; empty for a plugin JSON.
    pub origin: String,
    /// The names a `--plugin` choice may give (WasmPlugin, filter, plugin name).
    pub names: Vec<String>,
    /// The bytes the filter receives as its plugin configuration.
    pub bytes: Vec<u8>,
}

/// Why no configuration could be read.
pub enum LoadError {
    /// The file cannot be read: nothing was checked (exit 2).
    Unreadable(String),
    /// The file is not a configuration (exit 1).
    Invalid(String),
}

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// Reads `arg`: the JSON itself when it starts with `{`, else a file
/// (`.yaml`/`.yml`: manifests; anything else: the plugin JSON as it is).
pub fn load(arg: &str) -> Result<Vec<Plugin>, LoadError> {
    if arg.trim_start().starts_with('{') {
        return Ok(vec![plain(arg.as_bytes().to_vec())]);
    }
    let bytes = std::fs::read(arg).map_err(|e| LoadError::Unreadable(format!("{arg}: {e}")))?;
    let is_yaml = [".yaml", ".yml"].iter().any(|ext| arg.ends_with(ext));
    if !is_yaml {
        return Ok(vec![plain(bytes)]);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| LoadError::Invalid(format!("{arg}: not UTF-8 text")))?;
    let plugins = from_yaml(&text).map_err(|e| LoadError::Invalid(format!("{arg}: {e}")))?;
    if plugins.is_empty() {
        return Err(LoadError::Invalid(format!(
            "{arg}: no Istio WasmPlugin and no Envoy Wasm filter ({WASM_FILTER}) found"
        )));
    }
    Ok(plugins)
}

fn plain(bytes: Vec<u8>) -> Plugin {
    Plugin {
        origin: String::new(),
        names: Vec::new(),
        bytes,
    }
}

/// Every plugin configuration in a (multi-document) YAML text, in order.
fn from_yaml(text: &str) -> Result<Vec<Plugin>, String> {
    use serde::Deserialize;
    let mut plugins = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let number = i + 1;
        let value = Value::deserialize(document)
            .map_err(|e| format!("document {number}: not valid YAML: {e}"))?;
        if is_wasm_plugin(&value) {
            let name = text_at(&value, &["metadata", "name"]);
            let config = value.get("spec").and_then(|s| s.get("pluginConfig"));
            plugins.push(Plugin {
                origin: format!(
                    "document {number}, WasmPlugin {}",
                    name.as_deref().unwrap_or("(unnamed)")
                ),
                names: name.into_iter().collect(),
                bytes: plugin_config_bytes(config)?,
            });
        } else {
            let mut found = Vec::new();
            envoy_filters(&value, None, &mut found);
            for (filter, wasm) in found {
                let config = wasm.get("config");
                let plugin = config.and_then(|c| c.get("name")).and_then(Value::as_str);
                let mut origin = format!(
                    "document {number}, Envoy filter {}",
                    filter.unwrap_or("(unnamed)")
                );
                if let Some(p) = plugin {
                    origin.push_str(&format!(", plugin {p}"));
                }
                let bytes = configuration_bytes(config.and_then(|c| c.get("configuration")))
                    .map_err(|e| format!("{origin}: {e}"))?;
                plugins.push(Plugin {
                    origin,
                    names: filter
                        .into_iter()
                        .chain(plugin)
                        .map(str::to_string)
                        .collect(),
                    bytes,
                });
            }
        }
    }
    Ok(plugins)
}

fn is_wasm_plugin(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("WasmPlugin")
        && v.get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|a| a.starts_with("extensions.istio.io/"))
}

fn text_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut v = v;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str().map(str::to_string)
}

/// Istio serialises `pluginConfig` (a Struct) to JSON for the filter; an
/// absent one reaches the filter as an empty configuration.
fn plugin_config_bytes(config: Option<&Value>) -> Result<Vec<u8>, String> {
    match config {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::to_vec(v).map_err(|e| e.to_string()),
    }
}

/// Envoy hands the filter a `StringValue` configuration's text; no
/// configuration is an empty one.
fn configuration_bytes(configuration: Option<&Value>) -> Result<Vec<u8>, String> {
    let Some(c) = configuration else {
        return Ok(Vec::new());
    };
    if c.get("@type").and_then(Value::as_str) != Some(STRING_VALUE) {
        return Err(format!("`configuration` must be a {STRING_VALUE}"));
    }
    Ok(c.get("value")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .as_bytes()
        .to_vec())
}

/// Finds every Wasm HTTP filter config under `v`, with the name of the
/// filter entry (`name` beside its `typed_config`) when there is one.
fn envoy_filters<'a>(
    v: &'a Value,
    name: Option<&'a str>,
    out: &mut Vec<(Option<&'a str>, &'a Value)>,
) {
    match v {
        Value::Object(map) => {
            if map.get("@type").and_then(Value::as_str) == Some(WASM_FILTER) {
                out.push((name, v));
                return;
            }
            let here = map.get("name").and_then(Value::as_str).or(name);
            for (key, child) in map {
                // A filter's own name applies to its typed_config only.
                let inherited = if key == "typed_config" { here } else { None };
                envoy_filters(child, inherited, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| envoy_filters(i, None, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_wasm_plugins_and_envoy_filters_in_every_document() {
        let text = r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: one}
spec:
  pluginConfig: {vendor: okta, plan: enterprise}
---
---
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          http_filters:
          - name: idp
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: p
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{"vendor": "onelogin"}'
"#;
        let found = from_yaml(text).unwrap();
        let got: Vec<(&str, &[u8])> = found
            .iter()
            .map(|p| (p.origin.as_str(), p.bytes.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "document 1, WasmPlugin one",
                    &br#"{"plan":"enterprise","vendor":"okta"}"#[..]
                ),
                (
                    "document 3, Envoy filter idp, plugin p",
                    &br#"{"vendor": "onelogin"}"#[..]
                ),
            ]
        );
    }
}
