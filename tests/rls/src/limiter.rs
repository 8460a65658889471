//! `ShouldRateLimit` over Redis, reproducing envoyproxy/ratelimit's fixed
//! window cache (`src/redis/fixed_cache_impl.go` `DoLimit`, with its
//! defaults: no local over-limit cache, no `stop_cache_key_increment_when_overlimit`,
//! no expiration jitter) and `src/limiter/base_limiter.go`:
//!
//! * hits per descriptor: its own `hits_addend` when set, even to 0 (a peek);
//!   else the request's, 0 meaning 1 (`utils.GetHitsAddends`);
//! * cache key `<domain>_<key>_<value>_..._<window start>`, the window start
//!   being `now / unit * unit` (calendar-aligned; `GenerateCacheKey`);
//! * one pipeline of `INCRBY key hits` then `EXPIRE key unit` per limited
//!   descriptor, the decision taken on the value INCRBY returned: over the
//!   limit iff it exceeds `requests_per_unit` (`GetResponseDescriptorStatus`),
//!   so a refused hit is still counted, as in the real server;
//! * statuses: `OVER_LIMIT` with remaining 0, or `OK` with `limit - value`;
//!   `duration_until_reset` = `unit - now % unit` (`utils.CalculateReset`);
//!   a shadow-mode limit answers `OK`; a descriptor without a limit `OK`
//!   with no `current_limit`; an unlimited one `OK` with remaining `u32::MAX`;
//! * `overall_code` `OVER_LIMIT` iff any status is (`shouldRateLimitWorker`);
//! * a Redis error fails the whole call (the real server panics with a
//!   `RedisError` and its handler returns the error to the caller).

use std::time::{SystemTime, UNIX_EPOCH};

use idp_ratelimit::rls::proto::{
    Code, DescriptorStatus, Duration, RateLimit, RateLimitRequest, RateLimitResponse,
};

use crate::config::RateLimitConfig;

/// What the limiter needs from Redis: one pipeline of INCRBY + EXPIRE pairs,
/// returning each INCRBY's result.
pub trait Counter {
    async fn incr_and_expire(&self, ops: &[(String, u64, i64)]) -> Result<Vec<u64>, String>;
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A request the protocol refuses (`checkServiceErr`).
pub fn check(request: &RateLimitRequest) -> Result<(), String> {
    if request.domain.is_empty() {
        return Err("rate limit domain must not be empty".into());
    }
    if request.descriptors.is_empty() {
        return Err("rate limit descriptor list must not be empty".into());
    }
    Ok(())
}

pub async fn should_rate_limit(
    config: &RateLimitConfig,
    counter: &impl Counter,
    request: &RateLimitRequest,
    now: i64,
) -> Result<RateLimitResponse, String> {
    check(request)?;
    let limits: Vec<_> = request
        .descriptors
        .iter()
        .map(|d| config.limit(&request.domain, d))
        .collect();
    let hits: Vec<u64> = request
        .descriptors
        .iter()
        .map(|d| match d.hits_addend {
            Some(h) => h.value,
            None => u64::from(request.hits_addend.max(1)),
        })
        .collect();
    let mut ops = Vec::new();
    let mut op_of = vec![None; limits.len()];
    for (i, (d, limit)) in request.descriptors.iter().zip(&limits).enumerate() {
        let Some(limit) = limit.as_ref().filter(|l| !l.unlimited) else {
            continue;
        };
        let Some(divider) = limit.unit.seconds() else {
            return Err(format!("descriptor {i}: limit has no unit"));
        };
        let divider = divider as i64;
        let mut key = format!("{}_", request.domain);
        for e in &d.entries {
            key.push_str(&format!("{}_{}_", e.key, e.value));
        }
        key.push_str(&((now / divider) * divider).to_string());
        op_of[i] = Some(ops.len());
        ops.push((key, hits[i], divider));
    }
    let values = if ops.is_empty() {
        Vec::new()
    } else {
        counter.incr_and_expire(&ops).await?
    };
    let mut response = RateLimitResponse::default();
    let mut over = false;
    for (i, limit) in limits.iter().enumerate() {
        let status = match (limit, op_of[i].and_then(|o| values.get(o).zip(ops.get(o)))) {
            (Some(l), _) if l.unlimited => DescriptorStatus {
                code: Code::Ok as i32,
                limit_remaining: u32::MAX,
                ..Default::default()
            },
            (Some(l), Some((&after, (_, _, divider)))) => {
                let threshold = u64::from(l.requests_per_unit);
                let over_limit = after > threshold;
                let code = if over_limit && !l.shadow_mode {
                    over = true;
                    Code::OverLimit
                } else {
                    Code::Ok
                };
                DescriptorStatus {
                    code: code as i32,
                    current_limit: Some(RateLimit {
                        name: l.name.clone(),
                        requests_per_unit: l.requests_per_unit,
                        unit: l.unit as i32,
                    }),
                    limit_remaining: if over_limit {
                        0
                    } else {
                        (threshold - after) as u32
                    },
                    duration_until_reset: Some(Duration {
                        seconds: divider - now % divider,
                        nanos: 0,
                    }),
                }
            }
            _ => DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            },
        };
        response.statuses.push(status);
    }
    response.overall_code = if over { Code::OverLimit } else { Code::Ok } as i32;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use idp_ratelimit::rls::proto::{
        Entry, RateLimitDescriptor, RateLimitOverride, UInt64Value, Unit,
    };
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Redis' INCRBY, in memory; records each EXPIRE.
    #[derive(Default)]
    struct Mem {
        values: Mutex<HashMap<String, u64>>,
        expires: Mutex<Vec<(String, i64)>>,
    }

    impl Counter for Mem {
        async fn incr_and_expire(&self, ops: &[(String, u64, i64)]) -> Result<Vec<u64>, String> {
            let mut v = self.values.lock().unwrap();
            let mut out = Vec::new();
            for (k, by, ttl) in ops {
                let e = v.entry(k.clone()).or_default();
                *e += by;
                out.push(*e);
                self.expires.lock().unwrap().push((k.clone(), *ttl));
            }
            Ok(out)
        }
    }

    const YAML: &str = "domain: d\ndescriptors:\n  - key: bucket\n    value: b\n    descriptors:\n      - key: scope\n        rate_limit: {unit: minute, requests_per_unit: 2}\n  - key: bucket\n    value: s\n    descriptors:\n      - key: scope\n        rate_limit: {unit: hour, requests_per_unit: 1}\n        shadow_mode: true\n";

    fn desc(bucket: &str, hits: Option<u64>) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: "bucket".into(),
                    value: bucket.into(),
                },
                Entry {
                    key: "scope".into(),
                    value: "acme".into(),
                },
            ],
            limit: None,
            hits_addend: hits.map(|value| UInt64Value { value }),
        }
    }

    fn req(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
        RateLimitRequest {
            domain: "d".into(),
            descriptors,
            hits_addend: 0,
        }
    }

    fn run(c: &RateLimitConfig, m: &Mem, r: &RateLimitRequest, now: i64) -> RateLimitResponse {
        futures_lite(should_rate_limit(c, m, r, now)).unwrap()
    }

    /// The futures here never wait: poll once.
    fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(f)
    }

    #[test]
    fn counts_on_the_value_written_in_calendar_windows() {
        let c = RateLimitConfig::parse(YAML).unwrap();
        let m = Mem::default();
        let now = 1_800_000_042; // 42 s into a minute
        let r = req(vec![desc("b", None)]);
        let a = run(&c, &m, &r, now);
        assert_eq!(a.overall_code(), Code::Ok);
        assert_eq!(a.statuses[0].limit_remaining, 1);
        assert_eq!(a.statuses[0].duration_until_reset.unwrap().seconds, 18);
        assert_eq!(run(&c, &m, &r, now).statuses[0].limit_remaining, 0);
        let refused = run(&c, &m, &r, now + 17);
        assert_eq!(refused.overall_code(), Code::OverLimit);
        assert_eq!(refused.statuses[0].code(), Code::OverLimit);
        assert_eq!(refused.statuses[0].duration_until_reset.unwrap().seconds, 1);
        // The refused hit was counted too, and the key expires after one unit.
        let key = "d_bucket_b_scope_acme_1800000000".to_string();
        assert_eq!(m.values.lock().unwrap()[&key], 3);
        assert!(m
            .expires
            .lock()
            .unwrap()
            .iter()
            .all(|(k, t)| *k == key && *t == 60));
        // The next calendar minute is a new key.
        assert_eq!(run(&c, &m, &r, now + 18).statuses[0].limit_remaining, 1);
    }

    #[test]
    fn a_zero_hits_addend_peeks_and_the_request_level_zero_means_one() {
        let c = RateLimitConfig::parse(YAML).unwrap();
        let m = Mem::default();
        let now = 1_800_000_000;
        let peek = req(vec![desc("b", Some(0))]);
        assert_eq!(run(&c, &m, &peek, now).statuses[0].limit_remaining, 2);
        let mut two = req(vec![desc("b", None)]);
        two.hits_addend = 2;
        assert_eq!(run(&c, &m, &two, now).statuses[0].limit_remaining, 0);
        let p = run(&c, &m, &peek, now);
        assert_eq!(
            (p.overall_code(), p.statuses[0].limit_remaining),
            (Code::Ok, 0)
        );
    }

    #[test]
    fn statuses_per_descriptor_shadow_unknown_and_override() {
        let c = RateLimitConfig::parse(YAML).unwrap();
        let m = Mem::default();
        let now = 1_800_000_000;
        let mut o = desc("nope", None);
        o.limit = Some(RateLimitOverride {
            requests_per_unit: 1,
            unit: Unit::Second as i32,
        });
        let r = req(vec![desc("s", None), desc("nope", None), o]);
        let a = run(&c, &m, &r, now);
        assert_eq!(a.statuses.len(), 3);
        assert_eq!(a.statuses[1].current_limit, None);
        assert_eq!(
            a.statuses[2].current_limit.as_ref().unwrap().unit(),
            Unit::Second
        );
        let b = run(&c, &m, &r, now);
        // Shadow: over its limit, still OK, remaining 0.
        assert_eq!(
            (b.statuses[0].code(), b.statuses[0].limit_remaining),
            (Code::Ok, 0)
        );
        assert_eq!(b.statuses[2].code(), Code::OverLimit);
        assert_eq!(b.overall_code(), Code::OverLimit);
    }

    #[test]
    fn empty_domain_or_descriptors_are_errors() {
        let c = RateLimitConfig::parse(YAML).unwrap();
        let m = Mem::default();
        assert!(futures_lite(should_rate_limit(&c, &m, &req(vec![]), 0)).is_err());
        let mut r = req(vec![desc("b", None)]);
        r.domain.clear();
        assert!(futures_lite(should_rate_limit(&c, &m, &r, 0)).is_err());
    }
}
