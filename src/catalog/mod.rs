//! The vendors' published rate-limit tables, embedded as data.

pub mod auth0;
pub mod okta;
pub mod onelogin;

/// Reads one of the vendor pages the catalogs were taken from, for the tests
/// that hold every number to its table. They live in `../shared/vendor-docs/`
/// beside the checkout (or where `IDP_RL_VENDOR_DOCS` points).
#[cfg(test)]
pub(crate) fn vendor_doc(name: &str) -> String {
    let dir = std::env::var("IDP_RL_VENDOR_DOCS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vendor-docs").to_string()
    });
    let path = format!("{dir}/{name}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("vendor doc {path} is needed to check the catalog: {e}"))
}
