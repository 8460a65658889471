//! Okta's published per-minute limits, as data: the management table
//! (`okta-management-rate-limits.md`, 14 rows x 4 plans) and the end-user table
//! (`okta-end-user-rate-limits.md`, 7 rows x 5 plans). Numbers are per org and
//! per minute; every number here is held to the published table by a test.

use crate::limiter::{Algorithm, Limit, MICROS_PER_SEC};
use crate::policy::{Bucket, PolicySpec, Scope, Target};

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

fn table(name: &str) -> Option<&'static Table> {
    [&MANAGEMENT, &END_USER]
        .into_iter()
        .find(|t| t.name == name)
}

/// Builds the policy for `plan` (canonical) over the named catalogs.
/// Bucket ids are `okta.<catalog>.<row>`.
pub fn policy(plan: &str, catalogs: &[String]) -> PolicySpec {
    let mut spec = PolicySpec::default();
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
