//! Arbitrary request paths: normalisation never panics and always yields a
//! canonical shape (rooted, no empty, `.` or `..` segments, no query), and
//! routing the normalised path never panics for any vendor's policy.
//! (Not idempotent, by design: `%7%38` decodes once to the literal `%78`, as
//! an IdP that decodes once sees it; a second pass would be double-decoding.)
#![no_main]
use std::sync::OnceLock;

use idp_ratelimit::config;
use idp_ratelimit::path::normalize;
use idp_ratelimit::policy::Policy;
use libfuzzer_sys::fuzz_target;

fn policies() -> &'static [Policy] {
    static P: OnceLock<Vec<Policy>> = OnceLock::new();
    P.get_or_init(|| {
        [
            r#"{"vendor": "okta", "plan": "enterprise"}"#,
            r#"{"vendor": "auth0", "plan": "enterprise-prod"}"#,
            r#"{"vendor": "auth0", "plan": "free"}"#,
            r#"{"vendor": "onelogin"}"#,
        ]
        .iter()
        .map(|j| Policy::compile(config::parse(j.as_bytes()).unwrap().policy).unwrap())
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let (method, path) = match data.split_first() {
        Some((m, rest)) => (["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"][usize::from(*m) % 6], rest),
        None => ("GET", data),
    };
    let raw = String::from_utf8_lossy(path);
    let once = normalize(&raw);
    assert!(once.starts_with('/'));
    assert!(!once.contains("//") && !once.contains('?') && !once.contains('#'));
    assert!(once == "/" || !once.ends_with('/'));
    assert!(once.split('/').all(|seg| seg != "." && seg != ".."));
    for p in policies() {
        let _ = p.resolve(method, &once);
    }
});
