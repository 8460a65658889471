//! `idp-ratelimit guard`: the Envoy matcher that skips the filter, natively,
//! for requests no route of a configuration can match (`idp_ratelimit::guard`
//! says which paths those are). Printed as the `xds_matcher` of an
//! `ExtensionWithMatcher` wrapping the Wasm filter.

use idp_ratelimit::configure::configure;
use idp_ratelimit::guard;
use serde_json::json;

use crate::check::KEY_PREFIX;
use crate::Failure;

pub fn run(bytes: &[u8]) -> Result<String, Failure> {
    let refused = |e: String| Failure::Invalid(format!("configuration refused: {e}"));
    let configured = configure(bytes, KEY_PREFIX).map_err(|e| refused(e.to_string()))?;
    let spec = idp_ratelimit::config::parse(bytes)
        .map_err(|e| refused(e.to_string()))?
        .policy;
    let prefixes = guard::route_prefixes(&spec).map_err(|e| {
        Failure::Invalid(format!(
            "no guard for this configuration: route {:?} can match any first path segment, \
             so the filter must see every request",
            e.pattern
        ))
    })?;
    let yaml = serde_norway::to_string(&json!({ "xds_matcher": guard::matcher(&prefixes) }))
        .map_err(|e| Failure::Invalid(format!("could not write YAML: {e}")))?;
    let listed = prefixes.join(" ");
    Ok(format!(
        "# idp-ratelimit guard: {vendor}/{plan}. Envoy skips the filter's request and response\n\
         # work (no header read, no decision: the cost of a Wasm filter that does nothing) for a\n\
         # request whose :path starts with none of: {listed}\n\
         # (any letter case) and holds none of `%`, `//`, `/.` (spellings the filter rewrites).\n\
         # Wrap the Wasm filter with it (README, \"The path guard\"):\n\
         #   - name: envoy.filters.http.match_delegate\n\
         #     typed_config:\n\
         #       \"@type\": type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher\n\
         #       extension_config: {{name: envoy.filters.http.wasm, typed_config: <the Wasm filter's>}}\n\
         #       xds_matcher: <below>\n\
         # Regenerate it whenever the configuration's routes change.\n\
         {yaml}",
        vendor = configured.engine.vendor,
        plan = configured.plan,
    ))
}
