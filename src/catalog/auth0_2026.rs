//! Auth0's Management API limits as its "Rate Limit Configurations" pages
//! print them today: the edition `"2026"` (copied in
//! `tests/vendor-tables/auth0-2026-*.tsv`). One page per plan: Free,
//! Essentials and Professional (our `self-service`), Enterprise. Every row is
//! one token bucket holding `burst` and refilling `sustained` per `period`.
//!
//! Where it differs from the seed page (edition `"2020"`, `auth0.rs`): the
//! API-wide limit is a burst and a sustained rate (Free 2 and 2/s, Enterprise
//! production 50 and 16/s, non-production 10 and 2/s; the Essentials page
//! prints none), and each page has its own endpoint table, naming rows by the
//! API reference page they link to rather than by path.

use super::auth0::{add_import_jobs, add_spa_bucket, GLOBAL_LIMIT_MESSAGE};
use crate::limiter::Limit;
use crate::policy::{Bucket, PolicySpec, RejectBody, Scope, Target};

/// A published row's numbers: the bucket holds `burst` and refills
/// `sustained` per `period_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowLimit {
    pub burst: u64,
    pub sustained: u64,
    pub period_secs: u64,
}

impl RowLimit {
    pub const fn new(burst: u64, sustained: u64, period_secs: u64) -> RowLimit {
        RowLimit {
            burst,
            sustained,
            period_secs,
        }
    }

    pub fn limit(self) -> Limit {
        super::auth0_authentication::limit(self.burst, self.sustained, self.period_secs)
    }
}

/// The page a plan reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Free,
    Essentials,
    Enterprise,
}

impl Page {
    /// The page's file name (as `auth0-2026-*.tsv` cites it).
    pub fn name(self) -> &'static str {
        match self {
            Page::Free => "free-public",
            Page::Essentials => "essentials-professional-b2b",
            Page::Enterprise => "enterprise-public",
        }
    }

    /// The page for a canonical plan; `developer-legacy` has none.
    pub fn of_plan(plan: &str) -> Option<Page> {
        match plan {
            "free" => Some(Page::Free),
            "self-service" => Some(Page::Essentials),
            "enterprise-prod" | "enterprise-nonprod" => Some(Page::Enterprise),
            _ => None,
        }
    }

    pub fn rows(self) -> &'static [Row] {
        match self {
            Page::Free => &FREE,
            Page::Essentials => &ESSENTIALS,
            Page::Enterprise => &ENTERPRISE,
        }
    }
}

/// The API-wide Management limit: (page, row as printed, plan, burst,
/// sustained, period in seconds).
pub const TENANT: [(Page, &str, &str, RowLimit); 3] = [
    (Page::Free, "Management", "free", RowLimit::new(2, 2, 1)),
    (
        Page::Enterprise,
        "Production",
        "enterprise-prod",
        RowLimit::new(50, 16, 1),
    ),
    (
        Page::Enterprise,
        "Non-production",
        "enterprise-nonprod",
        RowLimit::new(10, 2, 1),
    ),
];

/// What a row is routed to.
#[derive(Clone, Copy, Debug)]
pub enum Routes {
    /// (method, path) pairs, spelled as the API spells them: our reading of
    /// the path the row prints (Free) or of the reference page it links to.
    Paths(&'static [(&'static str, &'static str)]),
    /// Every Management API endpoint no other row names.
    Other,
    /// Not emulated, and why.
    NotEmulated(&'static str),
}

/// An endpoint row: its id (unique in its page), the row as printed, the
/// methods it prints, its limit, and its routes.
pub struct Row {
    pub id: &'static str,
    pub label: &'static str,
    pub methods: &'static [&'static str],
    pub limit: RowLimit,
    pub routes: Routes,
}

const fn r(
    id: &'static str,
    label: &'static str,
    methods: &'static [&'static str],
    limit: [u64; 3],
    routes: Routes,
) -> Row {
    Row {
        id,
        label,
        methods,
        limit: RowLimit::new(limit[0], limit[1], limit[2]),
        routes,
    }
}

const MINUTE: u64 = 60;
const DAY: u64 = 86_400;

/// Rows whose printed method the API does not have: (page, row id, printed,
/// routed). The Free page prints `POST` for reading a connection's status;
/// the API (and the other pages) have `GET`.
pub const METHOD_MISPRINTS: &[(Page, &str, &str, &str)] =
    &[(Page::Free, "connection-status", "POST", "GET")];

const Q_ONLY: &str = "applies only when the `q` query parameter is used; the filter routes by \
                      method and path, so these requests count in the plain Read Clients row";

// Routes shared by the pages that link to the same reference page.
const ORGS_GET: Routes = Routes::Paths(&[("GET", "/api/v2/organizations")]);
const ORG_GET: Routes = Routes::Paths(&[("GET", "/api/v2/organizations/{id}")]);
const ORG_BY_NAME: Routes = Routes::Paths(&[("GET", "/api/v2/organizations/name/{name}")]);
const ORGS_WRITE: Routes = Routes::Paths(&[
    ("POST", "/api/v2/organizations"),
    ("PATCH", "/api/v2/organizations/{id}"),
    ("DELETE", "/api/v2/organizations/{id}"),
]);
const MEMBERS_GET: Routes = Routes::Paths(&[("GET", "/api/v2/organizations/{id}/members")]);
const MEMBERS_WRITE: Routes = Routes::Paths(&[
    ("POST", "/api/v2/organizations/{id}/members"),
    ("DELETE", "/api/v2/organizations/{id}/members"),
]);
const MEMBER_ROLES_GET: Routes =
    Routes::Paths(&[("GET", "/api/v2/organizations/{id}/members/{user_id}/roles")]);
const MEMBER_ROLES_WRITE: Routes = Routes::Paths(&[
    ("POST", "/api/v2/organizations/{id}/members/{user_id}/roles"),
    (
        "DELETE",
        "/api/v2/organizations/{id}/members/{user_id}/roles",
    ),
]);
const ORG_CONNECTIONS_GET: Routes =
    Routes::Paths(&[("GET", "/api/v2/organizations/{id}/enabled_connections")]);
const ORG_CONNECTIONS_WRITE: Routes = Routes::Paths(&[
    ("POST", "/api/v2/organizations/{id}/enabled_connections"),
    (
        "PATCH",
        "/api/v2/organizations/{id}/enabled_connections/{connection_id}",
    ),
    (
        "DELETE",
        "/api/v2/organizations/{id}/enabled_connections/{connection_id}",
    ),
]);
const CUSTOM_DOMAIN_VERIFY: Routes =
    Routes::Paths(&[("POST", "/api/v2/custom-domains/{id}/verify")]);
const CONNECTION_STATUS: Routes = Routes::Paths(&[("GET", "/api/v2/connections/{id}/status")]);
const SIGNING_KEYS_ROTATE: Routes = Routes::Paths(&[("POST", "/api/v2/keys/signing/rotate")]);
const PARTIALS_GET: Routes = Routes::Paths(&[("GET", "/api/v2/prompts/{prompt}/partials")]);
const PARTIALS_PUT: Routes = Routes::Paths(&[("PUT", "/api/v2/prompts/{prompt}/partials")]);
const ORG_CLIENT_GRANTS_GET: Routes =
    Routes::Paths(&[("GET", "/api/v2/organizations/{id}/client-grants")]);
const ORG_CLIENT_GRANTS_POST: Routes =
    Routes::Paths(&[("POST", "/api/v2/organizations/{id}/client-grants")]);
const EMAIL_TEMPLATES_WRITE: Routes = Routes::Paths(&[
    ("POST", "/api/v2/email-templates"),
    ("PATCH", "/api/v2/email-templates/{name}"),
    ("DELETE", "/api/v2/email-templates/{name}"),
]);
const EMAIL_TEMPLATES_GET: Routes = Routes::Paths(&[
    ("GET", "/api/v2/email-templates"),
    ("GET", "/api/v2/email-templates/{name}"),
]);
const EMAIL_PROVIDER_WRITE: Routes = Routes::Paths(&[
    ("POST", "/api/v2/emails/provider"),
    ("PATCH", "/api/v2/emails/provider"),
    ("DELETE", "/api/v2/emails/provider"),
]);
const EMAIL_PROVIDER_GET: Routes = Routes::Paths(&[("GET", "/api/v2/emails/provider")]);
const TOKEN_EXCHANGE_WRITE: Routes = Routes::Paths(&[
    ("POST", "/api/v2/token-exchange-profiles"),
    ("PATCH", "/api/v2/token-exchange-profiles/{id}"),
    ("DELETE", "/api/v2/token-exchange-profiles/{id}"),
]);
const TOKEN_EXCHANGE_GET: Routes = Routes::Paths(&[
    ("GET", "/api/v2/token-exchange-profiles"),
    ("GET", "/api/v2/token-exchange-profiles/{id}"),
]);

const GET: &[&str] = &["GET"];
const POST: &[&str] = &["POST"];
const PUT: &[&str] = &["PUT"];
const POST_DELETE: &[&str] = &["POST", "DELETE"];
const WRITE: &[&str] = &["POST", "PATCH", "DELETE"];

/// The Free page's Management endpoint rows.
pub const FREE: [Row; 8] = [
    r(
        "oidc-register",
        "Register Dynamic Client",
        POST,
        [5, 5, 1],
        Routes::Paths(&[("POST", "/oidc/register")]),
    ),
    r(
        "custom-domain-verify",
        "Verify Custom Domain",
        POST,
        [5, 5, MINUTE],
        CUSTOM_DOMAIN_VERIFY,
    ),
    r(
        "connection-status",
        "Read Status Connection",
        POST,
        [100, 15, 1],
        CONNECTION_STATUS,
    ),
    r(
        "keys-signing-rotate",
        "Rotate Signing Keys",
        POST,
        [5, 5, DAY],
        SIGNING_KEYS_ROTATE,
    ),
    r(
        "email-templates-write",
        "Configure email templates",
        WRITE,
        [5, 25, MINUTE],
        EMAIL_TEMPLATES_WRITE,
    ),
    r(
        "email-templates-read",
        "Read email templates",
        GET,
        [10, 50, MINUTE],
        EMAIL_TEMPLATES_GET,
    ),
    r(
        "email-provider-write",
        "Configure email provider",
        WRITE,
        [5, 25, MINUTE],
        EMAIL_PROVIDER_WRITE,
    ),
    r(
        "email-provider-read",
        "Read email provider",
        GET,
        [5, 25, MINUTE],
        EMAIL_PROVIDER_GET,
    ),
];

/// The Essentials and Professional page's Management endpoint rows.
/// "Read Organization Members" and "Read Members of an Organization" link to
/// the same reference page: both count there, so the stricter holds.
pub const ESSENTIALS: [Row; 33] = [
    r(
        "organizations-read",
        "Read Organizations",
        GET,
        [5, 50, MINUTE],
        ORGS_GET,
    ),
    r(
        "organization-read",
        "Read Organizations by ID",
        GET,
        [20, 200, MINUTE],
        ORG_GET,
    ),
    r(
        "organization-by-name",
        "Read Organizations by Name",
        GET,
        [10, 100, MINUTE],
        ORG_BY_NAME,
    ),
    r(
        "organizations-write",
        "Write Organizations",
        WRITE,
        [5, 25, MINUTE],
        ORGS_WRITE,
    ),
    r(
        "organization-members-read",
        "Read Organization Members",
        GET,
        [40, 500, MINUTE],
        MEMBERS_GET,
    ),
    r(
        "organization-members-write",
        "Write Organization Members",
        POST_DELETE,
        [20, 200, MINUTE],
        MEMBERS_WRITE,
    ),
    r(
        "members-of-organization-read",
        "Read Members of an Organization",
        GET,
        [20, 200, MINUTE],
        MEMBERS_GET,
    ),
    r(
        "organization-member-roles-read",
        "Read Organization Member Roles",
        GET,
        [20, 200, MINUTE],
        MEMBER_ROLES_GET,
    ),
    r(
        "organization-member-roles-write",
        "Write Organization Member Roles",
        POST_DELETE,
        [20, 200, MINUTE],
        MEMBER_ROLES_WRITE,
    ),
    r(
        "organization-connections-read",
        "Read Organization Connections",
        GET,
        [5, 50, MINUTE],
        ORG_CONNECTIONS_GET,
    ),
    r(
        "organization-connections-write",
        "Write Organization Connections",
        WRITE,
        [5, 25, MINUTE],
        ORG_CONNECTIONS_WRITE,
    ),
    r(
        "users-read",
        "Read Users",
        GET,
        [40, 500, MINUTE],
        Routes::Paths(&[("GET", "/api/v2/users")]),
    ),
    r(
        "users-write",
        "Write Users",
        &["POST", "PATCH"],
        [20, 200, MINUTE],
        Routes::Paths(&[("POST", "/api/v2/users"), ("PATCH", "/api/v2/users/{id}")]),
    ),
    r(
        "users-delete",
        "Write Users",
        &["DELETE"],
        [20, 200, MINUTE],
        Routes::Paths(&[("DELETE", "/api/v2/users/{id}")]),
    ),
    r(
        "logs-read",
        "Read Logs",
        GET,
        [10, 100, MINUTE],
        Routes::Paths(&[("GET", "/api/v2/logs")]),
    ),
    r(
        "clients-read",
        "Read Clients",
        GET,
        [5, 100, MINUTE],
        Routes::Paths(&[("GET", "/api/v2/clients")]),
    ),
    r(
        "connections-read",
        "Read Connections",
        GET,
        [5, 50, MINUTE],
        Routes::Paths(&[("GET", "/api/v2/connections")]),
    ),
    r(
        "device-credentials-write",
        "Write Device Credentials",
        POST_DELETE,
        [5, 100, MINUTE],
        Routes::Paths(&[
            ("POST", "/api/v2/device-credentials"),
            ("DELETE", "/api/v2/device-credentials/{id}"),
        ]),
    ),
    r(
        "custom-domain-verify",
        "Write Custom Domain",
        POST,
        [5, 5, MINUTE],
        CUSTOM_DOMAIN_VERIFY,
    ),
    r(
        "connection-status",
        "Read Status Connection",
        GET,
        [100, 15, 1],
        CONNECTION_STATUS,
    ),
    r(
        "keys-signing-rotate",
        "Write Signing Keys",
        POST,
        [5, 5, DAY],
        SIGNING_KEYS_ROTATE,
    ),
    r(
        "prompt-partials-read",
        "Read Partials for a Prompt",
        GET,
        [5, 5, MINUTE],
        PARTIALS_GET,
    ),
    r(
        "prompt-partials-write",
        "Write Partials for a Prompt",
        PUT,
        [5, 5, MINUTE],
        PARTIALS_PUT,
    ),
    r(
        "clients-read-q",
        "Read Clients Only applies to the usage of the q parameter.",
        GET,
        [5, 150, MINUTE],
        Routes::NotEmulated(Q_ONLY),
    ),
    r(
        "organization-client-grants-read",
        "Read Organization Client Grants",
        GET,
        [10, 100, MINUTE],
        ORG_CLIENT_GRANTS_GET,
    ),
    r(
        "organization-client-grants-write",
        "Write Organization Client Grants",
        POST,
        [5, 150, MINUTE],
        ORG_CLIENT_GRANTS_POST,
    ),
    r(
        "email-templates-write",
        "Write email templates",
        WRITE,
        [5, 25, MINUTE],
        EMAIL_TEMPLATES_WRITE,
    ),
    r(
        "email-templates-read",
        "Read email templates",
        GET,
        [10, 50, MINUTE],
        EMAIL_TEMPLATES_GET,
    ),
    r(
        "email-provider-write",
        "Write email provider",
        WRITE,
        [5, 25, MINUTE],
        EMAIL_PROVIDER_WRITE,
    ),
    r(
        "email-provider-read",
        "Read email provider",
        GET,
        [5, 25, MINUTE],
        EMAIL_PROVIDER_GET,
    ),
    r(
        "token-exchange-profiles-write",
        "Write Token Exchange Profiles",
        WRITE,
        [5, 100, MINUTE],
        TOKEN_EXCHANGE_WRITE,
    ),
    r(
        "token-exchange-profiles-read",
        "Read Token Exchange Profiles",
        GET,
        [20, 200, MINUTE],
        TOKEN_EXCHANGE_GET,
    ),
    r(
        "other",
        "All other Endpoints Combined",
        &[],
        [10, 150, MINUTE],
        Routes::Other,
    ),
];

/// The Enterprise page's Management endpoint rows (it prints no "all
/// other" row: the API-wide limit covers the rest).
pub const ENTERPRISE: [Row; 27] = [
    r(
        "organizations-read",
        "Read Organizations",
        GET,
        [10, 100, MINUTE],
        ORGS_GET,
    ),
    r(
        "organization-read",
        "Read Organizations by ID",
        GET,
        [10, 100, MINUTE],
        ORG_GET,
    ),
    r(
        "user-organizations-read",
        "Read User's Organizations",
        GET,
        [40, 500, MINUTE],
        Routes::Paths(&[("GET", "/api/v2/users/{id}/organizations")]),
    ),
    r(
        "organization-by-name",
        "Read Organizations by Name",
        GET,
        [20, 200, MINUTE],
        ORG_BY_NAME,
    ),
    r(
        "organizations-write",
        "Write Organizations",
        WRITE,
        [5, 150, MINUTE],
        ORGS_WRITE,
    ),
    r(
        "organization-members-read",
        "Read Organization Members",
        GET,
        [40, 500, MINUTE],
        MEMBERS_GET,
    ),
    r(
        "organization-members-write",
        "Write Organization Members",
        POST_DELETE,
        [20, 200, MINUTE],
        MEMBERS_WRITE,
    ),
    r(
        "organization-invitation-read",
        "Read Organization invitation",
        GET,
        [20, 200, MINUTE],
        Routes::Paths(&[(
            "GET",
            "/api/v2/organizations/{id}/invitations/{invitation_id}",
        )]),
    ),
    r(
        "organization-invitation-write",
        "Write Organization invitation",
        POST,
        [20, 200, MINUTE],
        Routes::Paths(&[("POST", "/api/v2/organizations/{id}/invitations")]),
    ),
    r(
        "organization-member-roles-read",
        "Read Organization Member Roles",
        GET,
        [20, 200, MINUTE],
        MEMBER_ROLES_GET,
    ),
    r(
        "organization-member-roles-write",
        "Write Organization Member Roles",
        POST_DELETE,
        [20, 200, MINUTE],
        MEMBER_ROLES_WRITE,
    ),
    r(
        "organization-connections-read",
        "Read Organization Connections",
        GET,
        [10, 100, MINUTE],
        ORG_CONNECTIONS_GET,
    ),
    r(
        "organization-connections-write",
        "Write Organization Connections",
        WRITE,
        [5, 150, MINUTE],
        ORG_CONNECTIONS_WRITE,
    ),
    r(
        "custom-domain-verify",
        "Write Custom Domains",
        POST,
        [5, 5, MINUTE],
        CUSTOM_DOMAIN_VERIFY,
    ),
    r(
        "connection-status",
        "Read Status Connection",
        GET,
        [100, 15, 1],
        CONNECTION_STATUS,
    ),
    r(
        "keys-signing-rotate",
        "Write Signing Keys",
        POST,
        [5, 5, DAY],
        SIGNING_KEYS_ROTATE,
    ),
    r(
        "prompt-partials-read",
        "Read Partials for a Prompt",
        GET,
        [5, 5, MINUTE],
        PARTIALS_GET,
    ),
    r(
        "prompt-partials-write",
        "Write Partials for a Prompt",
        PUT,
        [5, 5, MINUTE],
        PARTIALS_PUT,
    ),
    r(
        "clients-read-q",
        "Read Clients Only applies to the usage of the q parameter.",
        GET,
        [5, 150, MINUTE],
        Routes::NotEmulated(
            "applies only when the `q` query parameter is used; the filter routes by method \
             and path, so these requests count in the API-wide limit only",
        ),
    ),
    r(
        "organization-client-grants-read",
        "Read Organization Client Grants",
        GET,
        [10, 100, MINUTE],
        ORG_CLIENT_GRANTS_GET,
    ),
    r(
        "organization-client-grants-write",
        "Write Organization Client Grants",
        POST,
        [5, 150, MINUTE],
        ORG_CLIENT_GRANTS_POST,
    ),
    r(
        "email-templates-write",
        "Write email templates",
        WRITE,
        [10, 100, MINUTE],
        EMAIL_TEMPLATES_WRITE,
    ),
    r(
        "email-templates-read",
        "Read email templates",
        GET,
        [15, 150, MINUTE],
        EMAIL_TEMPLATES_GET,
    ),
    r(
        "email-provider-write",
        "Write email provider",
        WRITE,
        [10, 100, MINUTE],
        EMAIL_PROVIDER_WRITE,
    ),
    r(
        "email-provider-read",
        "Read email provider",
        GET,
        [15, 150, MINUTE],
        EMAIL_PROVIDER_GET,
    ),
    r(
        "token-exchange-profiles-write",
        "Write Token Exchange Profiles",
        WRITE,
        [5, 100, MINUTE],
        TOKEN_EXCHANGE_WRITE,
    ),
    r(
        "token-exchange-profiles-read",
        "Read Token Exchange Profiles",
        GET,
        [20, 200, MINUTE],
        TOKEN_EXCHANGE_GET,
    ),
];

/// The id of the API-wide bucket.
pub const TENANT_BUCKET: &str = "auth0.tenant";

/// A row's bucket id: `auth0.endpoint.<row id>`.
pub fn bucket_id(row: &Row) -> String {
    format!("auth0.endpoint.{}", row.id)
}

/// The Management API policy of this edition for `plan` (canonical), read
/// from `page`; `import_job_hold_secs` as in the seed edition. A request to
/// a row's route counts in the API-wide bucket (where the page has one),
/// the row's, and the SPA `current_user` bucket; any other `/api/v2/`
/// request in the API-wide bucket or the page's "all other" row.
pub fn management_policy(page: Page, plan: &str, import_job_hold_secs: u64) -> PolicySpec {
    let mut spec = PolicySpec::default();
    let mut api_wide: Vec<usize> = Vec::new();
    for (_, label, _, l) in TENANT.iter().filter(|t| t.0 == page && t.2 == plan) {
        // The Free page's row is just "Management"; Enterprise names the tenant.
        let label = match *label {
            "Management" => "Management API tenant limit".to_string(),
            tenant => format!("Management API tenant limit ({tenant})"),
        };
        let mut b = Bucket::new(TENANT_BUCKET, &label, l.limit(), Scope::Host);
        b.reject = RejectBody::StandardSaying(GLOBAL_LIMIT_MESSAGE.to_string());
        api_wide.push(spec.bucket(b));
    }
    let spa = add_spa_bucket(&mut spec);
    // (method, path, buckets): rows that share a route all count there.
    let mut routes: Vec<(&str, &str, Vec<usize>)> = Vec::new();
    let mut other = Vec::new();
    for row in page.rows() {
        let paths = match row.routes {
            Routes::NotEmulated(_) => continue,
            Routes::Other => None,
            Routes::Paths(paths) => Some(paths),
        };
        let b = spec.bucket(Bucket::new(
            &bucket_id(row),
            row.label,
            row.limit.limit(),
            Scope::Host,
        ));
        let Some(paths) = paths else {
            other.push(b);
            continue;
        };
        for &(method, path) in paths {
            match routes
                .iter_mut()
                .find(|(m, p, _)| *m == method && *p == path)
            {
                Some(route) => route.2.push(b),
                None => {
                    let mut buckets = if path.starts_with("/api/v2/") {
                        api_wide.clone()
                    } else {
                        Vec::new()
                    };
                    buckets.push(b);
                    routes.push((method, path, buckets));
                }
            }
        }
    }
    for (method, path, mut buckets) in routes {
        if path.starts_with("/api/v2/") {
            buckets.push(spa);
        }
        spec.route(Some(&[method]), &[path], Target::Buckets(buckets));
    }
    api_wide.extend(&other);
    api_wide.push(spa);
    add_import_jobs(&mut spec, &api_wide, import_job_hold_secs);
    spec.route(None, &["/api/v2/*"], Target::Buckets(api_wide));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::auth0::DOC_SPELLING;
    use crate::catalog::published::copy;

    fn n(cell: &str) -> u64 {
        cell.parse()
            .unwrap_or_else(|_| panic!("{cell:?} is not a number"))
    }

    #[test]
    fn tenant_limits_match_the_published_pages() {
        let rows = copy("auth0-2026-tenant").rows;
        assert_eq!(rows.len(), TENANT.len());
        for ((page, label, plan, l), cells) in TENANT.iter().zip(&rows) {
            assert_eq!(
                (page.name(), *label),
                (cells[0].as_str(), cells[1].as_str())
            );
            assert_eq!(Page::of_plan(plan), Some(*page), "{plan}");
            assert_eq!(
                (l.burst, l.sustained, l.period_secs),
                (n(&cells[2]), n(&cells[3]), n(&cells[4])),
                "{label}"
            );
        }
    }

    /// Every row of every page, in the pages' order: label, printed methods,
    /// limit, and the page's limit type ("Any request": per tenant, which is
    /// how every row here is counted).
    #[test]
    fn endpoint_limits_match_the_published_pages() {
        let published = copy("auth0-2026-endpoints").rows;
        let ours: Vec<(Page, &Row)> = [Page::Free, Page::Essentials, Page::Enterprise]
            .into_iter()
            .flat_map(|p| p.rows().iter().map(move |r| (p, r)))
            .collect();
        assert_eq!(ours.len(), published.len(), "row count");
        for ((page, row), cells) in ours.iter().zip(&published) {
            let what = format!("{} {}", page.name(), row.id);
            assert_eq!(page.name(), cells[0], "{what}");
            assert_eq!(row.label, cells[1], "{what}");
            let methods = if row.methods.is_empty() {
                "-".to_string()
            } else {
                row.methods.join(",")
            };
            assert_eq!(methods, cells[2], "{what} methods");
            assert_eq!(
                (row.limit.burst, row.limit.sustained, row.limit.period_secs),
                (n(&cells[5]), n(&cells[6]), n(&cells[7])),
                "{what} limit"
            );
            assert_eq!(cells[8], "Any request", "{what}");
            // The Free page prints a path: it is one of the row's routes.
            if cells[3] != "-" {
                let printed = DOC_SPELLING
                    .iter()
                    .find(|(doc, _, _)| *doc == cells[3])
                    .map_or(cells[3].as_str(), |(_, real, _)| real);
                let Routes::Paths(routes) = row.routes else {
                    panic!("{what}: prints a path but routes none");
                };
                assert!(
                    routes.iter().any(|(_, p)| *p == printed),
                    "{what}: {printed} not routed"
                );
            }
        }
    }

    /// A row routes exactly the methods it prints (less the misprints).
    #[test]
    fn routes_cover_exactly_the_printed_methods() {
        for page in [Page::Free, Page::Essentials, Page::Enterprise] {
            for row in page.rows() {
                let Routes::Paths(routes) = row.routes else {
                    continue;
                };
                let mut printed: Vec<&str> = row
                    .methods
                    .iter()
                    .map(|m| {
                        METHOD_MISPRINTS
                            .iter()
                            .find(|(p, id, wrong, _)| *p == page && *id == row.id && wrong == m)
                            .map_or(*m, |(_, _, _, real)| real)
                    })
                    .collect();
                let mut routed: Vec<&str> = routes.iter().map(|(m, _)| *m).collect();
                printed.sort_unstable();
                routed.sort_unstable();
                routed.dedup();
                assert_eq!(routed, printed, "{} {}", page.name(), row.id);
            }
        }
    }

    #[test]
    fn ids_are_unique_within_a_page() {
        for page in [Page::Free, Page::Essentials, Page::Enterprise] {
            let mut ids: Vec<&str> = page.rows().iter().map(|r| r.id).collect();
            ids.sort_unstable();
            let before = ids.len();
            ids.dedup();
            assert_eq!(ids.len(), before, "{}", page.name());
        }
    }

    /// The bucket ids a request counts in, under `plan`'s 2026 policy.
    fn counted(plan: &str, method: &str, path: &str) -> Vec<String> {
        let page = Page::of_plan(plan).unwrap();
        let policy = crate::policy::Policy::compile(management_policy(page, plan, 60)).unwrap();
        match policy.resolve(method, path) {
            Some(crate::policy::Resolved::Buckets(bs)) => {
                bs.iter().map(|&b| policy.buckets[b].id.clone()).collect()
            }
            other => panic!("{plan} {method} {path}: {other:?}"),
        }
    }

    #[test]
    fn requests_count_in_the_api_wide_bucket_then_their_row() {
        let spa = "auth0.spa.current-user";
        assert_eq!(
            counted("free", "GET", "/api/v2/stats"),
            [TENANT_BUCKET, spa]
        );
        assert_eq!(
            counted("free", "GET", "/api/v2/connections/con_1/status"),
            [TENANT_BUCKET, "auth0.endpoint.connection-status", spa],
            "routed as GET, as the API has it"
        );
        assert_eq!(
            counted("free", "POST", "/oidc/register"),
            ["auth0.endpoint.oidc-register"],
            "outside /api/v2/: its own bucket only"
        );
        assert_eq!(
            counted("enterprise-prod", "POST", "/api/v2/organizations"),
            [TENANT_BUCKET, "auth0.endpoint.organizations-write", spa]
        );
        assert_eq!(
            counted(
                "enterprise-nonprod",
                "GET",
                "/api/v2/organizations/name/acme"
            ),
            [TENANT_BUCKET, "auth0.endpoint.organization-by-name", spa]
        );
        assert_eq!(
            counted("enterprise-prod", "GET", "/api/v2/users"),
            [TENANT_BUCKET, spa],
            "the Enterprise page has no users row"
        );
        // Essentials: no API-wide row; unlisted endpoints share "all other".
        assert_eq!(
            counted("self-service", "GET", "/api/v2/stats"),
            ["auth0.endpoint.other", spa]
        );
        assert_eq!(
            counted("self-service", "DELETE", "/api/v2/users/u1"),
            ["auth0.endpoint.users-delete", spa]
        );
        assert_eq!(
            counted("self-service", "GET", "/api/v2/organizations/o1/members"),
            [
                "auth0.endpoint.organization-members-read",
                "auth0.endpoint.members-of-organization-read",
                spa
            ],
            "two rows link to one reference page: both count"
        );
        assert_eq!(
            counted("self-service", "POST", "/api/v2/jobs/users-imports"),
            ["auth0.endpoint.other", spa, "auth0.import-jobs"]
        );
    }

    #[test]
    fn the_buckets_hold_burst_and_refill_the_sustained_rate() {
        use crate::limiter::MICROS_PER_SEC;
        // 50 at once, then 16 a second: the 50 come back in 3.125 s.
        let l = TENANT[1].3.limit();
        assert_eq!((l.limit, l.window_us), (50, 3_125_000));
        let l = TENANT[0].3.limit();
        assert_eq!((l.limit, l.window_us), (2, MICROS_PER_SEC));
    }
}
