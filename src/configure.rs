//! The configure-time path, from the plugin configuration's bytes to a ready
//! engine: what the filter's `on_configure` runs, and what the operator's
//! command line (`idp-ratelimit check`) runs, so both refuse exactly the same
//! configurations with exactly the same words.

use crate::config::ConfigError;
use crate::engine::Engine;
use crate::router::RouteError;

/// Why a configuration is refused. Its `Display` is the text the filter logs
/// after "configuration refused: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A field is wrong (named in the error).
    Config(ConfigError),
    /// The routes, each valid alone, do not compile together.
    Route(RouteError),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Config(e) => e.fmt(f),
            Refusal::Route(e) => write!(f, "route {:?}: {}", e.pattern, e.reason),
        }
    }
}

/// An accepted configuration.
pub struct Configured {
    /// The canonical plan (`"default"` for OneLogin, `"custom"` for a custom vendor).
    pub plan: String,
    /// Auth0: the Management API edition (`None` for the other vendors).
    pub edition: Option<crate::catalog::auth0::Edition>,
    pub engine: Engine,
}

/// Checks the plugin configuration and compiles its policy; `key_prefix`
/// namespaces the instance's shared-data keys.
pub fn configure(bytes: &[u8], key_prefix: &str) -> Result<Configured, Refusal> {
    let config = crate::config::parse(bytes).map_err(Refusal::Config)?;
    let plan = config.plan.clone();
    let edition = config.edition;
    let engine = Engine::new(config, key_prefix).map_err(Refusal::Route)?;
    Ok(Configured {
        plan,
        edition,
        engine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_the_filter_logs_them() {
        let e = configure(br#"{"vendor": "okta", "plan": "gold"}"#, "p/")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "field `plan`: unknown plan \"gold\"; one of: integrator-free, developer-paid, \
                 one-app, enterprise, workforce-identity, developer-free"
            )
        );
        let ok = configure(br#"{"vendor": "onelogin"}"#, "p/").map(|c| c.plan);
        assert_eq!(ok.ok().as_deref(), Some("default"));
    }
}
