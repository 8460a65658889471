//! OneLogin (`onelogin-get-rate-limit.md`): one account-level limit of 5,000
//! calls per hour whatever the access token, and `GET /auth/rate_limit`,
//! which reports it and which the filter answers itself.

use crate::limiter::{Algorithm, Limit, MICROS_PER_SEC};
use crate::policy::{Bucket, PolicySpec, Scope, Target};

pub const PLANS: [&str; 1] = ["default"];
pub const PER_HOUR: u64 = 5000;
pub const STATUS_PATH: &str = "/auth/rate_limit";

pub fn canonical_plan(plan: &str) -> Option<&'static str> {
    PLANS.iter().copied().find(|p| *p == plan)
}

/// The account bucket counts every call under `/api/` and `/auth/` (the
/// API's two roots), except the status endpoint.
pub fn policy() -> PolicySpec {
    let mut spec = PolicySpec::default();
    let limit = Limit {
        algorithm: Algorithm::FixedWindow,
        limit: PER_HOUR,
        window_us: 3600 * MICROS_PER_SEC,
    };
    let b = spec.bucket(Bucket::new(
        "onelogin.account",
        "Account-level hourly limit",
        limit,
        Scope::Host,
    ));
    spec.route(None, &["/api/*", "/auth/*"], Target::Buckets(vec![b]));
    spec.route(None, &[STATUS_PATH], Target::RateLimitStatus(b));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::published::{copy, figure};

    #[test]
    fn limit_matches_the_published_page() {
        let published = copy("onelogin");
        assert_eq!(figure(&published, "calls per hour"), PER_HOUR.to_string());
        assert_eq!(figure(&published, "status path"), STATUS_PATH);
    }
}
