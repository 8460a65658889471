//! Auth0's Management API limits (`auth0-management-api-rate-limits.md`):
//! the tenant-wide limit by tenant type, the per-endpoint buckets (one table
//! for enterprise and legacy developer tenants, one for self-service and free
//! ones), the import-jobs concurrency limit and the SPA `current_user` limit.
//! Every limit is a token bucket refilled evenly over its window; a row with
//! a per-second and a per-minute (or per-day) column is two buckets.

use crate::limiter::{Algorithm, Limit, MICROS_PER_SEC};
use crate::policy::{Bucket, PolicySpec, RejectBody, Scope, Target};

pub const PLANS: [&str; 5] = [
    "free",
    "self-service",
    "enterprise-nonprod",
    "enterprise-prod",
    "developer-legacy",
];

pub fn canonical_plan(plan: &str) -> Option<&'static str> {
    let plan = if plan == "trial" { "free" } else { plan };
    PLANS.iter().copied().find(|p| *p == plan)
}

/// A tenant-type row: its doc label, the plans it covers, per-second and
/// per-minute limits.
pub struct TenantRow {
    pub label: &'static str,
    pub plans: &'static [&'static str],
    pub per_second: u64,
    pub per_minute: u64,
}

/// `self-service` has no row of its own in the tenant table; it reads the
/// Free or Trial row, the strictest reading of a paid non-enterprise tenant.
pub const TENANT: [TenantRow; 4] = [
    TenantRow {
        label: "Free or Trial",
        plans: &["free", "self-service"],
        per_second: 10,
        per_minute: 120,
    },
    TenantRow {
        label: "Enterprise (Non-production)",
        plans: &["enterprise-nonprod"],
        per_second: 10,
        per_minute: 120,
    },
    TenantRow {
        label: "Enterprise (Production)",
        plans: &["enterprise-prod"],
        per_second: 50,
        per_minute: 1000,
    },
    TenantRow {
        label: "Developer or Developer Pro (created before 05-21-2020)",
        plans: &["developer-legacy"],
        per_second: 50,
        per_minute: 1000,
    },
];

/// An endpoint row. `routes` are the (method, path) pairs the doc prints
/// (spelled as the real API spells them; see `DOC_SPELLING`); an empty list
/// is the row for every other endpoint.
pub struct EndpointRow {
    pub id: &'static str,
    pub label: &'static str,
    pub routes: &'static [(&'static str, &'static str)],
    pub per_second: Option<u64>,
    pub per_minute: Option<u64>,
    pub per_day: Option<u64>,
}

const USERS: &[(&str, &str)] = &[("GET", "/api/v2/users"), ("POST", "/api/v2/users")];
const LOGS: &[(&str, &str)] = &[("GET", "/api/v2/logs"), ("GET", "/api/v2/users/{id}/logs")];
const CLIENTS: &[(&str, &str)] = &[("GET", "/api/v2/clients"), ("POST", "/api/v2/clients/{id}")];
const CONNECTIONS: &[(&str, &str)] = &[
    ("GET", "/api/v2/connections"),
    ("POST", "/api/v2/connections/{id}"),
];
const DEVICE_CREDENTIALS: &[(&str, &str)] = &[("DELETE", "/api/v2/device-credentials/{id}")];

/// Where the doc misprints a path: the path as printed, as the API has it,
/// and whether the printed spelling is routed too (`custom-domains{id}` is
/// not: it glues a parameter to a literal, which is no route at all).
pub const DOC_SPELLING: &[(&str, &str, bool)] = &[
    ("/api/v2/user/{id}/logs", "/api/v2/users/{id}/logs", true),
    (
        "/api/v2/custom-domains{id}/verify",
        "/api/v2/custom-domains/{id}/verify",
        false,
    ),
];

const fn row(
    id: &'static str,
    label: &'static str,
    routes: &'static [(&'static str, &'static str)],
    limits: [Option<u64>; 3],
) -> EndpointRow {
    EndpointRow {
        id,
        label,
        routes,
        per_second: limits[0],
        per_minute: limits[1],
        per_day: limits[2],
    }
}

/// Endpoint buckets for enterprise and legacy developer tenants.
pub const ENDPOINTS: [EndpointRow; 6] = [
    row(
        "users",
        "Read or write users",
        USERS,
        [Some(40), Some(800), None],
    ),
    row("logs", "Read logs", LOGS, [Some(10), Some(200), None]),
    row(
        "clients",
        "Read clients",
        CLIENTS,
        [Some(5), Some(100), None],
    ),
    row(
        "connections",
        "Read connections",
        CONNECTIONS,
        [Some(10), Some(100), None],
    ),
    row(
        "device-credentials",
        "Delete device credentials",
        DEVICE_CREDENTIALS,
        [Some(5), Some(100), None],
    ),
    row(
        "other",
        "All other endpoints",
        &[],
        [Some(10), Some(150), None],
    ),
];

/// Endpoint buckets for free and self-service tenants. Rows the doc prints
/// without a path take the first table's paths: "Read" rows their `GET`
/// routes, "Write" rows the others (see `self_service_routes`).
pub const SELF_SERVICE: [EndpointRow; 14] = [
    row(
        "custom-domain-verify",
        "Verify custom domain",
        &[("POST", "/api/v2/custom-domains/{id}/verify")],
        [None, Some(5), None],
    ),
    row(
        "email-send-test",
        "Send test email",
        &[("POST", "/api/v2/email-send-test")],
        [Some(1), None, None],
    ),
    row(
        "oidc-register",
        "Register dynamic client",
        &[("POST", "/oidc/register")],
        [Some(5), None, None],
    ),
    row(
        "keys-signing-rotate",
        "Rotate signing keys",
        &[("POST", "/api/v2/keys/signing/rotate")],
        [None, None, Some(5)],
    ),
    row(
        "tenants-create",
        "Create tenant",
        &[("POST", "/api/v2/tenants")],
        [Some(5), None, None],
    ),
    row(
        "connection-status",
        "Read connection status",
        &[("GET", "/api/v2/connections/{id}/status")],
        [Some(15), None, None],
    ),
    row(
        "tenant-invitations",
        "Create tenant invitation",
        &[("POST", "/api/v2/tenants/invitations")],
        [None, Some(5), None],
    ),
    row(
        "read-users",
        "Read users",
        USERS,
        [Some(40), Some(500), None],
    ),
    row(
        "write-users",
        "Write users",
        USERS,
        [Some(20), Some(200), None],
    ),
    row("read-logs", "Read logs", LOGS, [Some(10), Some(100), None]),
    row(
        "read-clients",
        "Read clients",
        CLIENTS,
        [Some(5), Some(100), None],
    ),
    row(
        "read-connections",
        "Read connections",
        CONNECTIONS,
        [Some(10), Some(100), None],
    ),
    row(
        "write-device-credentials",
        "Write device credentials",
        DEVICE_CREDENTIALS,
        [Some(5), Some(100), None],
    ),
    row(
        "other",
        "All other endpoints combined",
        &[],
        [Some(10), Some(150), None],
    ),
];

/// The routes a self-service row covers: its own, or for a "Read"/"Write"
/// row the first table's routes filtered by method.
fn self_service_routes(row: &EndpointRow) -> Vec<(&'static str, &'static str)> {
    let want_read = row.id.starts_with("read-");
    let want_write = row.id.starts_with("write-");
    row.routes
        .iter()
        .copied()
        .filter(|(m, _)| {
            if want_read {
                *m == "GET"
            } else if want_write {
                *m != "GET"
            } else {
                true
            }
        })
        .collect()
}

/// The message of a 429 from the tenant-wide limit (the other buckets' 429s
/// point at the rate-limit headers instead).
pub const GLOBAL_LIMIT_MESSAGE: &str = "Global limit has been reached";

/// The import-jobs answer, as the doc prints it (with its limit filled in).
pub const IMPORT_JOBS_MESSAGE: &str =
    "There are {limit} active import users jobs, please wait until some of them are finished and try again";
pub const IMPORT_JOBS_PATH: &str = "/api/v2/jobs/users-imports";
pub const IMPORT_JOBS_LIMIT: u64 = 2;
/// How long an accepted import job is held as active. The filter cannot see
/// a job finish, so it errs short: a job held too long would be refused here
/// although the IdP would take it; one released too early is only answered
/// by the IdP's own 429.
pub const DEFAULT_IMPORT_JOB_HOLD_SECS: u64 = 60;
/// SPA tokens with a `current_user` scope: 10 requests per minute per user.
pub const SPA_PER_MINUTE: u64 = 10;

fn token_bucket(limit: u64, secs: u64) -> Limit {
    Limit {
        algorithm: Algorithm::TokenBucket,
        limit,
        window_us: secs * MICROS_PER_SEC,
    }
}

/// Adds a row's buckets (one per published column), returning their indexes.
fn add_row_buckets(
    spec: &mut PolicySpec,
    prefix: &str,
    label: &str,
    row: &EndpointRow,
) -> Vec<usize> {
    [
        (row.per_second, 1, "per-second"),
        (row.per_minute, 60, "per-minute"),
        (row.per_day, 86_400, "per-day"),
    ]
    .into_iter()
    .filter_map(|(limit, secs, name)| {
        let limit = limit?;
        let id = format!("{prefix}.{}.{name}", row.id);
        // No number in the label: it names the row the same in every plan.
        let label = format!("{label} ({name})");
        Some(spec.bucket(Bucket::new(
            &id,
            &label,
            token_bucket(limit, secs),
            Scope::Host,
        )))
    })
    .collect()
}

/// Which Management API tables apply: the seed page's (`"2020"`, this
/// module, the default) or Auth0's "Rate Limit Configurations" pages as
/// they are today (`"2026"`, `auth0_2026`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edition {
    Seed2020,
    Current2026,
}

/// The editions' names, the default first.
pub const EDITIONS: [&str; 2] = ["2020", "2026"];

impl Edition {
    pub fn name(self) -> &'static str {
        match self {
            Edition::Seed2020 => EDITIONS[0],
            Edition::Current2026 => EDITIONS[1],
        }
    }

    pub fn from_name(name: &str) -> Option<Edition> {
        [Edition::Seed2020, Edition::Current2026]
            .into_iter()
            .find(|e| e.name() == name)
    }

    /// Whether the edition has tables for a canonical plan.
    pub fn has_plan(self, plan: &str) -> bool {
        match self {
            Edition::Seed2020 => PLANS.contains(&plan),
            Edition::Current2026 => super::auth0_2026::Page::of_plan(plan).is_some(),
        }
    }
}

/// Builds the Auth0 policy for a canonical plan (one `edition.has_plan`);
/// `import_job_hold_secs` is how long an accepted import job counts as active.
pub fn policy(
    plan: &str,
    import_job_hold_secs: u64,
    catalogs: &[String],
    edition: Edition,
) -> PolicySpec {
    let page = super::auth0_2026::Page::of_plan(plan);
    let mut spec = match (catalogs.iter().any(|c| c == "management"), edition, page) {
        (false, _, _) => PolicySpec::default(),
        (true, Edition::Current2026, Some(page)) => {
            super::auth0_2026::management_policy(page, plan, import_job_hold_secs)
        }
        (true, _, _) => management_policy(plan, import_job_hold_secs),
    };
    // The Authentication API answers a dynamic client registration refusal
    // in its own (OAuth) form.
    let oidc = spec
        .bucket_index("auth0.self-service.oidc-register.per-second")
        .or_else(|| spec.bucket_index("auth0.endpoint.oidc-register"));
    if let Some(b) = oidc.and_then(|i| spec.buckets.get_mut(i)) {
        b.reject = RejectBody::OAuth(super::auth0_authentication::TOO_MANY_REQUESTS.to_string());
    }
    if catalogs.iter().any(|c| c == "authentication") {
        super::auth0_authentication::add(&mut spec, plan, oidc);
    }
    spec
}

/// Which Auth0 tables apply: the Management API's (default) and the
/// Authentication API's.
pub const CATALOGS: [&str; 2] = ["management", "authentication"];

fn management_policy(plan: &str, import_job_hold_secs: u64) -> PolicySpec {
    let mut spec = PolicySpec::default();
    let tenant = TENANT
        .iter()
        .find(|t| t.plans.contains(&plan))
        .unwrap_or(&TENANT[0]);
    let tenant_row = row(
        "tenant",
        tenant.label,
        &[],
        [Some(tenant.per_second), Some(tenant.per_minute), None],
    );
    let mut api_wide = add_row_buckets(
        &mut spec,
        "auth0",
        "Management API tenant limit",
        &tenant_row,
    );
    for &b in &api_wide {
        if let Some(bucket) = spec.buckets.get_mut(b) {
            bucket.reject = RejectBody::StandardSaying(GLOBAL_LIMIT_MESSAGE.to_string());
        }
    }
    let spa = add_spa_bucket(&mut spec);

    let self_service = matches!(plan, "free" | "self-service");
    let rows: &[EndpointRow] = if self_service {
        &SELF_SERVICE
    } else {
        &ENDPOINTS
    };
    let prefix = if self_service {
        "auth0.self-service"
    } else {
        "auth0.endpoint"
    };
    let mut other = Vec::new();
    for r in rows {
        let buckets = add_row_buckets(&mut spec, prefix, r.label, r);
        if r.routes.is_empty() {
            other = buckets;
            continue;
        }
        let routes = if self_service {
            self_service_routes(r)
        } else {
            r.routes.to_vec()
        };
        for (method, path) in routes {
            let in_api = path.starts_with("/api/v2/");
            let mut all = if in_api { api_wide.clone() } else { Vec::new() };
            all.extend(&buckets);
            if in_api {
                all.push(spa);
            }
            let mut patterns = vec![path];
            patterns.extend(
                DOC_SPELLING
                    .iter()
                    .filter(|(_, real, routed)| *routed && *real == path)
                    .map(|(doc, _, _)| *doc),
            );
            spec.route(Some(&[method]), &patterns, Target::Buckets(all));
        }
    }
    api_wide.extend(&other);
    api_wide.push(spa);

    add_import_jobs(&mut spec, &api_wide, import_job_hold_secs);
    spec.route(None, &["/api/v2/*"], Target::Buckets(api_wide));
    spec
}

/// Adds the SPA `current_user` bucket (every edition has it).
pub(super) fn add_spa_bucket(spec: &mut PolicySpec) -> usize {
    spec.bucket(Bucket::new(
        "auth0.spa.current-user",
        "SPA access tokens with current_user scopes, per user",
        token_bucket(SPA_PER_MINUTE, 60),
        Scope::JwtSubjectWithScope("current_user".to_string()),
    ))
}

/// Adds the import-jobs concurrency bucket and its route, behind the
/// buckets `api_wide` (every edition has it).
pub(super) fn add_import_jobs(
    spec: &mut PolicySpec,
    api_wide: &[usize],
    import_job_hold_secs: u64,
) {
    // Import jobs: the other-endpoint buckets first, then the concurrency
    // hold, so a request refused for rate takes no hold.
    let mut jobs = Bucket::new(
        "auth0.import-jobs",
        "Concurrent import users jobs",
        Limit {
            algorithm: Algorithm::Concurrency,
            limit: IMPORT_JOBS_LIMIT,
            window_us: import_job_hold_secs.max(1) * MICROS_PER_SEC,
        },
        Scope::Host,
    );
    jobs.reported = false;
    jobs.reject = RejectBody::Message(IMPORT_JOBS_MESSAGE.to_string());
    jobs.release_on_upstream_failure = true;
    let jobs = spec.bucket(jobs);
    let mut import = api_wide.to_vec();
    import.push(jobs);
    spec.route(
        Some(&["POST"]),
        &[IMPORT_JOBS_PATH],
        Target::Buckets(import),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::published::{copy, figure, limit};

    /// A route as the page prints it (`DOC_SPELLING` maps our spelling back).
    fn printed(route: &(&str, &str)) -> String {
        let path = DOC_SPELLING
            .iter()
            .find(|(_, real, _)| *real == route.1)
            .map_or(route.1, |(doc, _, _)| *doc);
        format!("{} {}", route.0, path)
    }

    #[test]
    fn tenant_limits_match_the_published_table() {
        let rows = copy("auth0-tenant").rows;
        assert_eq!(rows.len(), TENANT.len());
        for (t, cells) in TENANT.iter().zip(&rows) {
            assert_eq!(t.label, cells[0]);
            assert_eq!(Some(t.per_second), limit(&cells[1]), "{}", t.label);
            assert_eq!(Some(t.per_minute), limit(&cells[2]), "{}", t.label);
        }
    }

    /// Holds endpoint rows to a copied table: label, printed routes (rows
    /// whose routes are derived from the first table print none), limits.
    fn check_endpoints(rows: &[EndpointRow], copied: &str, day_column: bool) {
        let published = copy(copied).rows;
        assert_eq!(rows.len(), published.len(), "{copied}: row count");
        for (r, cells) in rows.iter().zip(&published) {
            assert_eq!(r.label, cells[0]);
            let is_derived = r.id.starts_with("read-") || r.id.starts_with("write-");
            if !(is_derived && cells[1] == "-") {
                let ours: Vec<_> = r.routes.iter().map(printed).collect();
                let ours = if ours.is_empty() {
                    "-".to_string()
                } else {
                    ours.join("; ")
                };
                assert_eq!(ours, cells[1], "{} routes", r.label);
            }
            assert_eq!(r.per_second, limit(&cells[2]), "{} per second", r.label);
            assert_eq!(r.per_minute, limit(&cells[3]), "{} per minute", r.label);
            let per_day = if day_column { limit(&cells[4]) } else { None };
            assert_eq!(r.per_day, per_day, "{} per day", r.label);
        }
    }

    #[test]
    fn endpoint_limits_match_the_published_tables() {
        check_endpoints(&ENDPOINTS, "auth0-endpoints", false);
        check_endpoints(&SELF_SERVICE, "auth0-self-service", true);
    }

    #[test]
    fn import_jobs_and_spa_numbers_match_the_doc() {
        let figures = copy("auth0-figures");
        assert_eq!(
            figure(&figures, "import jobs limit"),
            IMPORT_JOBS_LIMIT.to_string()
        );
        assert_eq!(figure(&figures, "import jobs message"), IMPORT_JOBS_MESSAGE);
        assert_eq!(
            figure(&figures, "spa per minute per user"),
            SPA_PER_MINUTE.to_string()
        );
    }

    #[test]
    fn self_service_reads_and_writes_split_by_method() {
        let read = SELF_SERVICE.iter().find(|r| r.id == "read-users").unwrap();
        let write = SELF_SERVICE.iter().find(|r| r.id == "write-users").unwrap();
        assert_eq!(self_service_routes(read), vec![("GET", "/api/v2/users")]);
        assert_eq!(self_service_routes(write), vec![("POST", "/api/v2/users")]);
        let status = SELF_SERVICE
            .iter()
            .find(|r| r.id == "connection-status")
            .unwrap();
        assert_eq!(
            self_service_routes(status),
            vec![("GET", "/api/v2/connections/{id}/status")]
        );
    }
}
