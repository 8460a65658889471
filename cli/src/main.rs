//! `idp-ratelimit`: the operator's command line. Checks a plugin
//! configuration with the filter's own configure path, explains what the
//! filter does with one request, and prints the route → bucket → limit table,
//! all before the configuration reaches Envoy. Host-only: the `.wasm` carries
//! none of it.

mod check;
mod describe;
mod edit;
mod explain;
mod guard;
mod routes;
mod source;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The exit status: 0 accepted, 1 refused, 2 usage (clap's own, too) or a
/// file that cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Ok = 0,
    Invalid = 1,
    Usage = 2,
}

/// Why a command could not give its answer.
#[derive(Debug)]
pub enum Failure {
    /// The configuration is refused, or is no configuration (exit 1).
    Invalid(String),
    /// The arguments or files cannot be used (exit 2).
    Usage(String),
}

#[derive(Parser)]
#[command(
    name = "idp-ratelimit",
    version,
    about = "Check, explain and list an idp-ratelimit plugin configuration before it reaches Envoy, \
             and generate its rate-limit service's configuration",
    after_help = "CONFIG is a plugin JSON file, the JSON itself (an argument starting with '{'), \
                  or a YAML file: Istio WasmPlugins (spec.pluginConfig) or an Envoy \
                  configuration (each Wasm filter's configuration value), in any document.\n\
                  Exit status: 0 accepted, 1 refused, 2 usage or unreadable file."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
enum Command {
    /// Check configurations exactly as the filter does when Envoy configures it
    Check {
        /// Plugin JSON or YAML files (or the JSON itself)
        #[arg(required = true, value_name = "CONFIG")]
        files: Vec<String>,
    },
    /// Show what the filter does with one request: path normalisation, the
    /// route that matches, every bucket counted, the one reported
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// The request method
        method: String,
        /// The request path, as sent (query string and all)
        path: String,
        /// The request's :authority
        #[arg(long, default_value = "example.com")]
        host: String,
        /// A request header, `name: value` (repeatable)
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// Envoy's source.address, `ip:port`
        #[arg(long, default_value = "127.0.0.1:50000")]
        source: String,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Print the route → bucket → limit table
    Routes {
        #[command(flatten)]
        config: ConfigArg,
        /// One limit column per plan: `all` (the vendor's plans) or a comma-separated list
        #[arg(long, value_name = "all|PLAN,...")]
        plans: Option<String>,
        /// A Markdown table (as the README's)
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Print the Envoy matcher that has Envoy skip the filter's work, natively,
    /// for every request no route of the configuration can match
    Guard {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the fleet-mode rate-limit service's configuration, generated from
    /// the same policy the filter runs: an envoyproxy/ratelimit config.yaml or
    /// a Limitador limits.yaml (its comments name every bucket counted
    /// inexactly or kept in each Envoy)
    RlsConfig {
        #[command(flatten)]
        config: ConfigArg,
        /// Which rate-limit service
        #[arg(
            long,
            default_value = "envoy-ratelimit",
            value_parser = clap::builder::PossibleValuesParser::new(
                idp_ratelimit::rls::config::Server::NAMES
            )
        )]
        server: String,
    },
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Plugin JSON or YAML file (or the JSON itself)
    #[arg(value_name = "CONFIG")]
    config: String,
    /// Which plugin, where the YAML file has several (WasmPlugin, filter or plugin name)
    #[arg(long)]
    plugin: Option<String>,
}

impl ConfigArg {
    /// The one configuration this names.
    fn bytes(&self) -> Result<Vec<u8>, Failure> {
        let plugins = source::load(&self.config).map_err(|e| match e {
            source::LoadError::Unreadable(e) => Failure::Usage(e),
            source::LoadError::Invalid(e) => Failure::Invalid(e),
        })?;
        let chosen: Vec<source::Plugin> = match &self.plugin {
            Some(name) => plugins
                .into_iter()
                .filter(|p| p.names.iter().any(|n| n == name))
                .collect(),
            None => plugins,
        };
        let listing = |ps: &[source::Plugin]| {
            ps.iter()
                .map(|p| p.origin.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        match <[source::Plugin; 1]>::try_from(chosen) {
            Ok([one]) => Ok(one.bytes),
            Err(v) if v.is_empty() => Err(Failure::Usage(format!(
                "{}: no plugin named {:?}",
                self.config,
                self.plugin.as_deref().unwrap_or_default()
            ))),
            Err(v) => Err(Failure::Usage(format!(
                "{}: several plugins ({}); choose one with --plugin",
                self.config,
                listing(&v)
            ))),
        }
    }
}

fn header(h: &str) -> Result<(String, String), Failure> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| Failure::Usage(format!("--header {h:?}: want `name: value`")))?;
    Ok((name.trim().to_ascii_lowercase(), value.trim().to_string()))
}

fn run(command: Command) -> Exit {
    let result = match command {
        Command::Check { files } => return check::run(&files),
        Command::Explain {
            config,
            method,
            path,
            host,
            headers,
            source,
            json,
        } => headers
            .iter()
            .map(|h| header(h))
            .collect::<Result<_, _>>()
            .and_then(|headers| {
                let request = explain::Request {
                    method,
                    path,
                    authority: host,
                    headers,
                    source,
                };
                explain::run(&config.bytes()?, &request, json)
            }),
        Command::Routes {
            config,
            plans,
            markdown,
            json,
        } => config.bytes().and_then(|bytes| {
            let plans: Vec<String> = match plans.as_deref() {
                None => Vec::new(),
                Some("all") => routes::all_plans(&bytes)?,
                Some(list) => list.split(',').map(|p| p.trim().to_string()).collect(),
            };
            let format = if json {
                routes::Format::Json
            } else if markdown {
                routes::Format::Markdown
            } else {
                routes::Format::Text
            };
            routes::render(&routes::tables(&bytes, &plans)?, !plans.is_empty(), format)
        }),
        Command::Guard { config } => config.bytes().and_then(|bytes| guard::run(&bytes)),
        Command::RlsConfig { config, server } => config.bytes().and_then(|bytes| {
            let server = idp_ratelimit::rls::config::Server::from_name(&server)
                .ok_or_else(|| Failure::Usage(format!("--server {server:?}")))?;
            idp_ratelimit::rls::generate::from_plugin_config(&bytes, server)
                .map(|g| g.yaml)
                .map_err(|e| Failure::Invalid(format!("configuration refused: {e}")))
        }),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            Exit::Ok
        }
        Err(Failure::Invalid(e)) => {
            eprintln!("idp-ratelimit: {e}");
            Exit::Invalid
        }
        Err(Failure::Usage(e)) => {
            eprintln!("idp-ratelimit: {e}");
            Exit::Usage
        }
    }
}

fn main() -> ExitCode {
    ExitCode::from(run(Cli::parse().command) as u8)
}
