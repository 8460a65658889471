//! Okta's published per-minute limits, as data: the management table
//! (`okta-management-rate-limits.md`, 14 rows x 4 plans) and the end-user table
//! (`okta-end-user-rate-limits.md`, 7 rows x 5 plans). Numbers are per org and
//! per minute; every number here is held to the published table by a test.

use crate::limiter::{Algorithm, Limit, MICROS_PER_SEC};
use crate::policy::{Bucket, PolicySpec, RejectBody, Scope, Target};

/// One published row: the route(s) it covers and its per-plan limits in the
/// table's column order.
pub struct Row {
    pub id: &'static str,
    pub action: &'static str,
    /// The path as the doc prints it in the row (used by the table test).
    pub doc_path: &'static str,
    pub methods: Option<&'static [&'static str]>,
    pub patterns: &'static [&'static str],
    pub limits: &'static [u64],
}

pub struct Table {
    pub name: &'static str,
    /// Published column headings, mapped to our plan names.
    pub columns: &'static [&'static str],
    pub rows: &'static [Row],
}

pub const PLANS: [&str; 5] = [
    "integrator-free",
    "developer-paid",
    "one-app",
    "enterprise",
    "workforce-identity",
];

/// `developer-free` is the end-user table's name for `integrator-free`.
pub fn canonical_plan(plan: &str) -> Option<&'static str> {
    let plan = if plan == "developer-free" {
        "integrator-free"
    } else {
        plan
    };
    PLANS.iter().copied().find(|p| *p == plan)
}

/// The column a plan reads in a table: its own, or for `developer-paid` in
/// the management table (which has no such column) `one-app`, the plan whose
/// end-user limits `developer-paid` shares.
fn column(table: &Table, plan: &str) -> Option<usize> {
    let pos = |p: &str| table.columns.iter().position(|c| *c == p);
    pos(plan).or_else(|| (plan == "developer-paid").then(|| pos("one-app")).flatten())
}

const WRITE_USER: &[&str] = &["POST", "PUT", "DELETE"];

pub const MANAGEMENT: Table = Table {
    name: "management",
    columns: &[
        "integrator-free",
        "one-app",
        "enterprise",
        "workforce-identity",
    ],
    rows: &[
        Row {
            id: "apps",
            action: "Create, list, or other app actions",
            doc_path: "/api/v1/apps",
            methods: None,
            patterns: &["/api/v1/apps/*"],
            limits: &[20, 100, 100, 100],
        },
        Row {
            id: "app-by-id",
            action: "Get, update, or delete an app by ID",
            doc_path: "/api/v1/apps/{id}",
            methods: None,
            patterns: &["/api/v1/apps/{id}"],
            limits: &[100, 600, 600, 500],
        },
        Row {
            id: "groups",
            action: "Create or list groups",
            doc_path: "/api/v1/groups",
            methods: None,
            patterns: &["/api/v1/groups/*"],
            limits: &[100, 600, 600, 500],
        },
        Row {
            id: "group-by-id",
            action: "Get, update, or delete a group by ID",
            doc_path: "/api/v1/groups/{id}",
            methods: None,
            patterns: &["/api/v1/groups/{id}"],
            limits: &[100, 600, 600, 1000],
        },
        Row {
            id: "users",
            action: "Create or list users",
            doc_path: "/api/v1/users",
            methods: Some(&["GET", "POST"]),
            patterns: &["/api/v1/users"],
            limits: &[100, 600, 600, 600],
        },
        Row {
            id: "user-by-id-write",
            action: "Update or delete a user by ID",
            doc_path: "/api/v1/users/{id}",
            methods: Some(WRITE_USER),
            patterns: &["/api/v1/users/{id}"],
            limits: &[100, 600, 600, 600],
        },
        Row {
            id: "logs",
            action: "Get System Log data",
            doc_path: "/api/v1/logs",
            methods: None,
            patterns: &["/api/v1/logs/*"],
            limits: &[20, 50, 50, 120],
        },
        Row {
            id: "events",
            action: "Get System Log data",
            doc_path: "/api/v1/events",
            methods: None,
            patterns: &["/api/v1/events/*"],
            limits: &[20, 50, 50, 100],
        },
        Row {
            id: "oauth2-clients",
            action: "OAuth2 client configuration requests",
            doc_path: "/oauth2/v1/clients",
            methods: None,
            patterns: &["/oauth2/v1/clients/*"],
            limits: &[25, 100, 100, 100],
        },
        Row {
            id: "api-v1",
            action: "Most other API actions",
            doc_path: "/api/v1",
            methods: None,
            patterns: &["/api/v1/*"],
            limits: &[100, 600, 600, 1200],
        },
        Row {
            id: "email-bounces",
            action: "Create an email address bounces remove list",
            doc_path: "/api/v1/org/email/bounces/remove-list",
            methods: None,
            patterns: &["/api/v1/org/email/bounces/remove-list"],
            limits: &[10, 30, 60, 60],
        },
        Row {
            id: "user-get",
            action: "Get a user by ID or sign in",
            doc_path: "/api/v1/users/{idOrLogin}",
            methods: Some(&["GET"]),
            patterns: &["/api/v1/users/{idOrLogin}"],
            limits: &[100, 1000, 1000, 2000],
        },
        Row {
            id: "certificate-authorities",
            action: "Certificate authorities",
            doc_path: "/api/v1/certificateAuthorities",
            methods: None,
            patterns: &["/api/v1/certificateAuthorities/*"],
            limits: &[100, 150, 150, 100],
        },
        Row {
            id: "devices",
            action: "Devices",
            doc_path: "/api/v1/devices",
            methods: None,
            patterns: &["/api/v1/devices/*"],
            limits: &[100, 150, 150, 100],
        },
    ],
};

pub const END_USER: Table = Table {
    name: "end-user",
    columns: &[
        "integrator-free",
        "developer-paid",
        "one-app",
        "enterprise",
        "workforce-identity",
    ],
    rows: &[
        Row {
            id: "authn",
            action: "Authenticate different end users",
            doc_path: "/api/v1/authn",
            methods: None,
            patterns: &["/api/v1/authn/*"],
            limits: &[100, 300, 300, 600, 500],
        },
        Row {
            id: "authn-factor-verify",
            action: "Verify a factor",
            doc_path: "/api/v1/authn/factors/{factorIdOrFactorType}/verify",
            methods: None,
            patterns: &["/api/v1/authn/factors/{factorIdOrFactorType}/verify"],
            limits: &[100, 300, 300, 600, 500],
        },
        Row {
            id: "sessions",
            action: "Get session information",
            doc_path: "/api/v1/sessions",
            methods: None,
            patterns: &["/api/v1/sessions/*"],
            limits: &[100, 300, 300, 600, 750],
        },
        Row {
            id: "oauth2-custom-as",
            action: "OAuth2 requests for Custom Authorization Servers",
            doc_path: "/oauth2/{authorizationServerId}/v1",
            methods: None,
            patterns: &["/oauth2/{authorizationServerId}/v1/*"],
            limits: &[300, 600, 600, 1200, 2000],
        },
        Row {
            id: "oauth2-org-as",
            action: "OAuth2 requests for the Org Authorization Server",
            doc_path: "/oauth2/v1",
            methods: None,
            patterns: &["/oauth2/v1/*"],
            limits: &[300, 600, 600, 1200, 2000],
        },
        Row {
            id: "oauth2-other",
            action: "All other OAuth2 requests",
            doc_path: "/oauth2",
            methods: None,
            patterns: &["/oauth2/*"],
            limits: &[100, 300, 300, 600, 600],
        },
        Row {
            id: "api-v1",
            action: "Most other API actions",
            doc_path: "/api/v1",
            methods: None,
            patterns: &["/api/v1/*"],
            limits: &[100, 300, 300, 600, 1200],
        },
    ],
};

/// Public metadata endpoints: never limited, in either catalog.
pub const PUBLIC_METADATA: &[&str] = &[
    "/oauth2/v1/keys",
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/oauth2/{authorizationServerId}/v1/keys",
    "/oauth2/{authorizationServerId}/.well-known/openid-configuration",
    "/oauth2/{authorizationServerId}/.well-known/oauth-authorization-server",
];

pub const CATALOGS: [&str; 2] = ["management", "end-user"];

/// Okta's concurrency limit for "all other traffic (including API requests)",
/// per org, from developer.okta.com/docs/reference/rl2-concurrency/: the
/// Integrator Free plan's column, then Customer Identity's (one-app,
/// developer-paid, enterprise) and Workforce Identity's.
pub const CONCURRENCY_COLUMNS: [(&str, u64); 3] = [
    ("Integrator Free plan", 35),
    ("Okta Customer Identity", 75),
    ("Okta Workforce Identity", 75),
];

pub const CONCURRENCY_BUCKET: &str = "okta.concurrency";

/// A count of requests in flight that no request changed for this long is
/// dropped (a worker's VM that died mid-request never gives its places back).
pub const IN_FLIGHT_STALE_SECS: u64 = 300;

/// The concurrency column a plan reads.
fn concurrency_limit(plan: &str) -> u64 {
    let column = match plan {
        "integrator-free" => 0,
        "workforce-identity" => 2,
        _ => 1,
    };
    CONCURRENCY_COLUMNS[column].1
}

/// Okta's concurrency limit: every counted request passes it first, is in
/// flight until its stream ends, and a refusal is the E0000047 429 with
/// `X-Rate-Limit-Limit: 0` and `X-Rate-Limit-Remaining: 0`.
fn concurrency_bucket(plan: &str) -> Bucket {
    let limit = Limit {
        algorithm: Algorithm::InFlight,
        limit: concurrency_limit(plan),
        window_us: IN_FLIGHT_STALE_SECS * MICROS_PER_SEC,
    };
    let mut b = Bucket::new(
        CONCURRENCY_BUCKET,
        "Concurrent requests (all other traffic, including API requests)",
        limit,
        Scope::Host,
    );
    // Below the limit, responses report the per-minute buckets.
    b.reported = false;
    b.reject = RejectBody::Concurrency;
    b.release_when_done = true;
    b
}

fn table(name: &str) -> Option<&'static Table> {
    [&MANAGEMENT, &END_USER]
        .into_iter()
        .find(|t| t.name == name)
}

/// Okta's client-based limits (developer.okta.com/docs/reference/rl2-client-based/):
/// per client (client ID, IP, device cookie), 60 requests a minute and 5 in
/// flight, on the browser endpoints; the org bucket still applies.
pub const CLIENT_PER_MINUTE: u64 = 60;
pub const CLIENT_CONCURRENT: u64 = 5;

/// Okta's token and OAuth 2.0 app limits
/// (developer.okta.com/docs/reference/rl2-token-oauth/): by default each API
/// token or OAuth 2.0 app may use up to half of a bucket.
pub const DEFAULT_PRINCIPAL_SHARE_PERCENT: u64 = 50;

/// The per-minute and in-flight buckets of one client-based endpoint.
fn client_buckets(spec: &mut PolicySpec, name: &str, label: &str, client_id: bool) -> [usize; 2] {
    let scope = Scope::OktaClient { client_id };
    let rate = Limit {
        algorithm: Algorithm::FixedWindow,
        limit: CLIENT_PER_MINUTE,
        window_us: 60 * MICROS_PER_SEC,
    };
    let mut per_minute = Bucket::new(
        &format!("okta.client.{name}"),
        &format!("{label}, per client"),
        rate,
        scope.clone(),
    );
    // "the API response headers reflect the client-specific limit".
    per_minute.reported_first = true;
    let in_flight = Limit {
        algorithm: Algorithm::InFlight,
        limit: CLIENT_CONCURRENT,
        window_us: IN_FLIGHT_STALE_SECS * MICROS_PER_SEC,
    };
    let mut concurrent = Bucket::new(
        &format!("okta.client.{name}.concurrent"),
        &format!("{label}, in flight per client"),
        in_flight,
        scope,
    );
    concurrent.reported = false;
    concurrent.release_when_done = true;
    [spec.bucket(per_minute), spec.bucket(concurrent)]
}

/// The client-based limits on `/authorize` (org and custom authorization
/// servers: keyed by client ID, IP and device) and `/login/login.htm` (IP and
/// device), with the end-user org bucket each path already has.
fn add_client_limits(spec: &mut PolicySpec) {
    let org_as = spec.bucket_index("okta.end-user.oauth2-org-as");
    let custom_as = spec.bucket_index("okta.end-user.oauth2-custom-as");
    let authorize = client_buckets(spec, "authorize", "OAuth 2.0 /authorize", true);
    let login = client_buckets(spec, "login", "/login/login.htm", false);
    for (pattern, org) in [
        ("/oauth2/v1/authorize", org_as),
        ("/oauth2/{authorizationServerId}/v1/authorize", custom_as),
    ] {
        let buckets = authorize.iter().copied().chain(org).collect();
        spec.route(None, &[pattern], Target::Buckets(buckets));
    }
    spec.route(None, &["/login/login.htm"], Target::Buckets(login.to_vec()));
}

/// Each management bucket gets a companion counted per API token or OAuth
/// client (`<id>.principal`), holding `percent` of its limit (at least 1),
/// on the same routes. Applied after overrides and headroom, so the share
/// follows the bucket's final limit.
pub fn add_principal_share(spec: &mut PolicySpec, percent: u64) {
    let management: Vec<usize> = (0..spec.buckets.len())
        .filter(|&i| spec.buckets[i].id.starts_with("okta.management."))
        .collect();
    for i in management {
        let b = &spec.buckets[i];
        let limit = Limit {
            limit: (b.limit.limit * percent / 100).max(1),
            ..b.limit
        };
        let label = format!("{}, per API token or OAuth client ({percent}%)", b.label);
        let principal = Bucket::new(
            &format!("{}.principal", b.id),
            &label,
            limit,
            Scope::OktaPrincipal,
        );
        let p = spec.bucket(principal);
        for route in &mut spec.routes {
            if let Target::Buckets(bs) = &mut route.target {
                if bs.contains(&i) {
                    bs.push(p);
                }
            }
        }
    }
}

/// Builds the policy for `plan` (canonical) over the named catalogs, with
/// the client-based limits where the end-user catalog is on and
/// `client_limits` asks for them. Bucket ids are `okta.<catalog>.<row>`.
pub fn policy(plan: &str, catalogs: &[String], client_limits: bool) -> PolicySpec {
    let mut spec = PolicySpec::default();
    let gate = spec.bucket(concurrency_bucket(plan));
    spec.gates.push(gate);
    for t in catalogs.iter().filter_map(|c| table(c)) {
        let Some(col) = column(t, plan) else { continue };
        for row in t.rows {
            let Some(&limit) = row.limits.get(col) else {
                continue;
            };
            let limit = Limit {
                algorithm: Algorithm::FixedWindow,
                limit,
                window_us: 60 * MICROS_PER_SEC,
            };
            let id = format!("okta.{}.{}", t.name, row.id);
            let label = format!("{} ({} table)", row.action, t.name);
            let b = spec.bucket(Bucket::new(&id, &label, limit, Scope::Host));
            spec.route(row.methods, row.patterns, Target::Buckets(vec![b]));
        }
    }
    if client_limits && catalogs.iter().any(|c| c == "end-user") {
        add_client_limits(&mut spec);
    }
    spec.route(None, PUBLIC_METADATA, Target::Exempt);
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::published::copy;

    /// Holds a table to the project's copy of the published one: each row's
    /// printed path, the methods it names, and every plan's limit.
    fn check(table: &Table, copied: &str) {
        let published = copy(copied);
        assert_eq!(
            published.rows.len(),
            table.rows.len(),
            "{}: row count",
            table.name
        );
        for (row, cells) in table.rows.iter().zip(&published.rows) {
            assert_eq!(
                row.doc_path, cells[0],
                "{}: row {} path",
                table.name, row.id
            );
            let methods = row.methods.map_or("*".to_string(), |m| m.join(","));
            assert_eq!(methods, cells[1], "{}: row {} methods", table.name, row.id);
            let numbers: Vec<u64> = cells[2..].iter().map(|c| c.parse().unwrap()).collect();
            assert_eq!(
                row.limits,
                numbers.as_slice(),
                "{}: row {}",
                table.name,
                row.id
            );
            assert_eq!(numbers.len(), table.columns.len());
        }
    }

    #[test]
    fn management_numbers_match_the_published_table() {
        check(&MANAGEMENT, "okta-management");
    }

    #[test]
    fn end_user_numbers_match_the_published_table() {
        check(&END_USER, "okta-end-user");
        let published: Vec<String> = copy("okta-public-metadata")
            .rows
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(PUBLIC_METADATA, published.as_slice());
    }

    #[test]
    fn concurrency_limits_match_the_published_table() {
        let published = copy("okta-concurrency");
        let copied: Vec<(String, u64)> = published
            .rows
            .iter()
            .map(|r| (r[0].clone(), r[1].parse().unwrap()))
            .collect();
        let ours: Vec<(String, u64)> = CONCURRENCY_COLUMNS
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect();
        assert_eq!(ours, copied);
        assert_eq!(concurrency_limit("integrator-free"), 35);
        for plan in [
            "developer-paid",
            "one-app",
            "enterprise",
            "workforce-identity",
        ] {
            assert_eq!(concurrency_limit(plan), 75, "{plan}");
        }
        let spec = policy("enterprise", &["management".to_string()], true);
        assert_eq!(spec.gates.len(), 1);
        let gate = &spec.buckets[spec.gates[0]];
        assert_eq!(gate.id, CONCURRENCY_BUCKET);
        assert!(gate.release_when_done && !gate.reported);
    }

    #[test]
    fn client_and_principal_figures_match_the_published_pages() {
        let published = copy("okta-client-based");
        let figure = |f: &str| -> u64 {
            crate::catalog::published::figure(&published, f)
                .parse()
                .unwrap()
        };
        assert_eq!(figure("client requests per minute"), CLIENT_PER_MINUTE);
        assert_eq!(figure("client concurrent requests"), CLIENT_CONCURRENT);
        assert_eq!(
            figure("token or app share percent"),
            DEFAULT_PRINCIPAL_SHARE_PERCENT
        );
        let all = ["management".to_string(), "end-user".to_string()];
        let mut spec = policy("enterprise", &all, true);
        assert!(spec.bucket_index("okta.client.authorize").is_some());
        assert!(policy("enterprise", &all, false)
            .bucket_index("okta.client.authorize")
            .is_none());
        assert!(policy("enterprise", &all[..1], true)
            .bucket_index("okta.client.login")
            .is_none());
        add_principal_share(&mut spec, 50);
        let logs = spec.bucket_index("okta.management.logs.principal").unwrap();
        assert_eq!(spec.buckets[logs].limit.limit, 25, "half of 50");
        assert!(spec.bucket_index("okta.end-user.authn.principal").is_none());
    }

    #[test]
    fn every_plan_reads_a_column_in_both_tables() {
        for plan in PLANS {
            assert!(column(&MANAGEMENT, plan).is_some(), "{plan}");
            assert!(column(&END_USER, plan).is_some(), "{plan}");
        }
        assert_eq!(
            column(&MANAGEMENT, "developer-paid"),
            column(&MANAGEMENT, "one-app")
        );
        assert_eq!(canonical_plan("developer-free"), Some("integrator-free"));
        assert_eq!(canonical_plan("gold"), None);
    }
}
