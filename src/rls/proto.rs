//! The few protobuf messages of Envoy's rate-limit service protocol the filter
//! speaks, written by hand with `prost` derives (no protoc, no build script).
//! Field numbers and types follow
//! `envoy/service/ratelimit/v3/rls.proto` and
//! `envoy/extensions/common/ratelimit/v3/ratelimit.proto`; fields the filter
//! never reads (quota, dynamic metadata, raw body) are left out, which
//! protobuf decoding skips.

/// The gRPC service and method (`/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`).
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// 0 means 1 to both servers (envoyproxy/ratelimit `utils.GetHitsAddends`,
    /// Limitador `should_rate_limit`); per-descriptor `hits_addend` wins.
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    /// Replaces the server's configured limit for this descriptor
    /// (envoyproxy/ratelimit `GetLimit`: the override is used as is, never in shadow mode).
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
    /// `google.protobuf.UInt64Value`: when set (even to 0), it is this
    /// descriptor's hits; 0 checks without counting.
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<UInt64Value>,
}

/// `RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `RateLimitDescriptor.RateLimitOverride`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
}

/// `google.protobuf.UInt64Value`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `RateLimitResponse.Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

/// `RateLimitResponse.RateLimit.Unit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Unit {
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
    Week = 7,
}

impl Unit {
    /// The unit's length in seconds, as envoyproxy/ratelimit's
    /// `utils.UnitToDivider` has it (a month is 30 days, a year 365).
    pub fn seconds(self) -> Option<u64> {
        Some(match self {
            Unit::Unknown => return None,
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
            Unit::Week => 7 * 86_400,
            Unit::Month => 30 * 86_400,
            Unit::Year => 365 * 86_400,
        })
    }

    /// The unit exactly `seconds` long, if there is one.
    pub fn of_seconds(seconds: u64) -> Option<Unit> {
        [
            Unit::Second,
            Unit::Minute,
            Unit::Hour,
            Unit::Day,
            Unit::Week,
            Unit::Month,
            Unit::Year,
        ]
        .into_iter()
        .find(|u| u.seconds() == Some(seconds))
    }

    /// The name envoyproxy/ratelimit's config.yaml uses (`unit: minute`).
    pub fn yaml_name(self) -> &'static str {
        match self {
            Unit::Unknown => "unknown",
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }
}

/// `envoy.service.ratelimit.v3.RateLimitResponse` (the fields the filter reads).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
    #[prost(message, repeated, tag = "3")]
    pub response_headers_to_add: Vec<HeaderValue>,
    #[prost(message, repeated, tag = "4")]
    pub request_headers_to_add: Vec<HeaderValue>,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimit {
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DescriptorStatus {
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

/// `envoy.config.core.v3.HeaderValue` (key, value; `raw_value` unused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `envoy.config.core.v3.GrpcService` with only `envoy_grpc` (field 1).
/// The filter names its cluster this way rather than by a bare name: Envoy
/// then skips its bare-name lookup, whose "no such cluster" answer
/// (`BadArgument`) the proxy-wasm SDK's `dispatch_grpc_call` panics on.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrpcService {
    #[prost(message, optional, tag = "1")]
    pub envoy_grpc: Option<EnvoyGrpc>,
}

/// `GrpcService.EnvoyGrpc`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EnvoyGrpc {
    #[prost(string, tag = "1")]
    pub cluster_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn request_encodes_as_protoc_would() {
        let req = RateLimitRequest {
            domain: "d".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![Entry {
                    key: "k".into(),
                    value: "v".into(),
                }],
                limit: None,
                hits_addend: Some(UInt64Value { value: 0 }),
            }],
            hits_addend: 1,
        };
        // Hand-assembled from the .proto field numbers and wire types.
        let expected: Vec<u8> = vec![
            0x0a, 1, b'd', // 1: domain
            0x12, 10, // 2: descriptors, 10 bytes
            0x0a, 6, 0x0a, 1, b'k', 0x12, 1, b'v', // 1: entries {k, v}
            0x1a, 0, // 3: hits_addend {} (value 0 is the default: no bytes)
            0x18, 1, // 3: hits_addend 1
        ];
        assert_eq!(req.encode_to_vec(), expected);
        assert_eq!(RateLimitRequest::decode(&expected[..]).unwrap(), req);
    }

    #[test]
    fn an_explicit_zero_hits_addend_survives_a_round_trip() {
        let d = RateLimitDescriptor {
            entries: vec![],
            limit: Some(RateLimitOverride {
                requests_per_unit: 5000,
                unit: Unit::Hour as i32,
            }),
            hits_addend: Some(UInt64Value { value: 0 }),
        };
        let back = RateLimitDescriptor::decode(&d.encode_to_vec()[..]).unwrap();
        assert_eq!(back.hits_addend, Some(UInt64Value { value: 0 }));
        assert_eq!(back.limit.unwrap().unit, Unit::Hour as i32);
        // Left out, it is absent (the server then uses the request's).
        let none = RateLimitDescriptor::default();
        assert!(RateLimitDescriptor::decode(&none.encode_to_vec()[..])
            .unwrap()
            .hits_addend
            .is_none());
    }

    #[test]
    fn response_decodes_statuses_and_skips_unknown_fields() {
        let resp = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![
                DescriptorStatus {
                    code: Code::Ok as i32,
                    current_limit: Some(RateLimit {
                        name: String::new(),
                        requests_per_unit: 600,
                        unit: Unit::Minute as i32,
                    }),
                    limit_remaining: 12,
                    duration_until_reset: Some(Duration {
                        seconds: 31,
                        nanos: 0,
                    }),
                },
                DescriptorStatus {
                    code: Code::OverLimit as i32,
                    ..Default::default()
                },
            ],
            response_headers_to_add: vec![HeaderValue {
                key: "X-RateLimit-Remaining".into(),
                value: "0".into(),
            }],
            request_headers_to_add: vec![],
        };
        let mut bytes = resp.encode_to_vec();
        // Fields this module leaves out (5: raw_body, 7: quota) are skipped.
        bytes.extend_from_slice(&[0x2a, 2, b'h', b'i', 0x3a, 0]);
        let back = RateLimitResponse::decode(&bytes[..]).unwrap();
        assert_eq!(back, resp);
        assert_eq!(back.overall_code(), Code::OverLimit);
        assert_eq!(
            back.statuses[0].current_limit.as_ref().unwrap().unit(),
            Unit::Minute
        );
        // Garbage is an error, not a panic.
        assert!(RateLimitResponse::decode(&[0x12, 50, 1][..]).is_err());
    }

    #[test]
    fn grpc_service_names_the_cluster() {
        let s = GrpcService {
            envoy_grpc: Some(EnvoyGrpc {
                cluster_name: "rls".into(),
            }),
        };
        assert_eq!(s.encode_to_vec(), vec![0x0a, 5, 0x0a, 3, b'r', b'l', b's']);
    }

    #[test]
    fn the_longest_cluster_name_encodes_as_valid_utf8() {
        let name = "c".repeat(crate::rls::config::MAX_CLUSTER_NAME);
        let bytes = GrpcService {
            envoy_grpc: Some(EnvoyGrpc { cluster_name: name }),
        }
        .encode_to_vec();
        assert!(std::str::from_utf8(&bytes).is_ok());
        let longer = GrpcService {
            envoy_grpc: Some(EnvoyGrpc {
                cluster_name: "c".repeat(crate::rls::config::MAX_CLUSTER_NAME + 1),
            }),
        }
        .encode_to_vec();
        assert!(std::str::from_utf8(&longer).is_err());
    }

    #[test]
    fn units_match_envoy_ratelimit_dividers() {
        assert_eq!(Unit::Minute.seconds(), Some(60));
        assert_eq!(Unit::of_seconds(3600), Some(Unit::Hour));
        assert_eq!(Unit::of_seconds(7), None);
        assert_eq!(Unit::Unknown.seconds(), None);
    }
}
