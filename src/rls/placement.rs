//! Which buckets the rate-limit service counts and which stay in this Envoy,
//! and how exactly a server can express each. One rule, used by the filter
//! (what to send) and by the config generator (what to write), so the two
//! never disagree.

use crate::limiter::{Algorithm, MICROS_PER_SEC};
use crate::policy::{Bucket, Scope};
use crate::rls::config::Server;
use crate::rls::proto::Unit;

/// Where a bucket is counted in fleet mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// By the rate-limit service, as a fixed window of `window_secs`;
    /// `inexact` says how that differs from the vendor's own counting.
    Fleet {
        window_secs: u64,
        inexact: Option<String>,
    },
    /// In this Envoy's shared data, as without `fleet`, for `reason`.
    Local { reason: String },
}

impl Placement {
    pub fn is_fleet(&self) -> bool {
        matches!(self, Placement::Fleet { .. })
    }
}

/// The descriptor entry keys: `bucket` names the bucket id, `scope` the key
/// the bucket counts per (an org's host, a client IP, a header value).
pub const BUCKET_KEY: &str = "bucket";
pub const SCOPE_KEY: &str = "scope";

/// Where `bucket` is counted when `server` is the rate-limit service.
pub fn placement(bucket: &Bucket, server: Server) -> Placement {
    let local = |reason: &str| Placement::Local {
        reason: reason.to_string(),
    };
    if bucket.limit.algorithm == Algorithm::Concurrency {
        return local("import-job concurrency: a hold is given back when the job ends or fails, which a window counter cannot do");
    }
    if bucket.limit.algorithm == Algorithm::InFlight {
        return local("requests in flight: each is given back when its stream ends, which a window counter cannot do");
    }
    if matches!(bucket.scope, Scope::JwtSubjectWithScope(_)) {
        return local(
            "per-token SPA limit: keyed by the bearer token's subject, kept next to the token",
        );
    }
    let window_us = bucket.limit.window_us;
    if bucket.limit.algorithm == Algorithm::TokenBucket && window_us <= MICROS_PER_SEC {
        return local("per-second token bucket: kept in this Envoy as a shaper, a fleet-wide fixed second would admit bursts the vendor refuses");
    }
    if window_us % MICROS_PER_SEC != 0 {
        return local("window is not a whole number of seconds");
    }
    let window_secs = window_us / MICROS_PER_SEC;
    let aligned = "windows are calendar-aligned (they start at multiples of the unit since the epoch), the vendor's open at the first request";
    let inexact = match (server, bucket.limit.algorithm) {
        (Server::EnvoyRatelimit, _) if Unit::of_seconds(window_secs).is_none() => {
            return local("window is not one envoyproxy/ratelimit unit (second, minute, hour, day, week, month, year)");
        }
        (_, Algorithm::TokenBucket) => Some(format!(
            "a token bucket refilled over {window_secs} s counted as a fixed window: up to twice the limit can pass in {window_secs} s straddling a window boundary{}",
            match server {
                Server::EnvoyRatelimit => format!("; {aligned}"),
                Server::Limitador => String::new(),
            }
        )),
        (Server::EnvoyRatelimit, _) => Some(aligned.to_string()),
        (Server::Limitador, _) => None,
    };
    Placement::Fleet {
        window_secs,
        inexact,
    }
}

/// The scope value sent for a global bucket (an empty entry value is
/// refused by some servers).
pub const GLOBAL_SCOPE_VALUE: &str = "global";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn placements(json: &str, server: Server) -> Vec<(String, Placement)> {
        let c = parse(json.as_bytes()).unwrap();
        c.policy
            .buckets
            .iter()
            .map(|b| (b.id.clone(), placement(b, server)))
            .collect()
    }

    #[test]
    fn okta_and_onelogin_buckets_all_go_to_the_fleet() {
        for json in [
            r#"{"vendor": "okta", "plan": "enterprise"}"#,
            r#"{"vendor": "onelogin"}"#,
        ] {
            // Requests in flight (Okta's concurrency limits) stay in each Envoy.
            let in_flight = |id: &str| id == "okta.concurrency" || id.ends_with(".concurrent");
            for (id, p) in placements(json, Server::EnvoyRatelimit) {
                assert_eq!(p.is_fleet(), !in_flight(&id), "{id}: {p:?}");
            }
            for (id, p) in placements(json, Server::Limitador)
                .into_iter()
                .filter(|(id, _)| !in_flight(id))
            {
                assert!(
                    matches!(p, Placement::Fleet { inexact: None, .. }),
                    "{id}: {p:?}"
                );
            }
        }
    }

    #[test]
    fn auth0_keeps_per_second_buckets_jobs_and_spa_local() {
        let ps = placements(
            r#"{"vendor": "auth0", "plan": "enterprise-prod"}"#,
            Server::EnvoyRatelimit,
        );
        let get = |id: &str| ps.iter().find(|(i, _)| i.contains(id)).unwrap().1.clone();
        assert!(!get("import-jobs").is_fleet());
        assert!(ps.iter().any(|(_, p)| p.is_fleet()), "{ps:?}");
        for (id, p) in &ps {
            if let Placement::Fleet { inexact, .. } = p {
                assert!(inexact.as_deref().unwrap().contains("token bucket"), "{id}");
            }
        }
    }

    #[test]
    fn odd_windows_stay_local_for_envoy_ratelimit_only() {
        let json = r#"{"vendor": "okta", "plan": "enterprise",
            "overrides": [{"bucket": "okta.management.users", "window": 90}]}"#;
        let e = placements(json, Server::EnvoyRatelimit);
        let l = placements(json, Server::Limitador);
        let users = |ps: &[(String, Placement)]| {
            ps.iter()
                .find(|(i, _)| i == "okta.management.users")
                .unwrap()
                .1
                .clone()
        };
        assert!(!users(&e).is_fleet());
        assert_eq!(
            users(&l),
            Placement::Fleet {
                window_secs: 90,
                inexact: None
            }
        );
    }
}
