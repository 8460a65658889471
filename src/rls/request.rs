//! The one `ShouldRateLimit` request a request makes: one descriptor per
//! bucket the service counts, entries `bucket=<id>`, `scope=<key>`.

use prost::Message;

use crate::engine::Remote;
use crate::policy::Bucket;
use crate::rls::placement::{BUCKET_KEY, GLOBAL_SCOPE_VALUE, SCOPE_KEY};
use crate::rls::proto::{Entry, RateLimitDescriptor, RateLimitRequest, UInt64Value};

/// The serialized request for `remote` (indexes into `buckets`).
pub fn encode(domain: &str, buckets: &[Bucket], remote: &[Remote]) -> Vec<u8> {
    let descriptors = remote
        .iter()
        .filter_map(|r| {
            let b = buckets.get(r.bucket)?;
            let scope = if r.key.is_empty() {
                GLOBAL_SCOPE_VALUE.to_string()
            } else {
                r.key.clone()
            };
            Some(RateLimitDescriptor {
                entries: vec![
                    Entry {
                        key: BUCKET_KEY.to_string(),
                        value: b.id.clone(),
                    },
                    Entry {
                        key: SCOPE_KEY.to_string(),
                        value: scope,
                    },
                ],
                limit: None,
                // Only a peek says so: 1 is what both servers assume.
                hits_addend: (r.hits != 1).then_some(UInt64Value { value: r.hits }),
            })
        })
        .collect();
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors,
        hits_addend: 1,
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::engine::VendorCheck;

    #[test]
    fn one_descriptor_per_bucket_naming_id_and_scope() {
        let c = parse(br#"{"vendor": "okta", "plan": "enterprise"}"#).unwrap();
        let b = &c.policy.buckets;
        let i = b
            .iter()
            .position(|b| b.id == "okta.management.users")
            .unwrap();
        let bytes = encode(
            "dom",
            b,
            &[
                Remote {
                    bucket: i,
                    key: "acme.okta.com".into(),
                    hits: 1,
                    vendor: VendorCheck::Open,
                },
                Remote {
                    bucket: i,
                    key: String::new(),
                    hits: 0,
                    vendor: VendorCheck::Open,
                },
            ],
        );
        let req = RateLimitRequest::decode(&bytes[..]).unwrap();
        assert_eq!(req.domain, "dom");
        assert_eq!(req.hits_addend, 1);
        let d = &req.descriptors;
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].entries[0].key.as_str(), d[0].entries[0].value.as_str()),
            ("bucket", "okta.management.users")
        );
        assert_eq!(
            (d[0].entries[1].key.as_str(), d[0].entries[1].value.as_str()),
            ("scope", "acme.okta.com")
        );
        assert_eq!(d[0].hits_addend, None);
        assert_eq!(d[1].entries[1].value, "global");
        assert_eq!(d[1].hits_addend, Some(UInt64Value { value: 0 }));
    }
}
