//! Fleet mode: counting through Envoy's rate-limit service protocol
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), served by
//! envoyproxy/ratelimit or Kuadrant's Limitador. Pure logic, host-tested; the
//! one gRPC call per request lives in `filter.rs`.

pub mod config;
pub mod proto;
