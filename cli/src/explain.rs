//! `idp-ratelimit explain`: what the filter does with one request under a
//! configuration: the normalised path, the route that matched, every bucket
//! counted (limit, window, algorithm, scope, headroom) and the one whose
//! headers are reported, or that the path is exempt or not limited. The
//! routing and the decision are the engine's own, run on fresh counters.

use std::borrow::Cow;

use idp_ratelimit::config::Upstream;
use idp_ratelimit::configure::{configure, Configured};
use idp_ratelimit::engine::{Count, RequestFacts, Verdict};
use idp_ratelimit::policy::Mode;
use idp_ratelimit::policy::Resolved;
use idp_ratelimit::response::HeaderStyle;
use idp_ratelimit::store::MemoryStore;
use serde_json::{json, Value};

use crate::check::KEY_PREFIX;
use crate::{describe, edit, Failure};

/// A request as `explain` is given it.
pub struct Request {
    pub method: String,
    /// The raw `:path`, query and all.
    pub path: String,
    pub authority: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    /// `ip:port`, as Envoy's `source.address`.
    pub source: String,
}

impl RequestFacts for Request {
    fn method(&self) -> Option<Cow<'_, str>> {
        Some(self.method.as_str().into())
    }
    fn path(&self) -> Option<Cow<'_, str>> {
        Some(self.path.as_str().into())
    }
    fn authority(&self) -> Option<Cow<'_, str>> {
        Some(self.authority.as_str().into())
    }
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str().into())
    }
    fn source_address(&self) -> Option<String> {
        Some(self.source.clone())
    }
}

/// Any fixed time: `explain` reports no times, only which buckets count.
const NOW_US: u64 = 1_800_000_000_000_000;

struct Row {
    index: usize,
    counted: bool,
    reported: bool,
    /// The limit before `headroom_percent`, where it differs.
    published: Option<u64>,
}

pub fn run(bytes: &[u8], request: &Request, as_json: bool) -> Result<String, Failure> {
    let refused = |e: idp_ratelimit::configure::Refusal| {
        Failure::Invalid(format!("configuration refused: {e}"))
    };
    let Configured {
        plan,
        edition,
        mut engine,
    } = configure(bytes, KEY_PREFIX).map_err(refused)?;
    // Limits as they were before headroom: the same configuration without it.
    let published = match edit::without(bytes, "headroom_percent") {
        Some(b) => Some(configure(&b, KEY_PREFIX).map_err(refused)?.engine),
        None => None,
    };
    let normalised = idp_ratelimit::path::normalize(&request.path);
    let resolved = engine
        .policy
        .resolve_route(&request.method, &normalised)
        .map(|(p, r)| (p.to_string(), r));
    let mut rows = Vec::new();
    if let Some((_, Resolved::Buckets(indexes))) = &resolved {
        // IETF headers name the reported bucket; fresh counters admit.
        engine.headers = HeaderStyle::Ietf;
        let store = MemoryStore::new();
        engine
            .create_keys(&store)
            .map_err(|e| Failure::Invalid(format!("counter table: {e}")))?;
        let decision = engine.decide(&store, request, NOW_US, 0);
        let reported = match &decision.verdict {
            Verdict::Forward { headers, .. } => headers
                .iter()
                .find(|(n, _)| *n == "ratelimit")
                .and_then(|(_, v)| v.split('"').nth(1).map(str::to_string)),
            _ => None,
        };
        for &index in indexes {
            let Some(b) = engine.policy.buckets.get(index) else {
                continue;
            };
            let published = published
                .as_ref()
                .and_then(|p| p.policy.buckets.iter().find(|o| o.id == b.id))
                .map(|o| o.limit.limit)
                .filter(|&l| l != b.limit.limit);
            rows.push(Row {
                index,
                counted: decision
                    .counts
                    .iter()
                    .any(|(i, c)| *i == index && *c != Count::Rejected),
                reported: reported.as_deref() == Some(b.id.as_str()),
                published,
            });
        }
    }
    let mode = describe::mode(engine.mode);
    let vendor_upstream = engine.upstream == Upstream::Vendor;
    let verdict = match &resolved {
        None => "not_limited",
        Some((_, Resolved::Exempt)) => "exempt",
        // The real OneLogin answers its own status endpoint.
        Some((_, Resolved::RateLimitStatus(_))) if vendor_upstream => "forwarded",
        Some((_, Resolved::RateLimitStatus(_))) => "status_endpoint",
        Some((_, Resolved::Buckets(_))) => "counted",
    };
    let route = resolved.as_ref().map(|(p, _)| p.as_str());
    let bucket = |r: &Row| engine.policy.buckets.get(r.index);
    if as_json {
        let buckets: Vec<Value> = rows
            .iter()
            .filter_map(|r| {
                let mut v = describe::bucket_json(bucket(r)?, r.published);
                let obj = v.as_object_mut()?;
                obj.insert("counted".into(), json!(r.counted));
                obj.insert("reported".into(), json!(r.reported));
                Some(v)
            })
            .collect();
        let reported = rows
            .iter()
            .find(|r| r.reported)
            .and_then(bucket)
            .map(|b| b.id.clone());
        let mut out = json!({
            "vendor": engine.vendor,
            "plan": plan,
            "mode": mode,
            "request": {"method": request.method, "path": request.path},
            "path": normalised,
            "route": route,
            "verdict": verdict,
            "buckets": buckets,
            "reported": reported,
        });
        if let (Some(e), Some(obj)) = (edition, out.as_object_mut()) {
            obj.insert("edition".into(), json!(e.name()));
        }
        return serde_json::to_string_pretty(&out)
            .map(|s| s + "\n")
            .map_err(|e| Failure::Invalid(e.to_string()));
    }
    let mut head = vec![
        vec![
            "request".to_string(),
            format!("{} {}", request.method, request.path),
        ],
        vec!["path".to_string(), format!("{normalised} (normalised)")],
        vec![
            "route".to_string(),
            route.unwrap_or("(none matches)").to_string(),
        ],
    ];
    let summary = match verdict {
        "not_limited" => "not limited: no route matches; no rate-limit headers".to_string(),
        "exempt" => "exempt: never limited, no rate-limit headers".to_string(),
        "status_endpoint" => {
            "answered by the filter: the caller's rate-limit status, not counted".to_string()
        }
        "forwarded" => "forwarded, not counted: the vendor answers the caller's rate-limit \
                        status (\"upstream\": \"vendor\")"
            .to_string(),
        _ => format!(
            "{}/{}, {mode}: counted in every bucket below; {}{}",
            engine.vendor,
            describe::plan(&plan, edition),
            match engine.mode {
                Mode::Enforce => "all must admit",
                Mode::Shadow => "none rejects (would-be rejections are counted)",
            },
            match vendor_upstream {
                true =>
                    "; and against what the vendor's last answer left (\"upstream\": \"vendor\")",
                false => "",
            }
        ),
    };
    head.push(vec!["verdict".to_string(), summary]);
    let mut out = describe::columns(&head);
    let table: Vec<Vec<String>> = rows
        .iter()
        .filter_map(|r| {
            let b = bucket(r)?;
            let mut limit = describe::limit(&b.limit);
            if let Some(p) = r.published {
                limit.push_str(&format!(" ({p} before headroom)"));
            }
            let note = if !r.counted {
                "not counted: its scope does not apply to this request"
            } else if r.reported {
                "reported"
            } else {
                ""
            };
            Some(vec![
                format!("  {}", b.id),
                limit,
                describe::algorithm(b.limit.algorithm).to_string(),
                describe::scope(&b.scope),
                note.to_string(),
            ])
        })
        .collect();
    out.push_str(&describe::columns(&table));
    if !rows.is_empty() {
        let reported = rows
            .iter()
            .find(|r| r.reported)
            .and_then(bucket)
            .map_or("none", |b| b.id.as_str());
        out.push_str(&format!(
            "headers  report the bucket closest to empty (fewest remaining, then the smaller \
             limit); on fresh counters: {reported}\n"
        ));
        if vendor_upstream {
            out.push_str(
                "         the vendor's own headers pass through instead, where its answer is \
                 usable\n",
            );
        }
    }
    Ok(out)
}
