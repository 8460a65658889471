//! The decision for one request: route it, count it in every bucket that
//! applies, and say what to answer. Pure logic over a `SharedStore` and a
//! `RequestFacts`, so the whole path runs in host tests.

use std::borrow::Cow;

use crate::config::{Config, Upstream};
use crate::identity;
use crate::learned::{self, Learned};
use crate::limiter::{Algorithm, Outcome, State};
use crate::peak::PeakRecords;
use crate::policy::{Bucket, Mode, Policy, Resolved, Scope};
use crate::response::{self, Dialect, HeaderStyle, Headers, LocalReply, Report};
use crate::router::RouteError;
use crate::store::{SharedStore, StoreError};
use crate::table::{Given, Place, SlotTable, Take};
use crate::vendor_answer::Answer;

/// What the engine may ask of a request. Each is fetched only when needed,
/// borrowed from the request where it can be (no copy per lookup).
pub trait RequestFacts {
    fn method(&self) -> Option<Cow<'_, str>>;
    fn path(&self) -> Option<Cow<'_, str>>;
    fn authority(&self) -> Option<Cow<'_, str>>;
    fn header(&self, name: &str) -> Option<Cow<'_, str>>;
    /// Envoy's `source.address` (`ip:port`).
    fn source_address(&self) -> Option<String>;
}

/// Something a request took that must be given back if the upstream fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub bucket: usize,
    /// The owner (scope and key) the bucket counted under.
    pub owner: u64,
    pub(crate) place: Place,
    pub state: State,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No limited route: forward untouched.
    Unlimited,
    /// Forward; add `headers` to the response; release `holds` if the
    /// upstream answers with a non-2xx status, and `in_flight` when the
    /// stream ends, however it ends. With `"upstream": "vendor"`, the
    /// response's answer is learned into one of `teach` (and `headers` are
    /// added only when it carries no usable answer).
    Forward {
        headers: Headers,
        holds: Vec<Hold>,
        in_flight: Vec<Hold>,
        teach: Vec<Teach>,
    },
    /// Answer here (a 429, or OneLogin's status endpoint).
    Reply(LocalReply),
    /// Fleet mode: ask the rate-limit service, then `Engine::conclude`.
    Ask(Box<Pending>),
}

/// A bucket whose learned record an upstream answer may update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Teach {
    pub bucket: usize,
    /// The learned record's fingerprint (see `learned::fingerprint`).
    pub fingerprint: u64,
    /// The bucket the filter's own headers reported.
    pub reported: bool,
    /// The request is in the record's in-flight count (admitted against it).
    pub took: bool,
}

/// What one upstream answer taught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lesson {
    pub bucket: usize,
    pub stored: Learned,
    pub vendor_limit: u64,
    /// The bucket's limit by the table (before headroom).
    pub table_limit: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Admitted,
    Rejected,
    ShadowRejected,
}

/// What a counted request is logged as (Envoy's access log, the debug
/// header): the bucket its response reports and, if one refused, which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The bucket the rate-limit headers report; on a 429, the one that refused.
    pub bucket: usize,
    pub remaining: u64,
    pub limit: u64,
    /// That bucket's scope key (logged only if the operator asks).
    pub key: String,
    /// The bucket that refused the request (in shadow mode: would have).
    pub refused: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Per bucket consulted: what happened there (for metrics).
    pub counts: Vec<(usize, Count)>,
    /// Per bucket counted: what it had left after this request, as written
    /// (for the how-close gauge).
    pub remaining: Vec<(usize, u64)>,
    /// The key a bucket refused (for the debug log).
    pub refused_key: Option<String>,
    /// Set when the request was counted.
    pub summary: Option<Summary>,
    /// Store failures; the bucket concerned let the request through.
    pub errors: Vec<StoreError>,
}

impl Decision {
    pub(crate) fn new(verdict: Verdict) -> Decision {
        Decision {
            verdict,
            counts: Vec::new(),
            remaining: Vec::new(),
            refused_key: None,
            summary: None,
            errors: Vec::new(),
        }
    }
}

/// Names the bucket a response reports, for test environments.
pub const DEBUG_HEADER: &str = "x-idp-ratelimit-bucket";

pub struct Engine {
    /// The configured vendor, for the configure log line and the operator CLI.
    pub vendor: String,
    pub stat_prefix: String,
    pub dialect: Dialect,
    pub mode: Mode,
    pub headers: HeaderStyle,
    pub debug_headers: bool,
    pub log_scope_keys: bool,
    /// Publish the access-log line as filter state (`"access_log"`).
    pub access_log: bool,
    /// OneLogin: send `Retry-After` on 429s (OneLogin itself sends none).
    pub retry_after: bool,
    pub upstream: Upstream,
    pub headroom_percent: u64,
    /// Per bucket: the table's limit before headroom.
    pub published_limits: Vec<u64>,
    pub policy: Policy,
    pub(crate) table: SlotTable,
    /// One how-close record per bucket (see peak.rs).
    pub(crate) peaks: PeakRecords,
    /// Fleet mode: the service and which buckets it counts.
    pub fleet: Option<crate::rls::FleetPlan>,
}

impl Engine {
    /// `key_prefix` namespaces this filter instance's shared-data keys.
    pub fn new(config: Config, key_prefix: &str) -> Result<Engine, RouteError> {
        let groups = (config.max_keys / crate::table::WAYS as u32).max(1);
        let fleet = config
            .fleet
            .map(|f| crate::rls::FleetPlan::new(f, &config.policy.buckets));
        let policy = Policy::compile(config.policy)?;
        Ok(Engine {
            vendor: config.vendor,
            stat_prefix: config.stat_prefix,
            dialect: config.dialect,
            mode: config.mode,
            headers: config.headers,
            retry_after: config.retry_after,
            upstream: config.upstream,
            headroom_percent: config.headroom_percent,
            published_limits: config.published_limits,
            debug_headers: config.debug_headers,
            log_scope_keys: config.log_scope_keys,
            access_log: config.access_log,
            peaks: PeakRecords::new(key_prefix, &policy.buckets),
            fleet,
            policy,
            table: SlotTable::new(key_prefix, groups),
        })
    }

    fn voice(&self) -> response::Voice {
        response::Voice {
            dialect: self.dialect,
            headers: self.headers,
            onelogin_retry_after: self.retry_after,
        }
    }

    /// Creates every shared-data key this instance will use (configure time).
    pub fn create_keys(&self, store: &dyn SharedStore) -> Result<u32, StoreError> {
        let fps: Vec<u64> = self.policy.buckets.iter().map(|b| b.fingerprint).collect();
        let mut created = self.table.create_all(store)? + self.peaks.create_all(store)?;
        if self.upstream == Upstream::Vendor {
            created += self.table.create_flags(store, &fps)?;
        }
        Ok(created)
    }

    /// How many shared-data keys this instance can ever create: the slot
    /// table's groups and its overflow cell, and per bucket a peak record
    /// (and, with `"upstream": "vendor"`, a notice flag).
    pub fn key_capacity(&self) -> u64 {
        let per_bucket = match self.upstream {
            Upstream::Emulate => 1,
            // And the vendor-limit notice flag.
            Upstream::Vendor => 2,
        };
        self.table.key_count() + per_bucket * self.policy.buckets.len() as u64
    }

    /// True once per bucket across every worker: the first to see the vendor
    /// report a limit other than the table's logs it.
    pub fn claim_limit_notice(
        &self,
        store: &dyn SharedStore,
        bucket: usize,
    ) -> Result<bool, StoreError> {
        match self.policy.buckets.get(bucket) {
            Some(b) => self.table.claim_flag(store, b.fingerprint),
            None => Ok(false),
        }
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
                .map_or_else(|| "\u{0}missing".to_string(), Cow::into_owned),
            Scope::JwtSubjectWithScope(part) => {
                identity::jwt_subject_with_scope(&facts.header("authorization")?, part)?
            }
            Scope::OktaClient { client_id } => {
                let host = identity::host_key(&facts.authority().unwrap_or_default());
                let ip = facts
                    .source_address()
                    .map(|a| identity::address_without_port(&a))
                    .unwrap_or_default();
                let cookies = facts.header("cookie").unwrap_or_default();
                let device = identity::cookie(&cookies, "dt").unwrap_or_default();
                let path = facts.path().unwrap_or_default();
                let client = match client_id {
                    true => identity::query_param(&path, "client_id").unwrap_or_default(),
                    false => "",
                };
                format!("{host}\u{0}{client}\u{0}{ip}\u{0}{device}")
            }
            Scope::HostAndClientIp => {
                let host = identity::host_key(&facts.authority().unwrap_or_default());
                let ip = facts
                    .source_address()
                    .map(|a| identity::address_without_port(&a))
                    .unwrap_or_default();
                format!("{host}\u{0}{ip}")
            }
            Scope::BearerUser => {
                let user = identity::bearer_user(&facts.header("authorization")?)?;
                let host = identity::host_key(&facts.authority().unwrap_or_default());
                format!("{host}\u{0}{user}")
            }
            Scope::OktaPrincipal => {
                let principal = identity::okta_principal(&facts.header("authorization")?)?;
                let host = identity::host_key(&facts.authority().unwrap_or_default());
                format!("{host}\u{0}{principal}")
            }
        })
    }

    /// Decides one request at `now_us`; `seed` makes the error id unique.
    /// In fleet mode, buckets the rate-limit service counts are not counted
    /// here: the verdict is `Ask`, concluded by `Engine::conclude`.
    pub fn decide(
        &self,
        store: &dyn SharedStore,
        facts: &dyn RequestFacts,
        now_us: u64,
        seed: u64,
    ) -> Decision {
        let method = facts.method().unwrap_or_default();
        let raw_path = facts.path().unwrap_or_default();
        let path = crate::path::normalize(&raw_path);
        let resolved = self.policy.resolve(&method, &path);
        crate::phase::reached(crate::phase::Phase::Routed);
        let buckets = match resolved {
            None | Some(Resolved::Exempt) => return Decision::new(Verdict::Unlimited),
            // The real OneLogin answers its status endpoint with the truth.
            Some(Resolved::RateLimitStatus(_)) if self.upstream == Upstream::Vendor => {
                return Decision::new(Verdict::Unlimited)
            }
            Some(Resolved::RateLimitStatus(bucket)) => {
                return self.status_endpoint(store, facts, &method, bucket, now_us)
            }
            Some(Resolved::Buckets(b)) => b,
        };
        let mut tally = Tally::default();
        let mut remote = Vec::new();
        // (bucket, owner, its scope's place in `scopes`) of each bucket
        // counted here.
        let mut local: Vec<(usize, u64, usize)> = Vec::with_capacity(buckets.len());
        // Each scope's key and owner, worked out once per request (most
        // buckets share the org's host) and lent to every bucket under it.
        let mut scopes: Vec<(&Scope, Option<(String, u64)>)> = Vec::with_capacity(2);
        for index in buckets {
            let Some(bucket) = self.policy.buckets.get(index) else {
                continue;
            };
            let slot = match scopes.iter().position(|(s, _)| **s == bucket.scope) {
                Some(slot) => slot,
                None => {
                    let counted = Self::scope_key(&bucket.scope, facts).map(|key| {
                        let owner = bucket.scope.owner_fingerprint(&key);
                        (key, owner)
                    });
                    scopes.push((&bucket.scope, counted));
                    scopes.len() - 1
                }
            };
            let Some((key, owner)) = scopes.get(slot).and_then(|(_, c)| c.as_ref()) else {
                continue;
            };
            if self.counts_remotely(index) {
                // The vendor's figure is checked first: a learned refusal
                // costs no call and none of the service's quota.
                let vendor = match self.check_learned(store, index, key, now_us, seed, &mut tally) {
                    Ok(v) => v,
                    Err(reply) => return tally.into_decision(Verdict::Reply(reply)),
                };
                remote.push(Remote {
                    bucket: index,
                    key: key.clone(),
                    hits: 1,
                    vendor,
                });
                continue;
            }
            local.push((index, *owner, slot));
        }
        // One transaction per owner, owners in the order their buckets come.
        let mut members = Vec::with_capacity(local.len());
        for (i, &(_, owner, slot)) in local.iter().enumerate() {
            if local[..i].iter().any(|(_, o, _)| *o == owner) {
                continue;
            }
            members.clear();
            members.extend(
                local[i..]
                    .iter()
                    .filter(|m| m.1 == owner)
                    .map(|m| (m.0, None)),
            );
            let key = scopes
                .get(slot)
                .and_then(|(_, c)| c.as_ref())
                .map_or("", |(key, _)| key.as_str());
            if let Some(reply) =
                self.count_owner(store, owner, &members, key, now_us, seed, &mut tally)
            {
                return tally.into_decision(Verdict::Reply(reply));
            }
        }
        if !remote.is_empty() {
            let errors = std::mem::take(&mut tally.errors);
            let mut d = Decision::new(Verdict::Ask(Box::new(Pending {
                tally,
                remote,
                status: None,
                seed,
            })));
            d.errors = errors;
            return d;
        }
        crate::phase::reached(crate::phase::Phase::Counted);
        self.forward(tally, now_us)
    }

    /// Whether the rate-limit service can report a bucket without counting:
    /// envoyproxy/ratelimit honours a descriptor's `hits_addend` 0; Limitador
    /// reads only the request's (0 meaning 1), and its `CheckRateLimit`
    /// returns no numbers, so OneLogin's status endpoint is answered here.
    fn service_can_peek(&self) -> bool {
        self.fleet
            .as_ref()
            .is_some_and(|f| f.config.server == crate::rls::config::Server::EnvoyRatelimit)
    }

    /// Whether the rate-limit service counts bucket `index`.
    pub fn counts_remotely(&self, index: usize) -> bool {
        self.fleet
            .as_ref()
            .is_some_and(|f| f.remote.get(index).copied().unwrap_or(false))
    }

    /// Counts one request in bucket `index` under `key` in shared data.
    /// `Some` is the 429 when the bucket refuses it (enforce mode).
    /// `vendor`: what the learned record already said (fleet mode falling
    /// back to local counting); `None` asks it here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn count_locally(
        &self,
        store: &dyn SharedStore,
        index: usize,
        key: &str,
        vendor: Option<VendorCheck>,
        now_us: u64,
        seed: u64,
        tally: &mut Tally,
    ) -> Option<LocalReply> {
        let owner = self.policy.buckets.get(index)?.scope.owner_fingerprint(key);
        self.count_owner(store, owner, &[(index, vendor)], key, now_us, seed, tally)
    }

    /// Counts one request in the buckets `members`, which all count under
    /// `key` (one owner), with one shared-data transaction: in enforce mode
    /// every bucket admits and all are written, or none is. `Some` is the
    /// 429 of the first bucket that refuses. Each member's `Option` is what
    /// its learned record already said (`None` asks it here).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn count_owner(
        &self,
        store: &dyn SharedStore,
        owner: u64,
        members: &[(usize, Option<VendorCheck>)],
        key: &str,
        now_us: u64,
        seed: u64,
        tally: &mut Tally,
    ) -> Option<LocalReply> {
        let mut takes = Vec::with_capacity(members.len());
        // Per take: the bucket, its limit, and whether the vendor's figure
        // (shadow mode) refused it.
        let mut counted = Vec::with_capacity(members.len());
        for &(index, vendor) in members {
            let Some(bucket) = self.policy.buckets.get(index) else {
                continue;
            };
            let vendor = match vendor {
                Some(v) => v,
                None => match self.check_learned(store, index, key, now_us, seed, tally) {
                    Ok(v) => v,
                    Err(reply) => return Some(reply),
                },
            };
            let mut limit = bucket.limit;
            if let VendorCheck::Admitted { limit: vendor } = vendor {
                limit.limit = self.spendable(vendor);
            }
            takes.push(Take {
                bucket: bucket.fingerprint,
                limit,
            });
            counted.push((index, limit.limit, vendor.would_refuse()));
        }
        let enforce = self.mode == Mode::Enforce;
        let result = match self.table.count(store, owner, &takes, enforce, now_us) {
            Ok(c) => c,
            Err(e) => {
                tally.errors.push(e);
                return None;
            }
        };
        let said = result.outcomes.iter().zip(&result.written);
        for ((index, limit, vendor_shadow_refused), (outcome, written)) in
            counted.into_iter().zip(said)
        {
            if let Some(state) = written {
                tally.holds.push(Hold {
                    bucket: index,
                    owner,
                    place: result.place,
                    state: *state,
                });
            }
            let mut outcome = *outcome;
            // Shadow mode: the vendor's figure would have refused it.
            outcome.admitted &= !vendor_shadow_refused;
            let reply = self.record(store, index, limit, outcome, key, now_us, seed, tally);
            if reply.is_some() {
                return reply;
            }
        }
        None
    }

    /// `"upstream": "vendor"`: checks one request to bucket `index` under
    /// `key` against the bucket's learned record, before the bucket counts
    /// it (here or at the rate-limit service), and takes it there (in
    /// flight) when admitted; the record joins the request's `teach` list.
    /// `Err` is the vendor's 429 (enforce mode), already recorded, with what
    /// the request took so far given back.
    pub(crate) fn check_learned(
        &self,
        store: &dyn SharedStore,
        index: usize,
        key: &str,
        now_us: u64,
        seed: u64,
        tally: &mut Tally,
    ) -> Result<VendorCheck, LocalReply> {
        let Some(bucket) = self.policy.buckets.get(index) else {
            return Ok(VendorCheck::Open);
        };
        let counted_in_flight = matches!(
            bucket.limit.algorithm,
            Algorithm::Concurrency | Algorithm::InFlight
        );
        if self.upstream != Upstream::Vendor || counted_in_flight {
            return Ok(VendorCheck::Open);
        }
        let lfp = learned::fingerprint(bucket.key_fingerprint(key));
        let mut took = false;
        let check = match learned::take(&self.table, store, lfp, self.headroom_percent, now_us) {
            Err(e) => {
                tally.errors.push(e);
                VendorCheck::Open
            }
            Ok(learned::Verdict::NoRecord) => VendorCheck::Open,
            Ok(learned::Verdict::Pending) => {
                took = true;
                VendorCheck::Open
            }
            Ok(learned::Verdict::Admitted { limit }) => {
                took = true;
                VendorCheck::Admitted { limit }
            }
            Ok(learned::Verdict::Refused { limit, reset_us }) => {
                if self.mode == Mode::Enforce {
                    let refused = Outcome {
                        admitted: false,
                        remaining: 0,
                        reset_us,
                    };
                    if let Some(reply) =
                        self.record(store, index, limit, refused, key, now_us, seed, tally)
                    {
                        return Err(reply);
                    }
                    return Ok(VendorCheck::Open);
                }
                VendorCheck::WouldRefuse { limit, reset_us }
            }
        };
        if took {
            tally.taken_learned.push(lfp);
        }
        tally.teach.push(Teach {
            bucket: index,
            fingerprint: lfp,
            reported: false,
            took,
        });
        Ok(check)
    }

    /// Records what bucket `index` (whose limit is `limit`) said. A refusal
    /// in enforce mode gives back what earlier buckets took here and
    /// returns the vendor's 429.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        store: &dyn SharedStore,
        index: usize,
        limit: u64,
        outcome: Outcome,
        key: &str,
        now_us: u64,
        seed: u64,
        tally: &mut Tally,
    ) -> Option<LocalReply> {
        let bucket = self.policy.buckets.get(index)?;
        tally.remaining.push((index, outcome.remaining));
        if !outcome.admitted {
            if self.mode == Mode::Enforce {
                // The earlier buckets' takes are given back below, so
                // they did not admit this request after all.
                tally.counts.retain(|(_, c)| *c != Count::Admitted);
                tally.counts.push((index, Count::Rejected));
                self.release(store, &tally.holds, now_us, &mut tally.errors);
                tally.holds.clear();
                let learned = std::mem::take(&mut tally.taken_learned);
                self.give_back(store, &learned, now_us, &mut tally.errors);
                let reported;
                let bucket = if limit == bucket.limit.limit {
                    bucket
                } else {
                    // The rate-limit service reported another limit.
                    let mut b = bucket.clone();
                    b.limit.limit = limit;
                    reported = b;
                    &reported
                };
                let mut reply = response::too_many_requests(
                    self.voice(),
                    bucket,
                    &outcome,
                    now_us,
                    seed ^ now_us,
                );
                if self.debug_headers {
                    reply.headers.push((DEBUG_HEADER, bucket.id.clone()));
                }
                tally.summary = Some(Summary {
                    bucket: index,
                    remaining: outcome.remaining,
                    limit,
                    key: key.to_string(),
                    refused: Some(index),
                });
                tally.refused_key = Some(key.to_string());
                return Some(reply);
            }
            tally.counts.push((index, Count::ShadowRejected));
            tally.shadow_refused = tally.shadow_refused.or(Some(index));
            if tally.refused_key.is_none() {
                tally.refused_key = Some(key.to_string());
            }
        } else {
            tally.counts.push((index, Count::Admitted));
        }
        let first = bucket.reported_first;
        if bucket.reported
            && tally.report.is_none_or(|(i, r, l)| {
                let b_first = self.policy.buckets.get(i).is_some_and(|b| b.reported_first);
                (first && !b_first) || (first == b_first && tighter(&outcome, limit, &r, l))
            })
        {
            tally.report = Some((index, outcome, limit));
            key.clone_into(&mut tally.report_key);
        }
        None
    }

    /// Forwards the request with the headers of the tightest bucket.
    pub(crate) fn forward(&self, tally: Tally, now_us: u64) -> Decision {
        let mut tally = tally;
        if let Some((index, _, _)) = tally.report {
            for t in tally.teach.iter_mut().filter(|t| t.bucket == index) {
                t.reported = true;
            }
        }
        let teach = std::mem::take(&mut tally.teach);
        let headers = match tally
            .report
            .and_then(|(i, o, l)| Some((i, self.policy.buckets.get(i)?, o, l)))
        {
            Some((index, b, outcome, limit)) => {
                let mut headers = response::rate_headers(
                    self.dialect,
                    self.headers,
                    b,
                    &Report {
                        limit,
                        remaining: outcome.remaining,
                        reset_us: outcome.reset_us,
                    },
                    now_us,
                );
                if self.debug_headers {
                    headers.push((DEBUG_HEADER, b.id.clone()));
                }
                tally.summary = Some(Summary {
                    bucket: index,
                    remaining: outcome.remaining,
                    limit,
                    key: std::mem::take(&mut tally.report_key),
                    refused: tally.shadow_refused,
                });
                headers
            }
            None => Headers::new(),
        };
        let holds = std::mem::take(&mut tally.holds);
        let in_flight = self.held_until_done(&holds);
        let holds = self.holds_where(&holds, |b| b.release_on_upstream_failure);
        tally.into_decision(Verdict::Forward {
            headers,
            holds,
            in_flight,
            teach,
        })
    }

    /// The places among `holds` a request keeps while in flight, given back
    /// when its stream ends (Okta's concurrency limit).
    fn held_until_done(&self, holds: &[Hold]) -> Vec<Hold> {
        self.holds_where(holds, |b| b.release_when_done)
    }

    /// The holds among `holds` whose bucket has the property `keep`.
    fn holds_where(&self, holds: &[Hold], keep: fn(&Bucket) -> bool) -> Vec<Hold> {
        holds
            .iter()
            .filter(|h| self.policy.buckets.get(h.bucket).is_some_and(keep))
            .cloned()
            .collect()
    }

    /// The share of a vendor-reported limit the filter's own count allows.
    fn spendable(&self, vendor_limit: u64) -> u64 {
        (vendor_limit.saturating_mul(self.headroom_percent) / 100).max(1)
    }

    /// Gives back the learned admits of a request refused after all.
    fn give_back(
        &self,
        store: &dyn SharedStore,
        taken: &[u64],
        now_us: u64,
        errors: &mut Vec<StoreError>,
    ) {
        for &fingerprint in taken {
            if let Err(e) = learned::give_back(&self.table, store, fingerprint, now_us) {
                errors.push(e);
            }
        }
    }

    /// A request that counted in `teach` ended without a usable answer (none
    /// came back, or it was absent or garbled): it is no longer in flight.
    pub fn forget(
        &self,
        store: &dyn SharedStore,
        teach: &[Teach],
        now_us: u64,
        errors: &mut Vec<StoreError>,
    ) {
        let took: Vec<u64> = teach
            .iter()
            .filter(|t| t.took)
            .map(|t| t.fingerprint)
            .collect();
        self.give_back(store, &took, now_us, errors);
    }

    /// Fleet mode: a request that waited for the rate-limit service ended
    /// before the answer came (the client went away): what it holds while
    /// in flight here, and in the learned records, is given back.
    pub fn abandon(
        &self,
        store: &dyn SharedStore,
        pending: &Pending,
        now_us: u64,
        errors: &mut Vec<StoreError>,
    ) {
        let in_flight = self.held_until_done(&pending.tally.holds);
        self.release(store, &in_flight, now_us, errors);
        self.give_back(store, &pending.tally.taken_learned, now_us, errors);
    }

    /// Learns an upstream answer for a request that counted in `teach`: the
    /// bucket whose table limit the vendor reported (Auth0 reports one of
    /// several), else the one the filter reported.
    pub fn learn(
        &self,
        store: &dyn SharedStore,
        teach: &[Teach],
        answer: &Answer,
        now_us: u64,
    ) -> Result<Option<Lesson>, StoreError> {
        let table_limit = |t: &Teach| self.published_limits.get(t.bucket).copied().unwrap_or(0);
        let Some(t) = teach
            .iter()
            .find(|t| table_limit(t) == answer.limit)
            .or_else(|| teach.iter().find(|t| t.reported))
            .or(teach.first())
        else {
            return Ok(None);
        };
        let stored =
            learned::store_answer(&self.table, store, t.fingerprint, answer, t.took, now_us)?;
        // The other records this request counted in: it is answered.
        for other in teach
            .iter()
            .filter(|o| o.took && o.fingerprint != t.fingerprint)
        {
            learned::give_back(&self.table, store, other.fingerprint, now_us)?;
        }
        Ok(Some(Lesson {
            bucket: t.bucket,
            stored,
            vendor_limit: answer.limit,
            table_limit: table_limit(t),
        }))
    }

    /// Gives back what `holds` took (a later bucket refused the request, or
    /// the upstream refused an import job): one transaction per owner.
    pub fn release(
        &self,
        store: &dyn SharedStore,
        holds: &[Hold],
        now_us: u64,
        errors: &mut Vec<StoreError>,
    ) {
        for (i, h) in holds.iter().enumerate() {
            let same = |o: &&Hold| o.owner == h.owner && o.place == h.place;
            if holds[..i].iter().any(|o| same(&o)) {
                continue;
            }
            let given: Vec<Given> = holds[i..]
                .iter()
                .filter(same)
                .filter_map(|o| {
                    let bucket = self.policy.buckets.get(o.bucket)?;
                    Some(Given {
                        bucket: bucket.fingerprint,
                        limit: bucket.limit,
                        taken: o.state,
                    })
                })
                .collect();
            if let Err(e) = self.table.release(store, h.owner, h.place, &given, now_us) {
                errors.push(e);
            }
        }
    }

    /// OneLogin's `GET /auth/rate_limit`: `bucket` (the route's target) as
    /// the caller's key sees it, without counting the call: a peek here, or
    /// (fleet mode) a `hits_addend` 0 descriptor to the service.
    fn status_endpoint(
        &self,
        store: &dyn SharedStore,
        facts: &dyn RequestFacts,
        method: &str,
        bucket: usize,
        now_us: u64,
    ) -> Decision {
        let index = bucket;
        let Some(bucket) = self.policy.buckets.get(index) else {
            return Decision::new(Verdict::Unlimited);
        };
        let key = Self::scope_key(&bucket.scope, facts).unwrap_or_default();
        let status = StatusQuery {
            bucket: index,
            method: method.to_string(),
            authorization: facts.header("authorization").map(Cow::into_owned),
        };
        if self.counts_remotely(index) && self.service_can_peek() {
            return Decision::new(Verdict::Ask(Box::new(Pending {
                tally: Tally::default(),
                remote: vec![Remote {
                    bucket: index,
                    key,
                    hits: 0,
                    vendor: VendorCheck::Open,
                }],
                status: Some(status),
                seed: 0,
            })));
        }
        self.status_locally(store, &key, &status, now_us)
    }

    /// The status endpoint's answer from this Envoy's shared data.
    pub(crate) fn status_locally(
        &self,
        store: &dyn SharedStore,
        key: &str,
        status: &StatusQuery,
        now_us: u64,
    ) -> Decision {
        let Some(bucket) = self.policy.buckets.get(status.bucket) else {
            return Decision::new(Verdict::Unlimited);
        };
        let owner = bucket.scope.owner_fingerprint(key);
        let mut errors = Vec::new();
        let outcome = self
            .table
            .peek(store, owner, bucket.fingerprint, &bucket.limit, now_us)
            .unwrap_or_else(|e| {
                errors.push(e);
                bucket.limit.peek(None, now_us)
            });
        let mut d = self.status_reply(status, bucket.limit.limit, outcome, now_us);
        d.errors = errors;
        d
    }

    /// The status endpoint's answer for the account bucket's `outcome`.
    pub(crate) fn status_reply(
        &self,
        status: &StatusQuery,
        limit: u64,
        mut outcome: Outcome,
        now_us: u64,
    ) -> Decision {
        let Some(bucket) = self.policy.buckets.get(status.bucket) else {
            return Decision::new(Verdict::Unlimited);
        };
        // No window open: the next call would open a full one.
        if outcome.reset_us <= now_us {
            outcome.reset_us = now_us.saturating_add(bucket.limit.window_us);
        }
        let report = Report {
            limit,
            remaining: outcome.remaining,
            reset_us: outcome.reset_us,
        };
        let mut reply = response::onelogin_status(
            &status.method,
            status.authorization.as_deref(),
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
        Decision::new(Verdict::Reply(reply))
    }
}

/// What a request has counted so far, and what to report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub(crate) counts: Vec<(usize, Count)>,
    /// Places taken here, given back if a later bucket refuses.
    pub(crate) holds: Vec<Hold>,
    /// The tightest bucket so far: index, outcome, its limit.
    pub(crate) report: Option<(usize, Outcome, u64)>,
    /// The scope key of the `report` bucket (for the access-log summary).
    pub(crate) report_key: String,
    /// Vendor mode: the learned records this request counted in...
    pub(crate) teach: Vec<Teach>,
    /// ...and those of them that counted it (given back if it is refused).
    pub(crate) taken_learned: Vec<u64>,
    /// Per bucket counted: what it had left, as written (how-close gauge).
    pub(crate) remaining: Vec<(usize, u64)>,
    /// The first bucket that would have refused (shadow mode).
    pub(crate) shadow_refused: Option<usize>,
    pub(crate) summary: Option<Summary>,
    pub(crate) refused_key: Option<String>,
    pub(crate) errors: Vec<StoreError>,
}

impl Tally {
    pub(crate) fn into_decision(self, verdict: Verdict) -> Decision {
        Decision {
            verdict,
            counts: self.counts,
            remaining: self.remaining,
            refused_key: self.refused_key,
            summary: self.summary,
            errors: self.errors,
        }
    }
}

/// A bucket the rate-limit service is asked to count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub bucket: usize,
    /// The scope key (org host, client IP, header value).
    pub key: String,
    /// 1, or 0 to look without counting.
    pub hits: u64,
    /// What the bucket's learned record said, before the service was asked.
    pub vendor: VendorCheck,
}

/// What a bucket's learned record said of one request (`"upstream": "vendor"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VendorCheck {
    /// Nothing learned decides: emulate mode, a bucket counted in flight,
    /// no record or no vendor answer yet.
    #[default]
    Open,
    /// Admitted against the record (and counted in flight there); the
    /// vendor's limit.
    Admitted { limit: u64 },
    /// Shadow mode: the vendor's figure would refuse it until `reset_us`.
    WouldRefuse { limit: u64, reset_us: u64 },
}

impl VendorCheck {
    pub fn would_refuse(&self) -> bool {
        matches!(self, VendorCheck::WouldRefuse { .. })
    }
}

/// OneLogin's status endpoint, as asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusQuery {
    /// The account bucket the route names.
    pub bucket: usize,
    pub method: String,
    pub authorization: Option<String>,
}

/// A request waiting for the rate-limit service: what the buckets counted
/// here said, and what to ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub(crate) tally: Tally,
    pub remote: Vec<Remote>,
    /// Set for OneLogin's status endpoint (answered, not forwarded).
    pub status: Option<StatusQuery>,
    pub(crate) seed: u64,
}

/// Whether `a` (of a bucket with limit `a_limit`) is closer to empty than
/// `b`: fewer remaining; on a tie, the smaller limit.
fn tighter(a: &Outcome, a_limit: u64, b: &Outcome, b_limit: u64) -> bool {
    (a.remaining, a_limit) < (b.remaining, b_limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::MICROS_PER_SEC;
    use crate::store::MemoryStore;
    use std::collections::HashMap;

    const NOW: u64 = 1_795_392_000 * MICROS_PER_SEC;

    #[derive(Default, Clone)]
    struct Req {
        method: &'static str,
        path: String,
        headers: HashMap<String, String>,
        source: Option<String>,
    }

    fn req(method: &'static str, path: &str) -> Req {
        let mut r = Req {
            method,
            path: path.to_string(),
            ..Req::default()
        };
        r.headers
            .insert(":authority".into(), "acme.okta.com".into());
        r
    }

    impl Req {
        fn with(mut self, name: &str, value: &str) -> Req {
            self.headers.insert(name.to_string(), value.to_string());
            self
        }
    }

    impl RequestFacts for Req {
        fn method(&self) -> Option<Cow<'_, str>> {
            Some(self.method.into())
        }
        fn path(&self) -> Option<Cow<'_, str>> {
            Some(self.path.as_str().into())
        }
        fn authority(&self) -> Option<Cow<'_, str>> {
            self.headers.get(":authority").map(|v| v.as_str().into())
        }
        fn header(&self, name: &str) -> Option<Cow<'_, str>> {
            self.headers.get(name).map(|v| v.as_str().into())
        }
        fn source_address(&self) -> Option<String> {
            self.source.clone()
        }
    }

    fn engine(json: &str) -> (Engine, MemoryStore) {
        let e = Engine::new(crate::config::parse(json.as_bytes()).unwrap(), "t/").unwrap();
        let store = MemoryStore::new();
        e.create_keys(&store).unwrap();
        (e, store)
    }

    fn header<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
        let headers = match &d.verdict {
            Verdict::Forward { headers, .. } => headers,
            Verdict::Reply(r) => &r.headers,
            Verdict::Unlimited | Verdict::Ask(_) => return None,
        };
        headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    fn status(d: &Decision) -> u32 {
        match &d.verdict {
            Verdict::Reply(r) => r.status,
            _ => 200,
        }
    }

    /// Sends `n` requests at `now`, one after the other (each stream ends
    /// before the next starts); returns how many were forwarded.
    fn admitted(e: &Engine, s: &MemoryStore, r: &Req, n: usize, now: u64) -> usize {
        (0..n)
            .filter(|i| {
                let d = e.decide(s, r, now, *i as u64);
                if let Verdict::Forward { in_flight, .. } = &d.verdict {
                    e.release(s, in_flight, now, &mut Vec::new());
                }
                status(&d) == 200
            })
            .count()
    }

    #[test]
    fn okta_boundary_headers_and_429() {
        let (e, s) = engine(r#"{"vendor": "okta", "plan": "integrator-free"}"#);
        let logs = req("GET", "/api/v1/logs?since=2026");
        for i in 1..=20u64 {
            let d = e.decide(&s, &logs, NOW + i, i);
            assert_eq!(status(&d), 200, "request {i}");
            assert_eq!(header(&d, "x-rate-limit-limit"), Some("20"));
            assert_eq!(
                header(&d, "x-rate-limit-remaining"),
                Some((20 - i).to_string().as_str())
            );
            assert_eq!(header(&d, "x-rate-limit-reset"), Some("1795392060"));
        }
        let d = e.decide(&s, &logs, NOW + 100, 99);
        assert_eq!(status(&d), 429);
        assert_eq!(header(&d, "x-rate-limit-remaining"), Some("0"));
        assert_eq!(header(&d, "x-rate-limit-reset"), Some("1795392060"));
        assert_eq!(
            d.counts,
            vec![(
                e.policy
                    .buckets
                    .iter()
                    .position(|b| b.id == "okta.management.logs")
                    .unwrap(),
                Count::Rejected
            )]
        );
        // Another org is untouched.
        let other = logs.clone().with(":authority", "Other.okta.com:443");
        assert_eq!(admitted(&e, &s, &other, 1, NOW), 1);
    }

    /// Starts `n` requests that stay in flight; returns their holds.
    fn start(e: &Engine, s: &MemoryStore, r: &Req, n: usize) -> Vec<Vec<Hold>> {
        (0..n)
            .map(|i| match e.decide(s, r, NOW, i as u64).verdict {
                Verdict::Forward { in_flight, .. } => in_flight,
                other => panic!("request {i}: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn okta_concurrency_limit_and_its_429() {
        let (e, s) = engine(r#"{"vendor": "okta", "plan": "integrator-free"}"#);
        let users = req("GET", "/api/v1/users");
        let held = start(&e, &s, &users, 35);
        assert!(held.iter().all(|h| h.len() == 1));
        // Below the limit the headers are the per-minute bucket's.
        let d = e.decide(&s, &users, NOW, 99);
        assert_eq!(status(&d), 429);
        assert_eq!(header(&d, "x-rate-limit-limit"), Some("0"));
        assert_eq!(header(&d, "x-rate-limit-remaining"), Some("0"));
        assert_eq!(header(&d, "x-rate-limit-reset"), Some("1795392001"));
        let Verdict::Reply(r) = &d.verdict else {
            unreachable!()
        };
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["errorCode"], "E0000047");
        // The refused request took nothing from the per-minute bucket (35 of 100 used).
        let gate = e
            .policy
            .buckets
            .iter()
            .position(|b| b.id == "okta.concurrency");
        assert_eq!(d.counts, vec![(gate.unwrap(), Count::Rejected)]);
        // Another org has its own limit.
        let other = users.clone().with(":authority", "other.okta.com");
        assert_eq!(admitted(&e, &s, &other, 1, NOW), 1);
        // One ends: exactly one more.
        e.release(&s, &held[0], NOW, &mut Vec::new());
        let d = e.decide(&s, &users, NOW, 1);
        assert_eq!(status(&d), 200);
        assert_eq!(header(&d, "x-rate-limit-limit"), Some("100"));
        assert_eq!(header(&d, "x-rate-limit-remaining"), Some("64"));
        assert_eq!(status(&e.decide(&s, &users, NOW, 2)), 429);
    }

    #[test]
    fn a_rate_refusal_gives_the_in_flight_place_back() {
        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "integrator-free",
                "overrides": [{"bucket": "okta.concurrency", "limit": 2}]}"#,
        );
        let logs = req("GET", "/api/v1/logs");
        // 20 per minute, each ending before the next: the concurrency limit never bites.
        assert_eq!(admitted(&e, &s, &logs, 25, NOW), 20);
        // The 5 refused by the logs row hold no place: two can still be in flight.
        let users = req("GET", "/api/v1/users");
        assert_eq!(start(&e, &s, &users, 2).len(), 2);
        assert_eq!(status(&e.decide(&s, &users, NOW, 0)), 429);
    }

    #[test]
    fn okta_principal_share_halves_a_management_bucket_per_token() {
        let (e, s) = engine(r#"{"vendor": "okta", "plan": "integrator-free"}"#);
        let logs = req("GET", "/api/v1/logs");
        let token = logs.clone().with("authorization", "SSWS 00tokenA");
        // One token: half of 20; its headers say so.
        let d = e.decide(&s, &token, NOW, 0);
        assert_eq!(header(&d, "x-rate-limit-limit"), Some("10"));
        assert_eq!(header(&d, "x-rate-limit-remaining"), Some("9"));
        assert_eq!(admitted(&e, &s, &token, 12, NOW), 9);
        // Another token has its own half; calls without a token only the org's.
        let other = logs.clone().with("authorization", "SSWS 00tokenB");
        assert_eq!(admitted(&e, &s, &other, 12, NOW), 10);
        assert_eq!(admitted(&e, &s, &logs, 5, NOW), 0, "the org's 20 are used");
        // 100 turns the share off.
        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "integrator-free", "principal_share_percent": 100}"#,
        );
        assert_eq!(admitted(&e, &s, &token, 25, NOW), 20);
    }

    #[test]
    fn okta_client_based_limits_per_client_ip_and_device() {
        let (e, s) = engine(r#"{"vendor": "okta", "plan": "enterprise"}"#);
        let mut a =
            req("GET", "/oauth2/v1/authorize?client_id=0oaA&state=1").with("cookie", "DT=dev1");
        a.source = Some("10.0.0.1:5000".into());
        let d = e.decide(&s, &a, NOW, 0);
        assert_eq!(header(&d, "x-rate-limit-limit"), Some("60"));
        assert_eq!(admitted(&e, &s, &a, 70, NOW), 59);
        // Another device, another client id, another IP: each its own 60.
        let b = a.clone().with("cookie", "DT=dev2");
        let mut c = req("GET", "/oauth2/v1/authorize?client_id=0oaB");
        c.source = a.source.clone();
        let mut d2 = a.clone();
        d2.source = Some("10.0.0.2:5000".into());
        for r in [&b, &c, &d2] {
            assert_eq!(admitted(&e, &s, r, 61, NOW), 60);
        }
        // The org's bucket (enterprise: 1200) counted all of them.
        let org = req("GET", "/oauth2/v1/userinfo");
        let d = e.decide(&s, &org, NOW, 0);
        assert_eq!(header(&d, "x-rate-limit-remaining"), Some("959"));
        // 5 in flight per client.
        let mut login = req("GET", "/login/login.htm");
        login.source = Some("10.0.0.9:1".into());
        assert_eq!(start(&e, &s, &login, 5).len(), 5);
        assert_eq!(status(&e.decide(&s, &login, NOW, 0)), 429);
    }

    #[test]
    fn auth0_authentication_api() {
        let (e, s) = engine(
            r#"{"vendor": "auth0", "plan": "free", "catalogs": ["management", "authentication"]}"#,
        );
        let body = |d: &Decision| match &d.verdict {
            Verdict::Reply(r) => serde_json::from_str::<serde_json::Value>(&r.body).unwrap(),
            other => panic!("{other:?}"),
        };
        // /userinfo: 10 at once per user, then one every 12 s.
        let me = req("GET", "/userinfo").with("authorization", &spa_token("u1", "openid"));
        assert_eq!(admitted(&e, &s, &me, 12, NOW), 10);
        let d = e.decide(&s, &me, NOW, 0);
        assert_eq!(
            body(&d),
            serde_json::json!({"error": "too_many_requests",
                "error_description": crate::catalog::auth0_authentication::TOO_MANY_REQUESTS})
        );
        assert_eq!(header(&d, "retry-after"), Some("12"));
        let you = req("GET", "/userinfo").with("authorization", &spa_token("u2", "openid"));
        assert_eq!(admitted(&e, &s, &you, 1, NOW), 1);
        // /passwordless/start: 50 per IP.
        let mut start = req("POST", "/passwordless/start");
        start.source = Some("10.1.1.1:1".into());
        assert_eq!(admitted(&e, &s, &start, 55, NOW), 50);
        let mut elsewhere = start.clone();
        elsewhere.source = Some("10.1.1.2:1".into());
        assert_eq!(admitted(&e, &s, &elsewhere, 1, NOW), 1);
        // /oidc/register: the Management table's bucket, the OAuth body.
        let reg = req("POST", "/oidc/register");
        assert_eq!(admitted(&e, &s, &reg, 6, NOW), 5);
        let d = e.decide(&s, &reg, NOW, 0);
        assert_eq!(body(&d)["error"], "too_many_requests");
        // The API-wide limit (free: 300 at once) on the other protocol endpoints.
        let auth = req("GET", "/authorize");
        let used = 10 + 1 + 50 + 1 + 5;
        assert_eq!(admitted(&e, &s, &auth, 400, NOW), 300 - used);
        let d = e.decide(&s, &auth, NOW, 0);
        assert_eq!(
            body(&d)["error_description"],
            crate::catalog::auth0_authentication::GLOBAL_LIMIT
        );
        // 12 s later: the user has one more /userinfo (and the API 60 more).
        assert_eq!(admitted(&e, &s, &me, 2, NOW + 12 * MICROS_PER_SEC), 1);
    }

    #[test]
    fn a_counted_request_is_summarised_for_the_access_log() {
        let (e, s) = engine(r#"{"vendor": "okta", "plan": "integrator-free"}"#);
        let logs = e
            .policy
            .buckets
            .iter()
            .position(|b| b.id == "okta.management.logs")
            .unwrap();
        let r = req("GET", "/api/v1/logs");
        let d = e.decide(&s, &r, NOW, 0);
        assert_eq!(
            d.summary,
            Some(Summary {
                bucket: logs,
                remaining: 19,
                limit: 20,
                key: "acme.okta.com".into(),
                refused: None
            })
        );
        // The org's concurrency limit counts the request too (one of 35 in flight).
        assert!(d.remaining.contains(&(logs, 19)), "{:?}", d.remaining);
        assert_eq!(header(&d, DEBUG_HEADER), None, "off by default");
        assert_eq!(admitted(&e, &s, &r, 19, NOW), 19);
        let d = e.decide(&s, &r, NOW, 0);
        assert_eq!(status(&d), 429);
        let summary = d.summary.unwrap();
        assert_eq!((summary.bucket, summary.remaining), (logs, 0));
        assert_eq!(summary.refused, Some(logs));
        assert_eq!(d.remaining.last(), Some(&(logs, 0)));
        assert_eq!(
            e.decide(&s, &req("GET", "/oauth2/v1/keys"), NOW, 0).summary,
            None,
            "not counted"
        );
    }

    #[test]
    fn the_debug_header_and_shadow_summary_name_the_buckets() {
        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "one-app", "mode": "shadow", "debug_headers": true,
                "overrides": [{"bucket": "okta.management.api-v1", "limit": 1}]}"#,
        );
        let id = |i: usize| e.policy.buckets[i].id.as_str();
        // PATCH /api/v1/users/{id}: management api-v1 (now 1) and end-user api-v1 (300).
        let patch = req("PATCH", "/api/v1/users/00u1");
        let d = e.decide(&s, &patch, NOW, 0);
        assert_eq!(header(&d, DEBUG_HEADER), Some("okta.management.api-v1"));
        assert_eq!(d.summary.as_ref().unwrap().refused, None);
        let d = e.decide(&s, &patch, NOW, 0);
        assert_eq!(status(&d), 200, "shadow");
        let summary = d.summary.clone().unwrap();
        assert_eq!(id(summary.refused.unwrap()), "okta.management.api-v1");
        assert_eq!(id(summary.bucket), "okta.management.api-v1");
        assert_eq!(header(&d, DEBUG_HEADER), Some("okta.management.api-v1"));
        assert_eq!(
            d.remaining.len(),
            3,
            "the concurrency limit and both api-v1 buckets counted"
        );
        let (e, s) =
            engine(r#"{"vendor": "okta", "plan": "integrator-free", "debug_headers": true}"#);
        let logs = req("GET", "/api/v1/logs");
        assert_eq!(admitted(&e, &s, &logs, 20, NOW), 20);
        let d = e.decide(&s, &logs, NOW, 0);
        assert_eq!(status(&d), 429);
        assert_eq!(header(&d, DEBUG_HEADER), Some("okta.management.logs"));
    }

    #[test]
    fn unmatched_and_exempt_paths_are_not_limited() {
        let (e, s) = engine(r#"{"vendor": "okta", "plan": "enterprise"}"#);
        for path in [
            "/",
            "/login",
            "/api/v2/users",
            "/oauth2/v1/keys",
            "/oauth2/default/.well-known/openid-configuration",
        ] {
            assert_eq!(
                e.decide(&s, &req("GET", path), NOW, 0).verdict,
                Verdict::Unlimited,
                "{path}"
            );
        }
    }

    #[test]
    fn a_row_in_both_catalogs_must_pass_both() {
        // one-app: management api-v1 600, end-user api-v1 300.
        let (e, s) = engine(r#"{"vendor": "okta", "plan": "one-app"}"#);
        let patch = req("PATCH", "/api/v1/users/00u1");
        let d = e.decide(&s, &patch, NOW, 0);
        assert_eq!(header(&d, "x-rate-limit-limit"), Some("300"));
        assert_eq!(
            d.counts.len(),
            3,
            "the concurrency limit and both api-v1 rows"
        );
        assert_eq!(admitted(&e, &s, &req("GET", "/api/v1/meta"), 400, NOW), 299);
        // A refusal by the end-user bucket is not an admit by the management one.
        let d = e.decide(&s, &patch, NOW, 0);
        let end_user = e
            .policy
            .buckets
            .iter()
            .position(|b| b.id == "okta.end-user.api-v1")
            .unwrap();
        assert_eq!(d.counts, vec![(end_user, Count::Rejected)]);
        // The refused requests took nothing from the management bucket.
        let mgmt = &e.policy.buckets[e
            .policy
            .buckets
            .iter()
            .position(|b| b.id == "okta.management.api-v1")
            .unwrap()];
        let owner = mgmt.scope.owner_fingerprint("acme.okta.com");
        assert_eq!(
            e.table
                .peek(&s, owner, mgmt.fingerprint, &mgmt.limit, NOW)
                .unwrap()
                .remaining,
            300
        );
    }

    #[test]
    fn a_refusal_gives_back_what_earlier_buckets_took() {
        let (e, s) = engine(
            r#"{"vendor": "auth0", "plan": "free",
                "overrides": [{"bucket": "auth0.self-service.read-users.per-minute", "limit": 2}]}"#,
        );
        let users = req("GET", "/api/v2/users");
        assert_eq!(admitted(&e, &s, &users, 5, NOW), 2);
        // The tenant per-second bucket (10) lost only the 2 admitted requests.
        let stats = req("GET", "/api/v2/stats/daily");
        assert_eq!(admitted(&e, &s, &stats, 10, NOW), 8);
        let d = e.decide(&s, &stats, NOW, 1);
        assert_eq!(status(&d), 429);
        assert_eq!(header(&d, "retry-after"), Some("1"));
        let body: serde_json::Value = match &d.verdict {
            Verdict::Reply(r) => serde_json::from_str(&r.body).unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(body["message"], "Global limit has been reached");
    }

    #[test]
    fn auth0_reports_the_bucket_closest_to_empty() {
        let (e, s) = engine(r#"{"vendor": "auth0", "plan": "enterprise-prod"}"#);
        let d = e.decide(&s, &req("GET", "/api/v2/clients"), NOW, 0);
        assert_eq!(header(&d, "x-ratelimit-limit"), Some("5"));
        assert_eq!(header(&d, "x-ratelimit-remaining"), Some("4"));
        // 5/s: the next request comes back 200 ms later.
        assert_eq!(header(&d, "x-ratelimit-reset"), Some("1795392001"));
    }

    #[test]
    fn shadow_mode_never_rejects_but_counts() {
        let (e, s) = engine(r#"{"vendor": "okta", "plan": "integrator-free", "mode": "shadow"}"#);
        let logs = req("GET", "/api/v1/logs");
        assert_eq!(admitted(&e, &s, &logs, 25, NOW), 25);
        let d = e.decide(&s, &logs, NOW, 0);
        assert!(matches!(
            d.counts[..],
            [(_, Count::Admitted), (_, Count::ShadowRejected)]
        ));
        assert_eq!(header(&d, "x-rate-limit-remaining"), Some("0"));
    }

    #[test]
    fn import_jobs_hold_and_release() {
        let (e, s) = engine(
            r#"{"vendor": "auth0", "plan": "enterprise-prod", "import_job_hold_seconds": 30}"#,
        );
        let job = req("POST", "/api/v2/jobs/users-imports");
        let first = e.decide(&s, &job, NOW, 0);
        let Verdict::Forward { holds, .. } = &first.verdict else {
            panic!("{first:?}")
        };
        assert_eq!(
            holds.len(),
            1,
            "only the concurrency bucket is held for release"
        );
        assert_eq!(admitted(&e, &s, &job, 1, NOW), 1);
        let third = e.decide(&s, &job, NOW + MICROS_PER_SEC, 0);
        assert_eq!(status(&third), 429);
        assert_eq!(header(&third, "retry-after"), Some("29"));
        // The upstream refused the first job: its place is free again.
        e.release(&s, holds, NOW + MICROS_PER_SEC, &mut Vec::new());
        assert_eq!(admitted(&e, &s, &job, 2, NOW + MICROS_PER_SEC), 1);
        // After the hold time, both places are free.
        assert_eq!(admitted(&e, &s, &job, 3, NOW + 32 * MICROS_PER_SEC), 2);
    }

    fn spa_token(sub: &str, scope: &str) -> String {
        let claims = format!(r#"{{"sub":"{sub}","scope":"{scope}"}}"#);
        format!(
            "Bearer e30.{}.sig",
            crate::test_base64url::encode(claims.as_bytes())
        )
    }

    #[test]
    fn spa_tokens_are_limited_per_user() {
        let (e, s) = engine(r#"{"vendor": "auth0", "plan": "enterprise-prod"}"#);
        // 150 ms apart, so the tenant's 10/s "other endpoints" bucket keeps up
        // and only the SPA bucket (10/min, a token back every 6 s) refuses.
        let me = req("GET", "/api/v2/users/u1")
            .with("authorization", &spa_token("u1", "read:current_user"));
        let spaced = |r: &Req, n: u64, from: u64| {
            (0..n)
                .filter(|i| status(&e.decide(&s, r, from + i * 150_000, 0)) == 200)
                .count()
        };
        assert_eq!(spaced(&me, 12, NOW), 10);
        let other = req("GET", "/api/v2/users/u2")
            .with("authorization", &spa_token("u2", "read:current_user"));
        assert_eq!(spaced(&other, 1, NOW + 2 * MICROS_PER_SEC), 1);
        for auth in [
            "Bearer garbage",
            "Bearer a.b",
            &spa_token("u1", "read:users"),
        ] {
            let r = req("GET", "/api/v2/users/u1").with("authorization", auth);
            assert_eq!(spaced(&r, 1, NOW + 3 * MICROS_PER_SEC), 1, "{auth}");
        }
        // u1 gets a request back 6 s after its bucket emptied.
        assert_eq!(spaced(&me, 1, NOW + 7 * MICROS_PER_SEC), 1);
    }

    #[test]
    fn onelogin_status_endpoint_reports_without_counting() {
        let (e, s) = engine(r#"{"vendor": "onelogin"}"#);
        let status_req = req("GET", "/auth/rate_limit").with("authorization", "bearer:tok");
        let body = |d: &Decision| match &d.verdict {
            Verdict::Reply(r) => serde_json::from_str::<serde_json::Value>(&r.body).unwrap(),
            other => panic!("{other:?}"),
        };
        let before = e.decide(&s, &status_req, NOW, 0);
        assert_eq!(body(&before)["data"]["X-RateLimit-Remaining"], 5000);
        // No window open yet: header and body both say a full hour.
        assert_eq!(body(&before)["data"]["X-RateLimit-Reset"], 3600);
        assert_eq!(header(&before, "x-ratelimit-reset"), Some("3600"));
        assert_eq!(admitted(&e, &s, &req("GET", "/api/2/users"), 12, NOW), 12);
        let d = e.decide(&s, &status_req, NOW + 10 * MICROS_PER_SEC, 0);
        assert_eq!(
            body(&d)["data"],
            serde_json::json!({"X-RateLimit-Limit": 5000, "X-RateLimit-Remaining": 4988, "X-RateLimit-Reset": 3590})
        );
        assert_eq!(
            body(&e.decide(&s, &status_req, NOW, 0))["data"]["X-RateLimit-Remaining"],
            4988
        );
        let d = e.decide(
            &s,
            &req("GET", "/api/2/users"),
            NOW + 10 * MICROS_PER_SEC,
            0,
        );
        assert_eq!(header(&d, "x-ratelimit-reset"), Some("3590"));
    }

    #[test]
    fn client_ip_and_header_scopes() {
        let (e, s) =
            engine(r#"{"vendor": "okta", "plan": "integrator-free", "scope": "client_ip"}"#);
        let mut a = req("GET", "/api/v1/logs").with("x-forwarded-for", "9.9.9.9");
        a.source = Some("10.0.0.1:40000".into());
        let mut b = a.clone().with("x-forwarded-for", "8.8.8.8");
        b.source = Some("10.0.0.1:40001".into());
        let mut c = a.clone();
        c.source = Some("[2001:db8::1]:40000".into());
        assert_eq!(admitted(&e, &s, &a, 15, NOW), 15);
        assert_eq!(
            admitted(&e, &s, &b, 15, NOW),
            5,
            "same IP, other port and XFF: same bucket"
        );
        assert_eq!(admitted(&e, &s, &c, 25, NOW), 20);

        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "integrator-free", "scope": {"header": "x-team"}}"#,
        );
        let blue = req("GET", "/api/v1/logs").with("x-team", "blue");
        let none = req("GET", "/api/v1/logs");
        assert_eq!(admitted(&e, &s, &blue, 25, NOW), 20);
        assert_eq!(
            admitted(&e, &s, &none, 25, NOW),
            20,
            "requests without the header share one bucket"
        );
    }

    fn vendor_answer(limit: u64, remaining: u64, secs_left: u64, refused: bool) -> Answer {
        Answer {
            limit,
            remaining,
            secs_left,
            date_secs: NOW / MICROS_PER_SEC,
            refused,
        }
    }

    /// Sends one request and, if forwarded, lets the vendor answer it.
    fn through_vendor(e: &Engine, s: &MemoryStore, r: &Req, now: u64, answer: Answer) -> u32 {
        let d = e.decide(s, r, now, 0);
        if let Verdict::Forward {
            teach, in_flight, ..
        } = &d.verdict
        {
            let lesson = e.learn(s, teach, &answer, now).unwrap().unwrap();
            assert_eq!(lesson.stored, Learned::Stored);
            // The response is complete: the request is no longer in flight.
            e.release(s, in_flight, now, &mut Vec::new());
        }
        status(&d)
    }

    #[test]
    fn vendor_mode_admits_only_what_the_org_has_left() {
        let (e, s) = engine(r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor"}"#);
        let users = req("GET", "/api/v1/users");
        // The org has 10 of 600 left: someone else spent 590.
        let mut vendor_left = 10u64;
        let mut forwarded = 0;
        for i in 0..30 {
            let a = vendor_answer(600, vendor_left.saturating_sub(1), 50, false);
            if through_vendor(&e, &s, &users, NOW + i, a) == 200 {
                forwarded += 1;
                vendor_left -= 1;
            }
        }
        // The first request (no answer yet) and then exactly what was left.
        assert_eq!(forwarded, 10);
        let d = e.decide(&s, &users, NOW + 100, 0);
        assert_eq!(status(&d), 429);
        assert_eq!(header(&d, "x-rate-limit-limit"), Some("600"));
        // The vendor's reset, 50 s after its Date, as Okta gives it (rounded down).
        assert_eq!(header(&d, "x-rate-limit-reset"), Some("1795392050"));
        // The emulate default never teaches.
        let (e, s) = engine(r#"{"vendor": "okta", "plan": "enterprise"}"#);
        let Verdict::Forward { teach, .. } = e.decide(&s, &users, NOW, 0).verdict else {
            panic!()
        };
        assert!(teach.is_empty());
    }

    #[test]
    fn vendor_429_refuses_locally_until_its_reset() {
        let (e, s) = engine(r#"{"vendor": "auth0", "plan": "free", "upstream": "vendor"}"#);
        let users = req("GET", "/api/v2/users");
        assert_eq!(
            through_vendor(&e, &s, &users, NOW, vendor_answer(50, 0, 5, true)),
            200
        );
        let d = e.decide(&s, &users, NOW + 4 * MICROS_PER_SEC, 0);
        assert_eq!(status(&d), 429);
        assert_eq!(header(&d, "retry-after"), Some("1"));
        assert_eq!(admitted(&e, &s, &users, 1, NOW + 5 * MICROS_PER_SEC), 1);
    }

    #[test]
    fn a_raised_vendor_limit_is_adopted() {
        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor", "headroom_percent": 50}"#,
        );
        let users = req("GET", "/api/v1/users");
        let mut forwarded = 0;
        let mut left = 1200u64;
        for i in 0..1000 {
            let a = vendor_answer(1200, left - 1, 50, false);
            let d = e.decide(&s, &users, NOW + i, 0);
            if let Verdict::Forward {
                teach, in_flight, ..
            } = &d.verdict
            {
                let lesson = e.learn(&s, teach, &a, NOW + i).unwrap().unwrap();
                e.release(&s, in_flight, NOW + i, &mut Vec::new());
                assert_eq!((lesson.vendor_limit, lesson.table_limit), (1200, 600));
                forwarded += 1;
                left -= 1;
            }
        }
        // 50% of the vendor's 1200 (not of the table's 600): 600 spent, 600 kept.
        assert_eq!(forwarded, 600);
    }

    #[test]
    fn auth0_answers_teach_the_bucket_whose_limit_they_report() {
        // enterprise-prod GET /api/v2/users: the tenant's 50/s and 1000/min, the endpoint's
        // 40/s and 800/min.
        let (e, s) =
            engine(r#"{"vendor": "auth0", "plan": "enterprise-prod", "upstream": "vendor"}"#);
        let users = req("GET", "/api/v2/users");
        let Verdict::Forward { teach, .. } = e.decide(&s, &users, NOW, 0).verdict else {
            panic!()
        };
        assert!(teach.len() >= 2, "{teach:?}");
        let limit_of = |t: &Teach| e.published_limits[t.bucket];
        for t in &teach {
            let lesson = e
                .learn(&s, &teach, &vendor_answer(limit_of(t), 3, 1, false), NOW)
                .unwrap()
                .unwrap();
            assert_eq!(lesson.bucket, t.bucket);
        }
        // A figure matching no bucket teaches the one the filter reported.
        let reported = teach.iter().find(|t| t.reported).unwrap();
        let lesson = e
            .learn(&s, &teach, &vendor_answer(12_345, 3, 1, false), NOW)
            .unwrap()
            .unwrap();
        assert_eq!(
            (lesson.bucket, lesson.table_limit),
            (reported.bucket, limit_of(reported))
        );
    }

    #[test]
    fn shadow_mode_counts_vendor_refusals_without_refusing() {
        let (e, s) = engine(
            r#"{"vendor": "okta", "plan": "enterprise", "upstream": "vendor", "mode": "shadow"}"#,
        );
        let users = req("GET", "/api/v1/users");
        assert_eq!(
            through_vendor(&e, &s, &users, NOW, vendor_answer(600, 0, 30, true)),
            200
        );
        let d = e.decide(&s, &users, NOW + 1, 0);
        assert_eq!(status(&d), 200);
        // The org's concurrency limit admits it; the vendor's figure would refuse it.
        assert!(matches!(
            d.counts[..],
            [(_, Count::Admitted), (_, Count::ShadowRejected)]
        ));
    }

    #[test]
    fn vendor_mode_forwards_onelogins_status_endpoint() {
        let (e, s) = engine(r#"{"vendor": "onelogin", "upstream": "vendor"}"#);
        let status_req = req("GET", "/auth/rate_limit").with("authorization", "bearer:tok");
        assert_eq!(
            e.decide(&s, &status_req, NOW, 0).verdict,
            Verdict::Unlimited
        );
    }

    struct BrokenStore;

    impl SharedStore for BrokenStore {
        fn get(&self, k: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            Err(StoreError::Host {
                key: k.to_string(),
                status: "down".into(),
            })
        }
        fn set(&self, k: &str, _: &[u8], _: Option<u32>) -> Result<bool, StoreError> {
            Err(StoreError::BadArgument(k.to_string()))
        }
    }

    #[test]
    fn a_failing_store_lets_requests_through_and_says_so() {
        let (e, _) = engine(r#"{"vendor": "okta", "plan": "integrator-free"}"#);
        let d = e.decide(&BrokenStore, &req("GET", "/api/v1/logs"), NOW, 0);
        assert_eq!(status(&d), 200);
        // The concurrency limit and the logs row count under one owner (the
        // org): one transaction, one error.
        assert_eq!(d.errors.len(), 1);
        assert!(
            d.errors
                .iter()
                .all(|e| matches!(e, StoreError::Host { status, .. } if status == "down")),
            "{:?}",
            d.errors
        );
    }

    /// Every vendor and algorithm (fixed window, token bucket, concurrency,
    /// the SPA and status routes), odd requests, and times from 0 to
    /// `u64::MAX` in both directions: a decision never panics (tests build
    /// with overflow checks), and a forwarded request can be released.
    #[test]
    fn odd_requests_never_panic() {
        let configs = [
            r#"{"vendor": "okta", "plan": "enterprise"}"#,
            r#"{"vendor": "okta", "plan": "integrator-free", "headers": "both"}"#,
            r#"{"vendor": "auth0", "plan": "free", "scope": "client_ip", "max_keys": 64}"#,
            r#"{"vendor": "auth0", "plan": "enterprise-prod", "headers": "ietf"}"#,
            r#"{"vendor": "onelogin", "scope": {"header": "x-team"}, "headers": "both"}"#,
            r#"{"vendor": "custom", "routes": [{"route": "/*", "limit": 3, "window": 1, "algorithm": "fixed_window"}]}"#,
            r#"{"vendor": "custom", "dialect": "okta", "mode": "shadow", "routes": [{"route": "/*", "limit": 3, "window": 1}]}"#,
        ];
        let huge = "/api/v1/".to_string() + &"x/".repeat(40_000);
        let requests = [
            ("", ""),
            ("GET", "?"),
            ("GET", huge.as_str()),
            ("BREW", "/api/v1/users"),
            ("GET", "/api/v1/%ff%fe"),
            ("GET", "/api/v1/logs"),
            ("GET", "/api/v2/users"),
            ("POST", "/api/v2/jobs/users-imports"),
            ("GET", "/api/v2/users/u1"),
            ("GET", "/auth/rate_limit"),
            ("GET", "/api/2/users"),
        ];
        let times = [NOW, 0, u64::MAX, 1, u64::MAX - 1, NOW, u64::MAX / 2, 0];
        for json in configs {
            let (e, s) = engine(json);
            for (method, path) in requests {
                for bare in [true, false] {
                    let mut r = req(method, path)
                        .with("authorization", &spa_token("u1", "read:current_user"))
                        .with("x-team", "blue");
                    r.source = Some("10.0.0.1:4000".into());
                    if bare {
                        r.headers.clear();
                        r.source = None;
                    }
                    for (i, &now) in times.iter().enumerate() {
                        let d = e.decide(&s, &r, now, i as u64);
                        if let Verdict::Forward { holds, .. } = &d.verdict {
                            let mut errors = Vec::new();
                            e.release(&s, holds, now, &mut errors);
                            assert!(errors.is_empty(), "{json}: {errors:?}");
                        }
                        assert!(d.errors.is_empty(), "{json} {method} at {now}");
                    }
                }
            }
        }
    }

    /// `make fuzz` found this (engine target, artifact `crash-16c5b6e1…`):
    /// Auth0's token buckets asked at `now = u64::MAX` overflowed in
    /// `limiter.rs`. The input, as the target read it: the engine for
    /// `auth0`/`free` by client IP, `GET /api/v2/users`, time `u64::MAX`.
    #[test]
    fn fuzz_crash_16c5b6e1_auth0_at_u64_max() {
        let (e, s) =
            engine(r#"{"vendor": "auth0", "plan": "free", "scope": "client_ip", "max_keys": 64}"#);
        let r = req("GET", "/api/v2/users");
        let d = e.decide(&s, &r, u64::MAX, 1);
        assert_eq!(status(&d), 200);
        assert!(d.errors.is_empty());
    }
}
