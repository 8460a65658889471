//! Auth0's Authentication API limits, from the "Rate Limit Configurations"
//! pages (copied in `tests/vendor-tables/auth0-authentication.tsv`): the
//! API-wide limit by plan and the endpoint limits those pages print with a
//! path. Each is a token bucket: it holds `burst` and refills `sustained`
//! per `period`. Refusals carry the Authentication API's OAuth-style body.

use crate::limiter::{Algorithm, Limit, MICROS_PER_SEC};
use crate::policy::{Bucket, PolicySpec, RejectBody, Scope, Target};

/// Who an endpoint row counts per, as the pages' "limit type" says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    /// "Any request": the tenant.
    Tenant,
    /// "From an IP address".
    Ip,
    /// "To a unique user ID": the access token's user.
    User,
    /// "From an IP address to a unique email address": the email is in the
    /// body, which the filter does not read, so per IP (stricter).
    IpAndEmail,
}

pub struct AuthRow {
    pub id: &'static str,
    /// The row as the page prints it.
    pub label: &'static str,
    pub methods: &'static [&'static str],
    pub path: &'static str,
    pub burst: u64,
    pub sustained: u64,
    pub period_secs: u64,
    pub per: Per,
    /// Plans whose page prints the row.
    pub plans: &'static [&'static str],
}

const ALL: &[&str] = &[
    "free",
    "self-service",
    "enterprise-nonprod",
    "enterprise-prod",
];

/// The API-wide rows: (page row, plan, burst, sustained, period). The
/// `self-service` plan reads the Essentials and Professional page; no page
/// gives the legacy developer tenants an Authentication API limit, so
/// `developer-legacy` has none here.
pub const API_WIDE: [(&str, &str, u64, u64, u64); 4] = [
    ("Authentication API", "free", 300, 300, 60),
    ("Authentication API", "self-service", 25, 25, 1),
    ("Production", "enterprise-prod", 100, 100, 1),
    ("Non-production", "enterprise-nonprod", 100, 100, 1),
];

pub const ENDPOINTS: [AuthRow; 6] = [
    AuthRow {
        id: "userinfo",
        label: "User Info",
        methods: &["GET", "POST"],
        path: "/userinfo",
        burst: 10,
        sustained: 5,
        period_secs: 60,
        per: Per::User,
        plans: ALL,
    },
    AuthRow {
        id: "change-password",
        label: "Change Password",
        methods: &["POST"],
        path: "/dbconnections/change_password",
        burst: 10,
        sustained: 1,
        period_secs: 60,
        per: Per::IpAndEmail,
        plans: ALL,
    },
    AuthRow {
        id: "passwordless-start",
        label: "Get Passwordless Code or Link",
        methods: &["GET", "POST"],
        path: "/passwordless/start",
        burst: 50,
        sustained: 50,
        period_secs: 3600,
        per: Per::Ip,
        plans: ALL,
    },
    AuthRow {
        id: "oauth-token",
        label: "Get Token",
        methods: &["POST"],
        path: "/oauth/token",
        burst: 30,
        sustained: 30,
        period_secs: 1,
        per: Per::Tenant,
        plans: &["free"],
    },
    AuthRow {
        id: "oidc-register",
        label: "Dynamic Application (Client) Registration",
        methods: &["POST"],
        path: "/oidc/register",
        burst: 5,
        sustained: 5,
        period_secs: 1,
        per: Per::Tenant,
        plans: ALL,
    },
    AuthRow {
        id: "signup",
        label: "Inscription",
        methods: &["POST"],
        path: "/dbconnections/signup",
        burst: 50,
        sustained: 50,
        period_secs: 60,
        per: Per::Ip,
        plans: &["free"],
    },
];

/// Authentication API endpoints the API-wide limit covers beyond the rows:
/// the protocol endpoints of an Auth0 tenant (our list; the pages say
/// "nearly all Authentication API endpoints" without naming them).
pub const OTHER_PATHS: &[&str] = &[
    "/authorize",
    "/oauth/*",
    "/dbconnections/*",
    "/passwordless/*",
    "/co/authenticate",
    "/usernamepassword/login",
    "/v2/logout",
    "/oidc/logout",
    "/mfa/*",
];

/// The `error_description` of the Authentication API's 429.
pub const TOO_MANY_REQUESTS: &str = "Too many requests. Check the X-RateLimit-Limit, \
     X-RateLimit-Remaining and X-RateLimit-Reset headers.";
pub const GLOBAL_LIMIT: &str = "Global limit has been reached";

/// A bucket holding `burst` and refilling `sustained` per `period`.
pub(crate) fn limit(burst: u64, sustained: u64, period_secs: u64) -> Limit {
    Limit {
        algorithm: Algorithm::TokenBucket,
        limit: burst,
        window_us: (burst * period_secs * MICROS_PER_SEC / sustained.max(1)).max(1),
    }
}

fn scope(per: Per) -> Scope {
    match per {
        Per::Tenant => Scope::Host,
        Per::Ip | Per::IpAndEmail => Scope::HostAndClientIp,
        Per::User => Scope::BearerUser,
    }
}

/// Adds the Authentication API for `plan`. `existing_oidc_register` is the
/// Management catalog's own `/oidc/register` bucket where it has one (free
/// and self-service tenants), which then stands for the row.
pub fn add(spec: &mut PolicySpec, plan: &str, existing_oidc_register: Option<usize>) {
    let wide = API_WIDE.iter().find(|w| w.1 == plan).map(|w| {
        let mut b = Bucket::new(
            "auth0.authentication.api",
            &format!("Authentication API, {}", w.0),
            limit(w.2, w.3, w.4),
            Scope::Host,
        );
        b.reject = RejectBody::OAuth(GLOBAL_LIMIT.to_string());
        spec.bucket(b)
    });
    for row in ENDPOINTS.iter().filter(|r| r.plans.contains(&plan)) {
        let own = match (row.id, existing_oidc_register) {
            ("oidc-register", Some(b)) => b,
            _ => {
                let mut b = Bucket::new(
                    &format!("auth0.authentication.{}", row.id),
                    row.label,
                    limit(row.burst, row.sustained, row.period_secs),
                    scope(row.per),
                );
                b.reject = RejectBody::OAuth(TOO_MANY_REQUESTS.to_string());
                spec.bucket(b)
            }
        };
        // The API-wide limit is checked first, then the endpoint's.
        let buckets = wide.into_iter().chain([own]).collect();
        let mut route =
            crate::policy::Route::new(Some(row.methods), &[row.path], Target::Buckets(buckets));
        // It stands for whatever the Management catalog routes there.
        route.replace = true;
        spec.routes.push(route);
    }
    if let Some(w) = wide {
        spec.route(None, OTHER_PATHS, Target::Buckets(vec![w]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::published::copy;

    #[test]
    fn numbers_match_the_published_pages() {
        let published = copy("auth0-authentication");
        let n = |c: &str| -> u64 { c.parse().unwrap() };
        let (wide, rows): (Vec<_>, Vec<_>) = published.rows.iter().partition(|r| r[3] == "-");
        let pages = [
            ("free", "free-public"),
            ("self-service", "essentials-professional-b2b"),
            ("enterprise-prod", "enterprise-public"),
            ("enterprise-nonprod", "enterprise-public"),
        ];
        assert_eq!(wide.len(), API_WIDE.len());
        for (w, r) in API_WIDE.iter().zip(&wide) {
            let page = pages.iter().find(|p| p.0 == w.1).unwrap().1;
            assert_eq!((page, w.0), (r[0].as_str(), r[1].as_str()));
            assert_eq!((w.2, w.3, w.4), (n(&r[4]), n(&r[5]), n(&r[6])), "{}", w.0);
        }
        assert_eq!(rows.len(), ENDPOINTS.len());
        for (e, r) in ENDPOINTS.iter().zip(&rows) {
            assert!(r[1].starts_with(e.label), "{} vs {}", e.label, r[1]);
            assert_eq!(e.methods.join(","), r[2]);
            assert_eq!(e.path, r[3]);
            let per = match r[7].as_str() {
                "Any request" => Per::Tenant,
                "From an IP address" => Per::Ip,
                "To a unique user ID" => Per::User,
                "From an IP address to a unique email address" => Per::IpAndEmail,
                other => panic!("limit type {other:?}"),
            };
            assert_eq!(
                (e.burst, e.sustained, e.period_secs, e.per),
                (n(&r[4]), n(&r[5]), n(&r[6]), per),
                "{}",
                e.id
            );
        }
    }

    #[test]
    fn burst_and_refill() {
        // 10 at once, then 5 a minute: one every 12 s.
        let l = limit(10, 5, 60);
        assert_eq!((l.limit, l.window_us), (10, 120 * MICROS_PER_SEC));
        let l = limit(300, 300, 60);
        assert_eq!((l.limit, l.window_us), (300, 60 * MICROS_PER_SEC));
    }
}
