//! What the rate-limit service's answer says about each bucket asked, for
//! either server. envoyproxy/ratelimit returns one `DescriptorStatus` per
//! descriptor (`src/service/ratelimit.go`); Limitador returns none, only the
//! overall code and, with `-H DRAFT_VERSION_03`, the headers of the counter
//! with the least remaining (`limitador-server/src/envoy_rls/server.rs`).

use prost::Message;

use crate::rls::config::Server;
use crate::rls::draft03;
use crate::rls::proto::{Code, RateLimitResponse};

/// One bucket's state at the service after this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteStatus {
    pub over_limit: bool,
    pub limit: u64,
    pub remaining: u64,
    pub reset_in_us: u64,
}

/// The service's answer, per bucket asked (same order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub over_limit: bool,
    /// `None`: the answer says nothing about that bucket (Limitador reports
    /// only the tightest; envoyproxy/ratelimit gives no `current_limit` when
    /// its config has no limit for the descriptor).
    pub statuses: Vec<Option<RemoteStatus>>,
}

/// Decodes and reads a `ShouldRateLimit` answer for `asked` bucket ids.
/// An error is a failure of the service (the caller's `on_failure` applies).
pub fn read(server: Server, bytes: &[u8], asked: &[&str]) -> Result<Answer, String> {
    let resp = RateLimitResponse::decode(bytes).map_err(|e| format!("undecodable answer: {e}"))?;
    let over_limit = match resp.overall_code() {
        Code::Ok => false,
        Code::OverLimit => true,
        Code::Unknown => return Err("overall_code UNKNOWN".into()),
    };
    let statuses = match server {
        Server::EnvoyRatelimit => {
            if resp.statuses.len() != asked.len() {
                return Err(format!(
                    "{} statuses for {} descriptors",
                    resp.statuses.len(),
                    asked.len()
                ));
            }
            resp.statuses
                .iter()
                .map(|s| {
                    let limit = s.current_limit.as_ref()?;
                    let reset = s.duration_until_reset.unwrap_or_default();
                    Some(RemoteStatus {
                        over_limit: s.code() == Code::OverLimit,
                        limit: u64::from(limit.requests_per_unit),
                        remaining: u64::from(s.limit_remaining),
                        reset_in_us: u64::try_from(reset.seconds)
                            .unwrap_or(0)
                            .saturating_mul(1_000_000)
                            .saturating_add(u64::try_from(reset.nanos / 1000).unwrap_or(0)),
                    })
                })
                .collect()
        }
        Server::Limitador => {
            let headers: Vec<(String, String)> = resp
                .response_headers_to_add
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect();
            let mut statuses = vec![None; asked.len()];
            if let Some(d) = draft03::parse(&headers) {
                // The generated limits are named by bucket id; an unnamed
                // counter can only be placed when one bucket was asked.
                let at = match &d.name {
                    Some(n) => asked.iter().position(|a| a == n),
                    None => (asked.len() == 1).then_some(0),
                };
                if let Some(slot) = at.and_then(|i| statuses.get_mut(i)) {
                    *slot = Some(RemoteStatus {
                        over_limit,
                        limit: d.limit,
                        remaining: d.remaining,
                        reset_in_us: d.reset_secs.unwrap_or(0).saturating_mul(1_000_000),
                    });
                }
            }
            statuses
        }
    };
    Ok(Answer {
        over_limit,
        statuses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rls::proto::{DescriptorStatus, Duration, HeaderValue, RateLimit, Unit};

    fn status(code: Code, limit: u32, remaining: u32, reset: i64) -> DescriptorStatus {
        DescriptorStatus {
            code: code as i32,
            current_limit: Some(RateLimit {
                name: String::new(),
                requests_per_unit: limit,
                unit: Unit::Minute as i32,
            }),
            limit_remaining: remaining,
            duration_until_reset: Some(Duration {
                seconds: reset,
                nanos: 500_000_000,
            }),
        }
    }

    #[test]
    fn envoy_ratelimit_statuses_are_read_per_descriptor() {
        let resp = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![
                status(Code::Ok, 600, 7, 30),
                status(Code::OverLimit, 100, 0, 5),
                DescriptorStatus {
                    code: Code::Ok as i32,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let a = read(
            Server::EnvoyRatelimit,
            &resp.encode_to_vec(),
            &["a", "b", "c"],
        )
        .unwrap();
        assert!(a.over_limit);
        assert_eq!(
            a.statuses[0],
            Some(RemoteStatus {
                over_limit: false,
                limit: 600,
                remaining: 7,
                reset_in_us: 30_500_000
            })
        );
        assert!(a.statuses[1].unwrap().over_limit);
        assert_eq!(a.statuses[2], None);
        // A status count that does not match is a broken answer.
        assert!(read(Server::EnvoyRatelimit, &resp.encode_to_vec(), &["a"]).is_err());
    }

    #[test]
    fn unknown_code_and_garbage_are_failures() {
        let unknown = RateLimitResponse::default().encode_to_vec();
        assert_eq!(
            read(Server::EnvoyRatelimit, &unknown, &[]).unwrap_err(),
            "overall_code UNKNOWN"
        );
        assert!(read(Server::Limitador, &[0xff, 0xff], &["a"]).is_err());
    }

    #[test]
    fn limitador_headers_land_on_the_named_bucket() {
        let resp = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            response_headers_to_add: vec![
                HeaderValue {
                    key: "X-RateLimit-Limit".into(),
                    value: "100, 100;w=60;name=\"b\", 600;w=60;name=\"a\"".into(),
                },
                HeaderValue {
                    key: "X-RateLimit-Remaining".into(),
                    value: "0".into(),
                },
                HeaderValue {
                    key: "X-RateLimit-Reset".into(),
                    value: "12".into(),
                },
            ],
            ..Default::default()
        };
        let a = read(Server::Limitador, &resp.encode_to_vec(), &["a", "b"]).unwrap();
        assert!(a.over_limit);
        assert_eq!(a.statuses[0], None);
        assert_eq!(
            a.statuses[1],
            Some(RemoteStatus {
                over_limit: true,
                limit: 100,
                remaining: 0,
                reset_in_us: 12_000_000
            })
        );
        // Without headers (Limitador started without -H): the code only.
        let bare = RateLimitResponse {
            overall_code: Code::Ok as i32,
            ..Default::default()
        };
        let a = read(Server::Limitador, &bare.encode_to_vec(), &["a"]).unwrap();
        assert_eq!((a.over_limit, a.statuses.clone()), (false, vec![None]));
    }
}
