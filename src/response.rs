//! What the filter says back, in each vendor's dialect: rate-limit headers on
//! every counted response, the vendor's own 429, and OneLogin's
//! `GET /auth/rate_limit` answer.

use crate::limiter::{whole_secs, Outcome, MICROS_PER_SEC};
use crate::policy::{Bucket, RejectBody};

/// Which vendor's responses (headers, 429 bodies) the filter speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Okta,
    Auth0,
    OneLogin,
}

impl Dialect {
    /// The vendor's rate-limit header names, lower-case: limit, remaining, reset.
    pub fn rate_header_names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Dialect::Okta => (
                "x-rate-limit-limit",
                "x-rate-limit-remaining",
                "x-rate-limit-reset",
            ),
            Dialect::Auth0 | Dialect::OneLogin => (
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ),
        }
    }
}

/// Which rate-limit response headers to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderStyle {
    Vendor,
    Ietf,
    Both,
    None,
}

pub type Headers = Vec<(&'static str, String)>;

/// A response the filter sends itself instead of forwarding the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Headers,
    pub body: String,
}

/// The state of the bucket a response reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub limit: u64,
    pub remaining: u64,
    pub reset_us: u64,
}

impl Report {
    pub fn new(bucket: &Bucket, outcome: &Outcome) -> Report {
        Report {
            limit: bucket.limit.limit,
            remaining: outcome.remaining,
            reset_us: outcome.reset_us,
        }
    }
}

fn ceil_secs(us: u64) -> u64 {
    crate::divide::divide_ceil(us, MICROS_PER_SEC)
}

/// How the filter speaks: whose dialect, which headers, and whether a
/// OneLogin 429 carries `Retry-After` (OneLogin documents none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Voice {
    pub dialect: Dialect,
    pub headers: HeaderStyle,
    pub onelogin_retry_after: bool,
}

/// Rate-limit headers for a counted response, reporting `bucket`.
pub fn rate_headers(
    dialect: Dialect,
    style: HeaderStyle,
    bucket: &Bucket,
    r: &Report,
    now_us: u64,
) -> Headers {
    let mut h = Headers::new();
    if matches!(style, HeaderStyle::Vendor | HeaderStyle::Both) {
        let (limit, remaining, reset) = dialect.rate_header_names();
        // Okta: UTC epoch second of the window's end, rounded down (as Okta
        // sends it: the first request of a window shows Reset = Date + 60;
        // the SDKs add 1 s to their wait, so they never retry early).
        // Auth0: epoch second, rounded up. OneLogin: seconds left.
        let reset_value = match dialect {
            Dialect::OneLogin => ceil_secs(r.reset_us.saturating_sub(now_us)),
            Dialect::Okta => whole_secs(r.reset_us),
            Dialect::Auth0 => ceil_secs(r.reset_us),
        };
        h.push((limit, crate::text::decimal(r.limit)));
        h.push((remaining, crate::text::decimal(r.remaining)));
        h.push((reset, crate::text::decimal(reset_value)));
    }
    if matches!(style, HeaderStyle::Ietf | HeaderStyle::Both) {
        // draft-ietf-httpapi-ratelimit-headers: quota q per window w (seconds);
        // remaining r, seconds t until the quota resets.
        let t = ceil_secs(r.reset_us.saturating_sub(now_us));
        h.push((
            "ratelimit",
            format!("\"{}\";r={};t={t}", bucket.id, r.remaining),
        ));
        h.push(("ratelimit-policy", ietf_policy(bucket)));
    }
    h
}

/// The `RateLimit-Policy` field for the IETF style (quota and window).
pub fn ietf_policy(bucket: &Bucket) -> String {
    format!(
        "\"{}\";q={};w={}",
        bucket.id,
        bucket.limit.limit,
        ceil_secs(bucket.limit.window_us).max(1)
    )
}

/// The vendor's 429 for a request `bucket` refused; `seed` makes its ids unique.
pub fn too_many_requests(
    voice: Voice,
    bucket: &Bucket,
    outcome: &Outcome,
    now_us: u64,
    seed: u64,
) -> LocalReply {
    let Voice {
        dialect,
        headers: style,
        ..
    } = voice;
    let mut report = Report::new(bucket, outcome);
    if bucket.reject == RejectBody::Concurrency {
        report.limit = 0;
    }
    let mut headers = rate_headers(dialect, style, bucket, &report, now_us);
    headers.push(("content-type", "application/json".to_string()));
    headers.push(("date", crate::httpdate::format(whole_secs(now_us))));
    let retry_after = outcome.retry_after_secs(now_us).to_string();
    // Bodies are written in the vendors' own key order.
    let body = match dialect {
        Dialect::Okta => {
            // Okta's SDKs echo the request id back as X-Okta-Retry-For; the
            // body's errorId is another id (Okta's never equal).
            headers.push(("x-okta-request-id", okta_request_id(seed)));
            format!(
                r#"{{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit due to too many requests.","errorLink":"E0000047","errorId":{},"errorCauses":[]}}"#,
                json_string(&okta_error_id(seed))
            )
        }
        Dialect::Auth0 => {
            headers.push(("retry-after", retry_after));
            match &bucket.reject {
                RejectBody::OAuth(description) => format!(
                    r#"{{"error":"too_many_requests","error_description":{}}}"#,
                    json_string(description)
                ),
                RejectBody::Message(m) => format!(
                    r#"{{"statusCode":429,"error":"Too Many Requests","message":{}}}"#,
                    json_string(&m.replace("{limit}", &bucket.limit.limit.to_string()))
                ),
                RejectBody::Standard | RejectBody::StandardSaying(_) | RejectBody::Concurrency => {
                    let message = match &bucket.reject {
                        RejectBody::StandardSaying(m) => m.as_str(),
                        _ => "Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers.",
                    };
                    format!(
                        r#"{{"statusCode":429,"error":"Too Many Requests","message":{},"errorCode":"too_many_requests"}}"#,
                        json_string(message)
                    )
                }
            }
        }
        Dialect::OneLogin => {
            // OneLogin documents no Retry-After; its Python SDK (urllib3)
            // retries only when one is present, so it is sent only on request.
            if voice.onelogin_retry_after {
                headers.push(("retry-after", retry_after));
            }
            envelope(429, "too many requests", "Rate limit exceeded", None)
        }
    };
    LocalReply {
        status: 429,
        headers,
        body,
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// OneLogin's `{"status": {...}}` envelope, with `data` when given.
fn envelope(code: u32, kind: &str, message: &str, data: Option<&Report>) -> String {
    let status = format!(
        r#"{{"error":{},"code":{code},"type":{},"message":{}}}"#,
        code >= 400,
        json_string(kind),
        json_string(message)
    );
    match data {
        None => format!(r#"{{"status":{status}}}"#),
        Some(r) => format!(
            r#"{{"status":{status},"data":{{"X-RateLimit-Limit":{},"X-RateLimit-Remaining":{},"X-RateLimit-Reset":{}}}}}"#,
            r.limit, r.remaining, r.reset_us
        ),
    }
}

fn json_reply(status: u32, body: String, now_us: u64) -> LocalReply {
    LocalReply {
        status,
        headers: vec![
            ("content-type", "application/json".to_string()),
            ("date", crate::httpdate::format(whole_secs(now_us))),
        ],
        body,
    }
}

/// `GET /auth/rate_limit`: the caller's account limit, answered here. Needs
/// `Authorization: bearer:<token>` (the form OneLogin documents; `Bearer
/// <token>` is accepted too); without it 401, with another form 400; other
/// methods 404. The check is not itself counted.
pub fn onelogin_status(
    method: &str,
    authorization: Option<&str>,
    report: &Report,
    now_us: u64,
) -> LocalReply {
    if !(method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD")) {
        return json_reply(
            404,
            envelope(404, "not found", "No Route Exists", None),
            now_us,
        );
    }
    let auth = authorization.map(str::trim).unwrap_or("");
    if auth.is_empty() {
        return json_reply(
            401,
            envelope(401, "Unauthorized", "Authentication Failure", None),
            now_us,
        );
    }
    let token = auth
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("bearer:") || p.eq_ignore_ascii_case("bearer "))
        .and_then(|_| auth.get(7..))
        .map(str::trim)
        .unwrap_or("");
    if token.is_empty() {
        let body = envelope(
            400,
            "bad request",
            "Authorization Information is incorrect",
            None,
        );
        return json_reply(400, body, now_us);
    }
    let data = Report {
        reset_us: ceil_secs(report.reset_us.saturating_sub(now_us)),
        ..*report
    };
    json_reply(
        200,
        envelope(200, "success", "Success", Some(&data)),
        now_us,
    )
}

/// An `X-Okta-Request-Id` as current orgs send it: 32 lower-case hex digits.
pub fn okta_request_id(seed: u64) -> String {
    let a = crate::hash::mix(seed ^ 0x5851_f42d_4c95_7f2d);
    let b = crate::hash::mix(a ^ 0x1405_7b7e_f767_814f);
    format!("{a:016x}{b:016x}")
}

/// An Okta `errorId`: `oae` + 22 base-62 characters, as in Okta's recorded
/// errors (25 characters in all), from a seed.
pub fn okta_error_id(seed: u64) -> String {
    const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::from("oae");
    let mut x = 0;
    for i in 0..22u64 {
        if i % 10 == 0 {
            // 10 base-62 digits use 60 of a mixed word's 64 bits.
            x = crate::hash::mix(seed ^ (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        out.push(char::from(A[(x % 62) as usize]));
        x /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::{Algorithm, Limit};
    use crate::policy::Scope;

    const NOW: u64 = 1_795_392_000 * MICROS_PER_SEC + 250_000;

    fn bucket(id: &str, limit: u64) -> Bucket {
        let l = Limit {
            algorithm: Algorithm::FixedWindow,
            limit,
            window_us: 60 * MICROS_PER_SEC,
        };
        Bucket::new(id, "test", l, Scope::Host)
    }

    fn get<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    fn rejected(reset_us: u64) -> Outcome {
        Outcome {
            admitted: false,
            remaining: 0,
            reset_us,
        }
    }

    const VENDOR: Voice = Voice {
        dialect: Dialect::Okta,
        headers: HeaderStyle::Vendor,
        onelogin_retry_after: false,
    };

    fn voice(dialect: Dialect) -> Voice {
        Voice { dialect, ..VENDOR }
    }

    #[test]
    fn okta_429_is_what_the_sdks_need() {
        let b = bucket("okta.management.users", 600);
        // The window ends 59.5 s from now: Okta rounds that second down.
        let r = too_many_requests(VENDOR, &b, &rejected(NOW + 59_500_000), NOW, 7);
        assert_eq!(r.status, 429);
        assert_eq!(get(&r.headers, "x-rate-limit-limit"), Some("600"));
        assert_eq!(get(&r.headers, "x-rate-limit-remaining"), Some("0"));
        assert_eq!(get(&r.headers, "x-rate-limit-reset"), Some("1795392059"));
        assert_eq!(
            get(&r.headers, "date"),
            Some("Mon, 23 Nov 2026 00:00:00 GMT")
        );
        let request_id = okta_request_id(7);
        assert_eq!(
            get(&r.headers, "x-okta-request-id"),
            Some(request_id.as_str())
        );
        assert_eq!(get(&r.headers, "content-type"), Some("application/json"));
        let error_id = okta_error_id(7);
        assert_eq!(
            r.body,
            format!(
                r#"{{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit due to too many requests.","errorLink":"E0000047","errorId":"{error_id}","errorCauses":[]}}"#
            ),
            "Okta's key order"
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"errorCode": "E0000047",
                "errorSummary": "API call exceeded rate limit due to too many requests.",
                "errorLink": "E0000047", "errorId": error_id, "errorCauses": []})
        );
    }

    #[test]
    fn okta_reset_is_the_window_end_rounded_down() {
        let b = bucket("okta.management.users", 600);
        // A window opened at NOW (x.25 s) ends at x.25 + 60: Reset = Date + 60.
        let report = Report {
            limit: 600,
            remaining: 599,
            reset_us: NOW + 60 * MICROS_PER_SEC,
        };
        let h = rate_headers(Dialect::Okta, HeaderStyle::Vendor, &b, &report, NOW);
        assert_eq!(get(&h, "x-rate-limit-reset"), Some("1795392060"));
        // Auth0 keeps rounding up (the second at which a request is back).
        let h = rate_headers(Dialect::Auth0, HeaderStyle::Vendor, &b, &report, NOW);
        assert_eq!(get(&h, "x-ratelimit-reset"), Some("1795392061"));
    }

    #[test]
    fn auth0_429_has_retry_after_and_its_body() {
        let mut b = bucket("auth0.tenant.per-second", 50);
        b.reject = RejectBody::StandardSaying(crate::catalog::auth0::GLOBAL_LIMIT_MESSAGE.into());
        let r = too_many_requests(voice(Dialect::Auth0), &b, &rejected(NOW + 20_000), NOW, 1);
        assert_eq!(get(&r.headers, "retry-after"), Some("1"));
        assert_eq!(get(&r.headers, "x-ratelimit-reset"), Some("1795392001"));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["errorCode"], "too_many_requests");
        assert_eq!(body["statusCode"], 429);
        assert_eq!(body["message"], "Global limit has been reached");
        let mut jobs = bucket("auth0.import-jobs", 2);
        jobs.reject = RejectBody::Message(crate::catalog::auth0::IMPORT_JOBS_MESSAGE.into());
        let r = too_many_requests(
            voice(Dialect::Auth0),
            &jobs,
            &rejected(NOW + 5_000_000),
            NOW,
            1,
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"statusCode": 429, "error": "Too Many Requests",
                "message": "There are 2 active import users jobs, please wait until some of them are finished and try again"})
        );
    }

    #[test]
    fn onelogin_reset_is_seconds_left() {
        let b = bucket("onelogin.account", 5000);
        let report = Report {
            limit: 5000,
            remaining: 4988,
            reset_us: NOW + 832 * MICROS_PER_SEC,
        };
        let h = rate_headers(Dialect::OneLogin, HeaderStyle::Vendor, &b, &report, NOW);
        assert_eq!(get(&h, "x-ratelimit-reset"), Some("832"));
        let r = onelogin_status("GET", Some("bearer:abc"), &report, NOW);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            r#"{"status":{"error":false,"code":200,"type":"success","message":"Success"},"data":{"X-RateLimit-Limit":5000,"X-RateLimit-Remaining":4988,"X-RateLimit-Reset":832}}"#
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": {"error": false, "code": 200, "type": "success", "message": "Success"},
                "data": {"X-RateLimit-Limit": 5000, "X-RateLimit-Remaining": 4988, "X-RateLimit-Reset": 832}})
        );
        assert_eq!(
            onelogin_status("GET", Some("Bearer abc"), &report, NOW).status,
            200
        );
        assert_eq!(onelogin_status("GET", None, &report, NOW).status, 401);
        assert_eq!(
            onelogin_status("GET", Some("Basic abc"), &report, NOW).status,
            400
        );
        assert_eq!(
            onelogin_status("GET", Some("bearer:"), &report, NOW).status,
            400
        );
        let r = onelogin_status("POST", Some("bearer:abc"), &report, NOW);
        assert_eq!(r.status, 404);
        assert!(r.body.contains("No Route Exists"));
    }

    #[test]
    fn ietf_headers() {
        let b = bucket("okta.management.users", 600);
        let report = Report {
            limit: 600,
            remaining: 599,
            reset_us: NOW + 57 * MICROS_PER_SEC,
        };
        let h = rate_headers(Dialect::Okta, HeaderStyle::Ietf, &b, &report, NOW);
        assert_eq!(
            h,
            vec![
                (
                    "ratelimit",
                    "\"okta.management.users\";r=599;t=57".to_string()
                ),
                (
                    "ratelimit-policy",
                    "\"okta.management.users\";q=600;w=60".to_string()
                )
            ]
        );
        assert!(rate_headers(Dialect::Okta, HeaderStyle::None, &b, &report, NOW).is_empty());
        assert_eq!(
            rate_headers(Dialect::Okta, HeaderStyle::Both, &b, &report, NOW).len(),
            5
        );
    }

    #[test]
    fn onelogin_429_has_retry_after_only_when_asked() {
        let b = bucket("onelogin.account", 5000);
        let out = rejected(NOW + 832 * MICROS_PER_SEC);
        let plain = too_many_requests(voice(Dialect::OneLogin), &b, &out, NOW, 1);
        assert_eq!(plain.status, 429);
        assert_eq!(get(&plain.headers, "retry-after"), None);
        assert_eq!(get(&plain.headers, "x-ratelimit-reset"), Some("832"));
        let asked = Voice {
            onelogin_retry_after: true,
            ..voice(Dialect::OneLogin)
        };
        let r = too_many_requests(asked, &b, &out, NOW, 1);
        assert_eq!(get(&r.headers, "retry-after"), Some("832"));
    }

    #[test]
    fn ids_look_like_oktas() {
        let e = okta_error_id(1);
        assert_eq!(e.len(), 25);
        assert!(e.starts_with("oae") && e.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(e, okta_error_id(2));
        assert!(!okta_error_id(0).contains("00000"), "{}", okta_error_id(0));
        let r = okta_request_id(1);
        assert_eq!(r.len(), 32);
        assert!(r
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(r, okta_request_id(2));
        assert_ne!(r, e);
    }
}
