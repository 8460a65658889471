//! Fleet mode: counting through Envoy's rate-limit service protocol
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), served by
//! envoyproxy/ratelimit or Kuadrant's Limitador. Pure logic, host-tested; the
//! one gRPC call per request lives in `filter.rs`.

pub mod config;
pub mod placement;
pub mod proto;

pub mod answer;
pub mod breaker;
pub mod conclude;
pub mod draft03;
/// Server configurations for envoyproxy/ratelimit and Limitador (host only).
#[cfg(not(target_arch = "wasm32"))]
pub mod generate;
pub mod request;

use crate::policy::Bucket;

/// Fleet mode as the engine runs it: the checked `fleet` section and, per
/// bucket, whether the rate-limit service counts it (`placement`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetPlan {
    pub config: config::Fleet,
    pub remote: Vec<bool>,
}

impl FleetPlan {
    pub fn new(config: config::Fleet, buckets: &[Bucket]) -> FleetPlan {
        let remote = buckets
            .iter()
            .map(|b| placement::placement(b, config.server).is_fleet())
            .collect();
        FleetPlan { config, remote }
    }
}
