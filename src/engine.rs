//! The decision for one request: route it, count it in every bucket that
//! applies, and say what to answer. Pure logic over a `SharedStore` and a
//! `RequestFacts`, so the whole path runs in host tests.

use crate::config::{Config, Dialect, HeaderStyle, Mode};
use crate::identity;
use crate::limiter::{Outcome, State};
use crate::policy::{Policy, Resolved, Scope};
use crate::response::{self, Headers, LocalReply, Report};
use crate::router::RouteError;
use crate::store::{SharedStore, StoreError};
use crate::table::{Place, SlotTable};

/// What the engine may ask of a request. Each is fetched only when needed.
pub trait RequestFacts {
    fn method(&self) -> Option<String>;
    fn path(&self) -> Option<String>;
    fn authority(&self) -> Option<String>;
    fn header(&self, name: &str) -> Option<String>;
    /// Envoy's `source.address` (`ip:port`).
    fn source_address(&self) -> Option<String>;
}

/// Something a request took that must be given back if the upstream fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub bucket: usize,
    pub fingerprint: u64,
    pub place: Place,
    pub state: State,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No limited route: forward untouched.
    Unlimited,
    /// Forward; add `headers` to the response; release `holds` if the
    /// upstream answers with a non-2xx status.
    Forward { headers: Headers, holds: Vec<Hold> },
    /// Answer here (a 429, or OneLogin's status endpoint).
    Reply(LocalReply),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Admitted,
    Rejected,
    ShadowRejected,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Per bucket consulted: what happened there (for metrics).
    pub counts: Vec<(usize, Count)>,
    /// The key a bucket refused (for the debug log).
    pub refused_key: Option<String>,
    /// Store failures; the bucket concerned let the request through.
    pub errors: Vec<StoreError>,
}

impl Decision {
    fn new(verdict: Verdict) -> Decision {
        Decision {
            verdict,
            counts: Vec::new(),
            refused_key: None,
            errors: Vec::new(),
        }
    }
}

pub struct Engine {
    pub vendor: String,
    pub dialect: Dialect,
    pub mode: Mode,
    pub headers: HeaderStyle,
    pub policy: Policy,
    pub table: SlotTable,
}

impl Engine {
    /// `key_prefix` namespaces this filter instance's shared-data keys.
    pub fn new(config: Config, key_prefix: &str) -> Result<Engine, RouteError> {
        let groups = (config.max_keys / crate::table::WAYS as u32).max(1);
        Ok(Engine {
            vendor: config.vendor,
            dialect: config.dialect,
            mode: config.mode,
            headers: config.headers,
            policy: Policy::compile(config.policy)?,
            table: SlotTable::new(key_prefix, groups),
        })
    }

    /// Creates every shared-data key this instance will use (configure time).
    pub fn create_keys(&self, store: &dyn SharedStore) -> Result<u32, StoreError> {
        let fps: Vec<u64> = self.policy.buckets.iter().map(|b| b.fingerprint).collect();
        self.table.create_all(store, &fps)
    }

    /// How many shared-data keys this instance can ever create.
    pub fn key_capacity(&self) -> u64 {
        u64::from(self.table.groups()) + self.policy.buckets.len() as u64
    }

    /// The key a request counts under in `scope`, or `None` when the bucket
    /// does not apply to it (an SPA bucket and a token without that scope).
    fn scope_key(scope: &Scope, facts: &dyn RequestFacts) -> Option<String> {
        Some(match scope {
            Scope::Host => identity::host_key(&facts.authority().unwrap_or_default()),
            Scope::Global => String::new(),
            Scope::ClientIp => facts.source_address().map_or_else(
                || "unknown".to_string(),
                |a| identity::address_without_port(&a),
            ),
            Scope::Header(name) => facts
                .header(name)
                .unwrap_or_else(|| "\u{0}missing".to_string()),
            Scope::JwtSubjectWithScope(part) => {
                identity::jwt_subject_with_scope(&facts.header("authorization")?, part)?
            }
        })
    }

    /// Decides one request at `now_us`; `seed` makes the error id unique.
    pub fn decide(
        &self,
        store: &dyn SharedStore,
        facts: &dyn RequestFacts,
        now_us: u64,
        seed: u64,
    ) -> Decision {
        let method = facts.method().unwrap_or_default();
        let path = crate::path::normalize(&facts.path().unwrap_or_default());
        let buckets = match self.policy.resolve(&method, &path) {
            None | Some(Resolved::Exempt) => return Decision::new(Verdict::Unlimited),
            Some(Resolved::RateLimitStatus) => {
                return self.status_endpoint(store, facts, &method, now_us)
            }
            Some(Resolved::Buckets(b)) => b,
        };
        let mut decision = Decision::new(Verdict::Unlimited);
        let mut holds: Vec<Hold> = Vec::new();
        let mut report: Option<(usize, Outcome)> = None;
        for index in buckets {
            let Some(bucket) = self.policy.buckets.get(index) else {
                continue;
            };
            let Some(key) = Self::scope_key(&bucket.scope, facts) else {
                continue;
            };
            let fp = crate::hash::fingerprint(&[
                bucket.id.as_bytes(),
                bucket.limit.algorithm.tag().as_bytes(),
                key.as_bytes(),
            ]);
            let taken =
                match self
                    .table
                    .acquire(store, bucket.fingerprint, fp, &bucket.limit, now_us)
                {
                    Ok(t) => t,
                    Err(e) => {
                        decision.errors.push(e);
                        continue;
                    }
                };
            let outcome = taken.outcome;
            if let Some((place, state)) = taken.written {
                holds.push(Hold {
                    bucket: index,
                    fingerprint: fp,
                    place,
                    state,
                });
            }
            if !outcome.admitted {
                decision.refused_key = Some(key);
                if self.mode == Mode::Enforce {
                    decision.counts.push((index, Count::Rejected));
                    self.release(store, &holds, now_us, &mut decision.errors);
                    let id = response::request_id(seed ^ now_us);
                    decision.verdict = Verdict::Reply(response::too_many_requests(
                        self.dialect,
                        self.headers,
                        bucket,
                        &outcome,
                        now_us,
                        &id,
                    ));
                    return decision;
                }
                decision.counts.push((index, Count::ShadowRejected));
            } else {
                decision.counts.push((index, Count::Admitted));
            }
            if bucket.reported
                && report.is_none_or(|(_, r)| {
                    tighter(&outcome, bucket.limit.limit, &r, self.limit_of(report))
                })
            {
                report = Some((index, outcome));
            }
        }
        let headers = match report {
            Some((i, outcome)) => match self.policy.buckets.get(i) {
                Some(b) => response::rate_headers(
                    self.dialect,
                    self.headers,
                    b,
                    &Report::new(b, &outcome),
                    now_us,
                ),
                None => Headers::new(),
            },
            None => Headers::new(),
        };
        holds.retain(|h| {
            self.policy
                .buckets
                .get(h.bucket)
                .is_some_and(|b| b.release_on_upstream_failure)
        });
        decision.verdict = Verdict::Forward { headers, holds };
        decision
    }

    fn limit_of(&self, report: Option<(usize, Outcome)>) -> u64 {
        report
            .and_then(|(i, _)| self.policy.buckets.get(i))
            .map_or(u64::MAX, |b| b.limit.limit)
    }

    /// Gives back what `holds` took (a later bucket refused the request, or
    /// the upstream refused an import job).
    pub fn release(
        &self,
        store: &dyn SharedStore,
        holds: &[Hold],
        now_us: u64,
        errors: &mut Vec<StoreError>,
    ) {
        for h in holds {
            let Some(bucket) = self.policy.buckets.get(h.bucket) else {
                continue;
            };
            if let Err(e) = self.table.release(
                store,
                h.fingerprint,
                &h.place,
                h.state,
                &bucket.limit,
                now_us,
            ) {
                errors.push(e);
            }
        }
    }

    /// OneLogin's `GET /auth/rate_limit`, for the caller's account.
    fn status_endpoint(
        &self,
        store: &dyn SharedStore,
        facts: &dyn RequestFacts,
        method: &str,
        now_us: u64,
    ) -> Decision {
        let Some(bucket) = self
            .policy
            .buckets
            .iter()
            .find(|b| b.id == "onelogin.account")
        else {
            return Decision::new(Verdict::Unlimited);
        };
        let key = Self::scope_key(&bucket.scope, facts).unwrap_or_default();
        let fp = crate::hash::fingerprint(&[
            bucket.id.as_bytes(),
            bucket.limit.algorithm.tag().as_bytes(),
            key.as_bytes(),
        ]);
        let mut errors = Vec::new();
        let outcome = self
            .table
            .peek(store, bucket.fingerprint, fp, &bucket.limit, now_us)
            .unwrap_or_else(|e| {
                errors.push(e);
                bucket.limit.peek(None, now_us)
            });
        let report = Report::new(bucket, &outcome);
        let mut reply = response::onelogin_status(
            method,
            facts.header("authorization").as_deref(),
            &report,
            now_us,
        );
        if reply.status == 200 {
            reply.headers.extend(response::rate_headers(
                self.dialect,
                self.headers,
                bucket,
                &report,
                now_us,
            ));
        }
        let mut d = Decision::new(Verdict::Reply(reply));
        d.errors = errors;
        d
    }
}

/// Whether `a` (of a bucket with limit `a_limit`) is closer to empty than
/// `b`: fewer remaining; on a tie, the smaller limit.
fn tighter(a: &Outcome, a_limit: u64, b: &Outcome, b_limit: u64) -> bool {
    (a.remaining, a_limit) < (b.remaining, b_limit)
}
