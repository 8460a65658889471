//! Test-only: declared `#[cfg(test)]` in `catalog/mod.rs`.
//! The vendors' published tables as the project copied them (test data in
//! `tests/vendor-tables/`, each file naming its source page and the date it
//! was read). The catalog tests hold every embedded number to these copies;
//! `vendor_pages` holds the copies to the pages themselves where they exist.
//!
//! Format: tab-separated lines; `#` lines are comments; the first other line
//! names the columns; `n/a` is a published "no limit", `-` an empty cell.

/// One copied table: its file name (without `.tsv`) and its data lines.
pub(crate) struct Copy {
    pub name: &'static str,
    pub rows: Vec<Vec<String>>,
}

macro_rules! copies {
    ($($name:literal),* $(,)?) => {
        /// Every copied table, by name.
        pub(crate) const FILES: &[(&str, &str)] = &[
            $(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vendor-tables/", $name, ".tsv")))),*
        ];
    };
}

copies!(
    "okta-management",
    "okta-end-user",
    "okta-public-metadata",
    "okta-concurrency",
    "okta-client-based",
    "auth0-tenant",
    "auth0-endpoints",
    "auth0-self-service",
    "auth0-figures",
    "auth0-authentication",
    "auth0-2026-tenant",
    "auth0-2026-endpoints",
    "onelogin",
);

/// The data lines of a TSV text (comments and the heading dropped).
pub(crate) fn parse(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .skip(1)
        .map(|l| l.split('\t').map(|c| c.trim().to_string()).collect())
        .collect()
}

/// The copied table `name`.
pub(crate) fn copy(name: &str) -> Copy {
    let (name, text) = FILES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no copied table {name}"));
    Copy {
        name,
        rows: parse(text),
    }
}

/// A limit cell: `n/a` is `None`; anything else must be a whole number.
pub(crate) fn limit(cell: &str) -> Option<u64> {
    if cell == "n/a" {
        return None;
    }
    Some(
        cell.parse()
            .unwrap_or_else(|_| panic!("limit cell {cell:?} is neither a number nor n/a")),
    )
}

/// A `figure<TAB>value` table's value for `figure`.
pub(crate) fn figure(copy: &Copy, figure: &str) -> String {
    copy.rows
        .iter()
        .find(|r| r[0] == figure)
        .unwrap_or_else(|| panic!("{}: no figure {figure:?}", copy.name))[1]
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_copy_names_its_source_and_the_date_read() {
        for (name, text) in FILES {
            let head: String = text.lines().take_while(|l| l.starts_with('#')).collect();
            // A page copied into vendor-docs/, or one read at its address.
            assert!(
                head.contains("vendor-docs/") || head.contains("(https://"),
                "{name}: names no source page"
            );
            assert!(
                head.contains("Read 20"),
                "{name}: says not when it was read"
            );
            let width = text
                .lines()
                .find(|l| !l.starts_with('#'))
                .map(|l| l.split('\t').count());
            for row in parse(text) {
                assert_eq!(Some(row.len()), width, "{name}: ragged row {row:?}");
            }
        }
    }

    #[test]
    fn parse_drops_comments_and_heading_and_splits_on_tabs() {
        let rows = parse("# source\nname\tvalue\n\na\t1\nb c\t n/a \n");
        assert_eq!(rows, vec![vec!["a", "1"], vec!["b c", "n/a"]]);
        assert_eq!(limit("n/a"), None);
        assert_eq!(limit("1200"), Some(1200));
    }
}
