//! envoyproxy/ratelimit's `config.yaml` (the subset `idp-ratelimit
//! rls-config` writes, plus `unlimited` and `name`), and its descriptor
//! lookup, as `src/config/config_impl.go` (`loadDescriptors`, `GetLimit`) has
//! it: at each level an entry matches `key_value` first, then `key` alone;
//! the limit is the one at the level of the descriptor's *last* entry; a
//! request-supplied `limit` override is used as is (never in shadow mode),
//! but only for a known domain. Wildcard values (`value: foo*`) are not
//! reproduced: the generated configs never use them.

use std::collections::HashMap;

use idp_ratelimit::rls::proto::{RateLimitDescriptor, Unit};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlRoot {
    domain: String,
    #[serde(default)]
    descriptors: Vec<YamlDescriptor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlDescriptor {
    key: String,
    value: Option<String>,
    rate_limit: Option<YamlRateLimit>,
    #[serde(default)]
    descriptors: Vec<YamlDescriptor>,
    #[serde(default)]
    shadow_mode: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlRateLimit {
    unit: Option<String>,
    requests_per_unit: Option<u32>,
    #[serde(default)]
    unlimited: bool,
    name: Option<String>,
}

/// A configured (or overriding) limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub requests_per_unit: u32,
    pub unit: Unit,
    pub unlimited: bool,
    pub shadow_mode: bool,
    pub name: String,
}

#[derive(Default)]
struct Node {
    limit: Option<Limit>,
    children: HashMap<String, Node>,
}

pub struct RateLimitConfig {
    domain: String,
    root: HashMap<String, Node>,
}

fn unit(name: &str) -> Result<Unit, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "second" => Unit::Second,
        "minute" => Unit::Minute,
        "hour" => Unit::Hour,
        "day" => Unit::Day,
        "week" => Unit::Week,
        "month" => Unit::Month,
        "year" => Unit::Year,
        _ => return Err(format!("invalid rate limit unit {name:?}")),
    })
}

fn load(descriptors: Vec<YamlDescriptor>, parent: &str) -> Result<HashMap<String, Node>, String> {
    let mut map = HashMap::new();
    for d in descriptors {
        if d.key.is_empty() {
            return Err(format!("{parent}: descriptor has empty key"));
        }
        let key = match &d.value {
            Some(v) => format!("{}_{v}", d.key),
            None => d.key.clone(),
        };
        if map.contains_key(&key) {
            return Err(format!(
                "{parent}: duplicate descriptor composite key {key:?}"
            ));
        }
        let limit = match d.rate_limit {
            None => None,
            Some(r) if r.unlimited => {
                if r.unit.is_some() || r.requests_per_unit.is_some() {
                    return Err(format!(
                        "{key}: should not specify rate limit unit when unlimited"
                    ));
                }
                Some(Limit {
                    requests_per_unit: 0,
                    unit: Unit::Unknown,
                    unlimited: true,
                    shadow_mode: d.shadow_mode,
                    name: r.name.unwrap_or_default(),
                })
            }
            Some(r) => Some(Limit {
                requests_per_unit: r.requests_per_unit.unwrap_or(0),
                unit: unit(r.unit.as_deref().unwrap_or(""))?,
                unlimited: false,
                shadow_mode: d.shadow_mode,
                name: r.name.unwrap_or_default(),
            }),
        };
        let children = load(d.descriptors, &key)?;
        map.insert(key, Node { limit, children });
    }
    Ok(map)
}

impl RateLimitConfig {
    pub fn parse(yaml: &str) -> Result<RateLimitConfig, String> {
        let root: YamlRoot = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        if root.domain.is_empty() {
            return Err("config file cannot have empty domain".into());
        }
        Ok(RateLimitConfig {
            root: load(root.descriptors, &root.domain)?,
            domain: root.domain,
        })
    }

    /// The limit for one descriptor (`GetLimit`).
    pub fn limit(&self, domain: &str, descriptor: &RateLimitDescriptor) -> Option<Limit> {
        if domain != self.domain {
            return None;
        }
        if let Some(o) = &descriptor.limit {
            return Some(Limit {
                requests_per_unit: o.requests_per_unit,
                unit: Unit::try_from(o.unit).unwrap_or(Unit::Unknown),
                unlimited: false,
                shadow_mode: false,
                name: String::new(),
            });
        }
        let mut level = &self.root;
        let mut found = None;
        let last = descriptor.entries.len().checked_sub(1)?;
        for (i, e) in descriptor.entries.iter().enumerate() {
            let node = level
                .get(&format!("{}_{}", e.key, e.value))
                .or_else(|| level.get(&e.key))?;
            if i == last {
                found = node.limit.clone();
            }
            if node.children.is_empty() {
                break;
            }
            level = &node.children;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idp_ratelimit::rls::proto::{Entry, RateLimitOverride};

    fn d(entries: &[(&str, &str)]) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    const YAML: &str = r#"
domain: "d"
descriptors:
  - key: bucket
    value: "okta.management.users"
    descriptors:
      - key: scope
        rate_limit:
          unit: minute
          requests_per_unit: 600
  - key: bucket
    value: "vip"
    rate_limit: {unlimited: true}
"#;

    #[test]
    fn the_last_entry_decides_and_key_alone_matches_any_value() {
        let c = RateLimitConfig::parse(YAML).unwrap();
        let l = c
            .limit(
                "d",
                &d(&[("bucket", "okta.management.users"), ("scope", "a.okta.com")]),
            )
            .unwrap();
        assert_eq!((l.requests_per_unit, l.unit), (600, Unit::Minute));
        // One entry only: the limit sits one level deeper.
        assert_eq!(
            c.limit("d", &d(&[("bucket", "okta.management.users")])),
            None
        );
        assert_eq!(
            c.limit("d", &d(&[("bucket", "other"), ("scope", "x")])),
            None
        );
        assert_eq!(c.limit("other", &d(&[("bucket", "vip")])), None);
        assert!(c.limit("d", &d(&[("bucket", "vip")])).unwrap().unlimited);
    }

    #[test]
    fn an_override_needs_a_known_domain_and_is_never_shadowed() {
        let c = RateLimitConfig::parse(YAML).unwrap();
        let mut desc = d(&[("anything", "x")]);
        desc.limit = Some(RateLimitOverride {
            requests_per_unit: 3,
            unit: Unit::Second as i32,
        });
        let l = c.limit("d", &desc).unwrap();
        assert_eq!(
            (l.requests_per_unit, l.unit, l.shadow_mode),
            (3, Unit::Second, false)
        );
        assert_eq!(c.limit("nope", &desc), None);
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(RateLimitConfig::parse("domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n").is_err());
        assert!(RateLimitConfig::parse("domain: d\nextra: 1\n").is_err());
        assert!(RateLimitConfig::parse("domain: \"\"\n").is_err());
    }
}
