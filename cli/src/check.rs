//! `idp-ratelimit check`: runs each configuration through the function the
//! filter's `on_configure` runs, and reports what Envoy would log.

use idp_ratelimit::configure::configure;
use idp_ratelimit::policy::Scope;

use crate::describe;
use crate::source::{self, LoadError};
use crate::Exit;

/// The key prefix the filter derives from the plugin's name; it shapes no
/// check, only the engine's key names.
pub const KEY_PREFIX: &str = "idprl/check/";

/// Checks every configuration in every file: exit 0 when all are accepted,
/// 1 when one is refused, 2 when a file cannot be read.
pub fn run(files: &[String]) -> Exit {
    let mut exit = Exit::Ok;
    for file in files {
        let plugins = match source::load(file) {
            Ok(p) => p,
            Err(LoadError::Unreadable(e)) => {
                eprintln!("{e}");
                exit = exit.max(Exit::Usage);
                continue;
            }
            Err(LoadError::Invalid(e)) => {
                eprintln!("{e}");
                exit = exit.max(Exit::Invalid);
                continue;
            }
        };
        for plugin in plugins {
            let name = if file.trim_start().starts_with('{') {
                "(argument)"
            } else {
                file.as_str()
            };
            let at = if plugin.origin.is_empty() {
                format!("{name}:")
            } else {
                format!("{name}: {}:", plugin.origin)
            };
            match configure(&plugin.bytes, KEY_PREFIX) {
                Ok(c) => {
                    let e = &c.engine;
                    println!(
                        "{at} ok: {}/{} ({}), {}, at most {} shared-data keys",
                        e.vendor,
                        describe::plan(&c.plan, c.edition),
                        describe::mode(e.mode),
                        describe::count(e.policy.buckets.len(), "bucket"),
                        e.key_capacity()
                    );
                    if e.policy.buckets.iter().any(|b| b.scope == Scope::ClientIp) {
                        println!(
                            "{at} note: client_ip scope reads source.address: give the HTTP \
                             connection manager use_remote_address: true, or clients choose it \
                             with X-Forwarded-For"
                        );
                    }
                }
                Err(refusal) => {
                    eprintln!("{at} configuration refused: {refusal}");
                    exit = exit.max(Exit::Invalid);
                }
            }
        }
    }
    exit
}
