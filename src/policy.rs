//! A compiled policy: the buckets a vendor/plan (plus operator settings)
//! defines, and the routes that lead requests to them.

use crate::limiter::Limit;
use crate::router::{RouteError, RouteSpec, Router};

/// What a refusal does: answer the 429 (enforce), or only count and log it
/// (shadow). The configuration sets it for the whole policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Shadow,
}

/// What a bucket is counted per.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The request's `:authority`, lower-cased, port stripped: the org/tenant/account.
    Host,
    /// One bucket for every request.
    Global,
    /// Envoy's `source.address`, port stripped (never a forwarded header).
    ClientIp,
    /// A header set by a trusted filter before this one; requests without it
    /// share one "missing" key.
    Header(String),
    /// Auth0 SPA tokens: applies only when the bearer JWT has a scope
    /// containing this text, counted per `sub`.
    JwtSubjectWithScope(String),
    /// Okta's client-based limits: the org, the client IP, the `dt` device
    /// cookie (empty when absent) and, when `client_id`, the `client_id`
    /// query parameter (empty when absent).
    OktaClient { client_id: bool },
    /// Okta's per-principal share: the org and the API token or OAuth client
    /// making the call; applies only when the request names one.
    OktaPrincipal,
    /// The org and the client IP (Auth0's "from an IP address" rows).
    HostAndClientIp,
    /// The org and the bearer token's user: a JWT's `sub`, else the token
    /// itself (hashed); applies only to requests with a bearer token.
    BearerUser,
}

impl Scope {
    /// The fingerprint of the *owner* a request's key is in this scope: the
    /// buckets of a request whose scope and key agree count together, in one
    /// shared-data record (see table.rs).
    pub fn owner_fingerprint(&self, key: &str) -> u64 {
        let (kind, detail): (&[u8], &[u8]) = match self {
            Scope::Host => (b"host", b""),
            Scope::Global => (b"global", b""),
            Scope::ClientIp => (b"client_ip", b""),
            Scope::Header(name) => (b"header", name.as_bytes()),
            Scope::JwtSubjectWithScope(part) => (b"jwt_sub", part.as_bytes()),
            Scope::OktaClient { client_id: true } => (b"okta_client+id", b""),
            Scope::OktaClient { client_id: false } => (b"okta_client", b""),
            Scope::OktaPrincipal => (b"okta_principal", b""),
            Scope::HostAndClientIp => (b"host+client_ip", b""),
            Scope::BearerUser => (b"bearer_user", b""),
        };
        crate::hash::fingerprint(&[kind, detail, key.as_bytes()])
    }
}

/// Which 429 a bucket answers with, beyond the vendor's usual one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectBody {
    /// The dialect's usual 429.
    Standard,
    /// The dialect's usual 429, with this message instead of its usual one
    /// (Auth0's tenant-wide buckets: "Global limit has been reached").
    StandardSaying(String),
    /// Okta's concurrency 429: the usual body with `X-Rate-Limit-Limit: 0`
    /// and `X-Rate-Limit-Remaining: 0`, which Okta's SDKs recognise.
    Concurrency,
    /// Auth0's import-jobs answer; `{limit}` is replaced by the bucket's limit.
    Message(String),
    /// Auth0's Authentication API answer:
    /// `{"error":"too_many_requests","error_description":…}`.
    OAuth(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Stable id: names metrics and keys, so it must not change across releases.
    pub id: String,
    /// The vendor doc's wording, for logs and the README.
    pub label: String,
    pub limit: Limit,
    pub scope: Scope,
    /// Whether the bucket may be the one reported in rate-limit headers.
    pub reported: bool,
    /// Reported in preference to the other buckets of a request, however
    /// full they are (Okta's client-based limit: the headers are the client's).
    pub reported_first: bool,
    pub reject: RejectBody,
    /// Give the request back if the upstream answers with a non-2xx status
    /// (an import job the IdP refused never became active).
    pub release_on_upstream_failure: bool,
    /// Give the request back when its stream ends, however it ends (a
    /// request in flight: Okta's concurrency limit).
    pub release_when_done: bool,
    /// Fingerprint of `id` and algorithm: names the overflow entry.
    pub fingerprint: u64,
}

impl Bucket {
    /// The fingerprint of this bucket's counter for one scope key.
    pub fn key_fingerprint(&self, key: &str) -> u64 {
        crate::hash::fingerprint(&[
            self.id.as_bytes(),
            self.limit.algorithm.tag().as_bytes(),
            key.as_bytes(),
        ])
    }

    pub fn new(id: &str, label: &str, limit: Limit, scope: Scope) -> Bucket {
        Bucket {
            id: id.to_string(),
            label: label.to_string(),
            fingerprint: crate::hash::fingerprint(&[
                id.as_bytes(),
                limit.algorithm.tag().as_bytes(),
            ]),
            limit,
            scope,
            reported: true,
            reported_first: false,
            reject: RejectBody::Standard,
            release_on_upstream_failure: false,
            release_when_done: false,
        }
    }
}

/// Where a route leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Counted against these buckets (indexes into `Policy::buckets`); all must admit.
    Buckets(Vec<usize>),
    /// Never limited, no headers (public metadata endpoints).
    Exempt,
    /// OneLogin's `GET /auth/rate_limit`, answered by the filter itself with
    /// the state of this bucket (an index into `Policy::buckets`).
    RateLimitStatus(usize),
}

/// A route before compilation: methods (`None`: all), patterns, target.
#[derive(Clone, Debug)]
pub struct Route {
    pub methods: Option<Vec<String>>,
    pub patterns: Vec<String>,
    pub target: Target,
    /// An operator override: replaces whatever the catalog routes at the
    /// same pattern and method, instead of adding to it.
    pub replace: bool,
}

impl Route {
    pub fn new(methods: Option<&[&str]>, patterns: &[&str], target: Target) -> Route {
        Route {
            methods: methods.map(|ms| ms.iter().map(|m| m.to_string()).collect()),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            target,
            replace: false,
        }
    }
}

/// Buckets and routes as a vendor catalog (or a custom config) defines them.
#[derive(Clone, Debug, Default)]
pub struct PolicySpec {
    pub buckets: Vec<Bucket>,
    pub routes: Vec<Route>,
    /// Buckets every counted request passes first, whatever its route (Okta's
    /// concurrency limit): a request they refuse takes nothing elsewhere.
    pub gates: Vec<usize>,
}

impl PolicySpec {
    /// Adds a bucket, returning its index.
    pub fn bucket(&mut self, bucket: Bucket) -> usize {
        self.buckets.push(bucket);
        self.buckets.len() - 1
    }

    pub fn route(&mut self, methods: Option<&[&str]>, patterns: &[&str], target: Target) {
        self.routes.push(Route::new(methods, patterns, target));
    }

    pub fn bucket_index(&self, id: &str) -> Option<usize> {
        self.buckets.iter().position(|b| b.id == id)
    }
}

/// A policy ready for requests.
pub struct Policy {
    pub buckets: Vec<Bucket>,
    gates: Vec<usize>,
    targets: Vec<Target>,
    router: Router,
}

impl Policy {
    pub fn compile(spec: PolicySpec) -> Result<Policy, RouteError> {
        let mut targets = Vec::with_capacity(spec.routes.len());
        let mut specs = Vec::with_capacity(spec.routes.len());
        for route in spec.routes {
            specs.push(RouteSpec {
                methods: route.methods,
                patterns: route.patterns,
                target: targets.len(),
                replace: route.replace,
            });
            targets.push(route.target);
        }
        Ok(Policy {
            buckets: spec.buckets,
            gates: spec.gates,
            router: Router::new(&specs)?,
            targets,
        })
    }

    /// What applies to a request: `None` when no route matches. Where
    /// several routes share the most specific pattern (the same row in two
    /// catalogs), their buckets all apply; an exempt or status route wins.
    pub fn resolve(&self, method: &str, normalized_path: &str) -> Option<Resolved> {
        Some(self.targets_of(self.router.lookup(method, normalized_path)?))
    }

    /// Like `resolve`, with the (expanded) pattern that matched (for tools:
    /// finding the pattern is a search).
    pub fn resolve_route(&self, method: &str, normalized_path: &str) -> Option<(&str, Resolved)> {
        let (pattern, hits) = self.router.lookup_route(method, normalized_path)?;
        Some((pattern, self.targets_of(hits)))
    }

    fn targets_of(&self, hits: &[usize]) -> Resolved {
        let mut buckets = self.gates.clone();
        for target in hits.iter().filter_map(|&i| self.targets.get(i)) {
            match target {
                Target::Exempt => return Resolved::Exempt,
                Target::RateLimitStatus(b) => return Resolved::RateLimitStatus(*b),
                Target::Buckets(bs) => {
                    for b in bs {
                        if !buckets.contains(b) {
                            buckets.push(*b);
                        }
                    }
                }
            }
        }
        Resolved::Buckets(buckets)
    }

    /// Which of the spec's routes (by index, in `PolicySpec::routes` order)
    /// still lead from exactly `pattern` (expanded) for `method` (`None`: a
    /// method no route names): an override replaces catalog routes there.
    pub fn routes_at(&self, method: Option<&str>, pattern: &str) -> &[usize] {
        self.router.routed_at(method, pattern).unwrap_or(&[])
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    Buckets(Vec<usize>),
    Exempt,
    /// A status endpoint reporting this bucket.
    RateLimitStatus(usize),
}
