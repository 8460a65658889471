//! Test-only: declared `#[cfg(test)]` in `catalog/mod.rs`.
//! The cross-check of the project's copies (`published`) against the vendors'
//! pages themselves, number by number, so that a transcription slip cannot
//! hide. The pages are not part of the project: they are read from
//! `$IDP_RL_VENDOR_DOCS`, else `../shared/vendor-docs/` beside the checkout.
//!
//! The test is `#[ignore]`d because a user's clone has no pages beside it;
//! `make test` runs it (`-- --ignored`) wherever the pages are, and says
//! plainly that it did not run where they are not. Run by hand without the
//! pages, it fails: it never passes without checking.

use super::published::{copy, Copy};

fn pages_dir() -> String {
    std::env::var("IDP_RL_VENDOR_DOCS")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vendor-docs").into())
}

fn page(name: &str) -> String {
    let path = format!("{}/{name}", pages_dir());
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the vendor page {path} is needed for this cross-check ({e}); set IDP_RL_VENDOR_DOCS"
        )
    })
}

/// The data rows (heading and separator dropped) of each Markdown table.
fn tables(doc: &str) -> Vec<Vec<Vec<String>>> {
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    let mut in_table = false;
    for line in doc.lines() {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table {
            tables.push(Vec::new());
            in_table = true;
        }
        let cells = line.trim().trim_matches('|').split('|');
        tables
            .last_mut()
            .unwrap()
            .push(cells.map(|c| c.trim().to_string()).collect());
    }
    tables
        .into_iter()
        .map(|t| t.into_iter().skip(2).collect())
        .collect()
}

/// The backticked spans of a cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// An Okta row as the copies lay it out: path, methods, numbers.
fn okta_rows(doc: &str) -> Vec<Vec<String>> {
    tables(doc)[0]
        .iter()
        .map(|cells| {
            let spans = ticked(&cells[0]);
            let path = spans.iter().find(|s| s.starts_with('/')).unwrap().clone();
            let methods: Vec<_> = spans
                .iter()
                .filter(|s| !s.starts_with('/'))
                .cloned()
                .collect();
            let methods = if methods.is_empty() {
                "*".to_string()
            } else {
                methods.join(",")
            };
            let numbers = cells[1..].iter().map(|c| c.replace(',', ""));
            [path, methods].into_iter().chain(numbers).collect()
        })
        .collect()
}

/// The public metadata endpoints listed in the end-user page's closing note.
fn okta_metadata(doc: &str) -> Vec<Vec<String>> {
    let note = doc
        .split("public metadata endpoints aren't")
        .nth(1)
        .unwrap();
    note.lines()
        .filter(|l| l.trim_start_matches('>').trim_start().starts_with("* `"))
        .map(|l| vec![ticked(l)[0].clone()])
        .collect()
}

/// An Auth0 endpoint table as the copies lay it out: label, printed routes
/// (continuation rows joined with "; ", backticks dropped, `-` for none),
/// then the limit cells.
fn auth0_rows(table: &[Vec<String>]) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for cells in table {
        let route = cells[1].replace('`', "");
        if cells[0].is_empty() {
            rows.last_mut().unwrap()[1].push_str(&format!("; {route}"));
            continue;
        }
        let mut row = vec![cells[0].clone(), route];
        row.extend(cells[2..].iter().cloned());
        rows.push(row);
    }
    for row in &mut rows {
        if row[1].is_empty() {
            row[1] = "-".into();
        }
    }
    rows
}

fn same(copy: &Copy, from_page: &[Vec<String>]) {
    assert_eq!(copy.rows.len(), from_page.len(), "{}: row count", copy.name);
    for (ours, theirs) in copy.rows.iter().zip(from_page) {
        assert_eq!(
            ours, theirs,
            "{}: the copy differs from the page",
            copy.name
        );
    }
}

fn figure(copy: &Copy, name: &str) -> String {
    super::published::figure(copy, name)
}

#[test]
#[ignore = "needs the vendors' pages: `make test` runs it wherever they are"]
fn vendor_pages_match_the_project_copies() {
    let management = page("okta-management-rate-limits.md");
    same(&copy("okta-management"), &okta_rows(&management));
    let end_user = page("okta-end-user-rate-limits.md");
    same(&copy("okta-end-user"), &okta_rows(&end_user));
    same(&copy("okta-public-metadata"), &okta_metadata(&end_user));

    let auth0 = page("auth0-management-api-rate-limits.md");
    let auth0_tables = tables(&auth0);
    same(&copy("auth0-tenant"), &auth0_tables[0]);
    same(&copy("auth0-endpoints"), &auth0_rows(&auth0_tables[1]));
    same(&copy("auth0-self-service"), &auth0_rows(&auth0_tables[2]));
    let figures = copy("auth0-figures");
    let jobs = figure(&figures, "import jobs limit");
    assert!(auth0.contains(&format!("limit of {jobs} concurrent import jobs")));
    let message = figure(&figures, "import jobs message").replace("{limit}", &jobs);
    assert!(auth0.contains(&message), "import jobs message");
    let spa = figure(&figures, "spa per minute per user");
    assert!(auth0.contains(&format!(
        "maximum of **{spa} requests per minute per user**"
    )));

    let onelogin = page("onelogin-get-rate-limit.md");
    let copy = copy("onelogin");
    let per_hour: u64 = figure(&copy, "calls per hour").parse().unwrap();
    let printed = format!("{},{:03}", per_hour / 1000, per_hour % 1000);
    assert!(onelogin.contains(&format!(
        "account level rate limit of {printed} calls per hour"
    )));
    let status = figure(&copy, "status path");
    let (root, rest) = status.rsplit_once('/').unwrap();
    assert!(onelogin.contains(&format!("https://<subdomain>{root}/\n{rest}")));
}

#[test]
fn the_page_parsers_read_a_table_and_its_continuation_rows() {
    let doc = "x\n| a | b | c |\n| - | - | - |\n| Users | `GET /u` | 4 |\n| | `POST /u | |\n\
               | Other | | 1,200 |\ntext\n";
    let t = tables(doc);
    assert_eq!(t.len(), 1);
    assert_eq!(
        auth0_rows(&t[0]),
        vec![
            vec!["Users", "GET /u; POST /u", "4"],
            vec!["Other", "-", "1,200"]
        ]
    );
    let okta = "| h | p |\n| - | - |\n| **Users:**<br>Only `GET` to `/api/v1/users` | 1,000 |\n";
    assert_eq!(okta_rows(okta), vec![vec!["/api/v1/users", "GET", "1000"]]);
}
