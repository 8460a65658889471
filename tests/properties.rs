//! Property tests (stable Rust, seeded PRNG, no extra crates) for the entry
//! points that see hostile input: the path router, the config parser, and the
//! reader of an upstream's rate-limit headers (`"upstream": "vendor"`).
//! Seeds are fixed so a failure reproduces; set IDP_RL_PROPTEST_CASES to run more.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idp_ratelimit::config;
use idp_ratelimit::path::normalize;
use idp_ratelimit::policy::{Policy, Resolved};

/// xorshift64*: small, deterministic, good enough to drive generators.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

fn cases() -> usize {
    std::env::var("IDP_RL_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn policies() -> Vec<(&'static str, Policy)> {
    [
        r#"{"vendor": "okta", "plan": "enterprise"}"#,
        r#"{"vendor": "auth0", "plan": "enterprise-prod"}"#,
        r#"{"vendor": "auth0", "plan": "free"}"#,
        r#"{"vendor": "onelogin"}"#,
    ]
    .into_iter()
    .map(|json| {
        (
            json,
            Policy::compile(config::parse(json.as_bytes()).unwrap().policy).unwrap(),
        )
    })
    .collect()
}

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PURGE",
];

/// Canonical paths built from the catalogs' shapes, with random parameters.
fn canonical_path(rng: &mut Rng) -> String {
    const SHAPES: [&str; 24] = [
        "/api/v1/users",
        "/api/v1/users/{}",
        "/api/v1/users/{}/groups",
        "/api/v1/apps",
        "/api/v1/apps/{}",
        "/api/v1/apps/{}/users",
        "/api/v1/groups/{}",
        "/api/v1/groups/{}/users",
        "/api/v1/logs",
        "/api/v1/authn",
        "/api/v1/authn/factors/{}/verify",
        "/api/v1/sessions/{}",
        "/oauth2/v1/token",
        "/oauth2/v1/keys",
        "/oauth2/{}/v1/token",
        "/oauth2/{}/v1/keys",
        "/oauth2/{}/.well-known/openid-configuration",
        "/oauth2/v1/clients/{}",
        "/api/v2/users",
        "/api/v2/users/{}/logs",
        "/api/v2/jobs/users-imports",
        "/api/v2/clients/{}",
        "/auth/rate_limit",
        "/api/2/users/{}",
    ];
    const PARAMS: [&str; 6] = ["00u1ab", "default", "v1", "sms", "a%2Fb", "x-y_z~1"];
    let shape = rng.pick(&SHAPES);
    let mut out = String::new();
    for (i, part) in shape.split("{}").enumerate() {
        if i > 0 {
            out.push_str(rng.pick::<&str>(&PARAMS));
        }
        out.push_str(part);
    }
    out
}

/// Rewrites a canonical path into an equivalent spelling.
fn respell(rng: &mut Rng, canonical: &str) -> String {
    let mut out = String::new();
    for segment in canonical.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        if rng.chance(4) {
            out.push('/');
        }
        if rng.chance(5) {
            out.push_str("./");
        }
        if rng.chance(5) {
            out.push_str("junk/../");
        }
        for ch in segment.chars() {
            if ch.is_ascii_alphanumeric() && rng.chance(6) {
                let hex = format!("%{:02X}", ch as u32);
                out.push_str(&if rng.chance(2) {
                    hex.to_lowercase()
                } else {
                    hex
                });
            } else {
                out.push(ch);
            }
        }
    }
    if rng.chance(3) {
        out.push('/');
    }
    if rng.chance(3) {
        out.push_str("?q=%2F..%2F&x=/api/v1/logs");
    }
    if rng.chance(6) {
        out.push_str("#frag/..");
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[test]
fn any_spelling_of_a_path_lands_in_the_same_buckets() {
    let policies = policies();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..cases() {
        let canonical = canonical_path(&mut rng);
        let raw = respell(&mut rng, &canonical);
        let method = *rng.pick(&METHODS);
        assert_eq!(
            normalize(&raw),
            normalize(&canonical),
            "{raw:?} vs {canonical:?}"
        );
        for (name, policy) in &policies {
            let want = policy.resolve(method, &normalize(&canonical));
            let got = policy.resolve(method, &normalize(&raw));
            assert_eq!(
                got, want,
                "{name}: {method} {raw:?} (canonical {canonical:?})"
            );
        }
    }
}

#[test]
fn the_path_guard_lets_through_every_path_a_route_matches() {
    // `idp-ratelimit guard` has Envoy skip the filter where `must_see` is
    // false: no spelling of a limited path, and no arbitrary path the policy
    // routes, may be skipped.
    let policies = policies();
    let mut rng = Rng(0x0bad_cafe);
    let guards: Vec<Vec<String>> = policies
        .iter()
        .map(|(json, _)| {
            let spec = config::parse(json.as_bytes()).unwrap().policy;
            idp_ratelimit::guard::route_prefixes(&spec).unwrap()
        })
        .collect();
    for i in 0..cases() {
        let raw = if i % 2 == 0 {
            let canonical = canonical_path(&mut rng);
            respell(&mut rng, &canonical)
        } else {
            random_path(&mut rng)
        };
        let method = *rng.pick(&METHODS);
        for ((name, policy), prefixes) in policies.iter().zip(&guards) {
            if matches!(
                policy.resolve(method, &normalize(&raw)),
                Some(Resolved::Buckets(_) | Resolved::RateLimitStatus(_))
            ) {
                assert!(
                    idp_ratelimit::guard::must_see(prefixes, &raw),
                    "{name}: the guard skips {method} {raw:?}"
                );
            }
        }
    }
}

fn random_path(rng: &mut Rng) -> String {
    const PIECES: [&str; 16] = [
        "/", "//", "..", ".", "%2F", "%2f", "%", "%zz", "%2e%2E", "api", "v1", "users", "?", "#",
        "é", "\u{0}",
    ];
    let mut bytes = Vec::new();
    let n = if rng.chance(200) {
        65_536
    } else {
        rng.below(40)
    };
    while bytes.len() < n {
        if rng.chance(4) {
            bytes.push(rng.next() as u8); // arbitrary bytes, non-UTF-8 included
        } else {
            bytes.extend_from_slice(rng.pick(&PIECES).as_bytes());
        }
    }
    // Envoy hands the filter bytes; the glue reads them lossily.
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn arbitrary_paths_never_panic_and_normalise_to_a_canonical_shape() {
    let policies = policies();
    let mut rng = Rng(42);
    for _ in 0..cases() {
        let raw = random_path(&mut rng);
        let once = normalize(&raw);
        assert!(once.starts_with('/'), "{raw:?} -> {once:?}");
        assert!(
            !once.contains("//") && !once.contains('?') && !once.contains('#'),
            "{raw:?} -> {once:?}"
        );
        assert!(once == "/" || !once.ends_with('/'), "{raw:?} -> {once:?}");
        // Not idempotent by design: `%7%38` decodes once to the literal `%78`.
        assert!(
            once.split('/').all(|s| s != "." && s != ".."),
            "{raw:?} -> {once:?}"
        );
        for (_, policy) in &policies {
            let _ = policy.resolve(rng.pick::<&str>(&METHODS), &once);
        }
    }
}

#[test]
fn exempt_paths_cannot_be_reached_by_respelling_a_limited_one() {
    // A limited path never resolves to Exempt (or to nothing) by any spelling.
    let policies = policies();
    let mut rng = Rng(7);
    for _ in 0..cases() / 4 {
        let canonical = canonical_path(&mut rng);
        let raw = respell(&mut rng, &canonical);
        for (name, policy) in &policies {
            if let Some(Resolved::Buckets(b)) = policy.resolve("GET", &normalize(&canonical)) {
                assert_eq!(
                    policy.resolve("GET", &normalize(&raw)),
                    Some(Resolved::Buckets(b)),
                    "{name}: {raw:?}"
                );
            }
        }
    }
}

fn random_json(rng: &mut Rng, depth: usize) -> serde_json::Value {
    use serde_json::{json, Value};
    // The parser's own field list, and the fields nested inside `overrides`,
    // `routes` and `scope`.
    const NESTED: [&str; 7] = [
        "bucket",
        "route",
        "limit",
        "window",
        "methods",
        "algorithm",
        "header",
    ];
    let fields: Vec<&str> = config::FIELDS.iter().chain(&NESTED).copied().collect();
    const STRINGS: [&str; 19] = [
        "vendor",
        "okta",
        "auth0",
        "onelogin",
        "custom",
        "enterprise",
        "free",
        "management",
        "end-user",
        "client_ip",
        "host",
        "shadow",
        "ietf",
        "minute",
        "/api/v1/*",
        "/a/{*r}/b",
        "okta.management.logs",
        "2020",
        "2026",
    ];
    match rng.below(if depth > 3 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.chance(2)),
        2 => json!(rng.next() as i64 % 200_000 - 1000),
        3 => json!(rng.pick(&STRINGS)),
        4 => json!(f64::from(rng.below(1000) as u32) / 7.0),
        5 | 6 => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(6) {
                m.insert(rng.pick(&fields).to_string(), random_json(rng, depth + 1));
            }
            Value::Object(m)
        }
        _ => Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
    }
}

#[test]
fn arbitrary_configs_are_accepted_or_refused_with_a_field() {
    let mut rng = Rng(0xdead_beef);
    let mut accepted = 0;
    for i in 0..cases() {
        let mut value = random_json(&mut rng, 0);
        // Steer half the cases towards plausible configs.
        if i % 2 == 0 {
            if let serde_json::Value::Object(m) = &mut value {
                m.insert(
                    "vendor".into(),
                    serde_json::json!(rng.pick(&["okta", "auth0", "onelogin", "custom"])),
                );
                m.insert(
                    "plan".into(),
                    serde_json::json!(rng.pick(&["enterprise", "free", "one-app", "default"])),
                );
            }
        }
        let text = value.to_string();
        match config::parse(text.as_bytes()) {
            Ok(c) => {
                accepted += 1;
                Policy::compile(c.policy)
                    .unwrap_or_else(|e| panic!("accepted {text} but it does not compile: {e:?}"));
            }
            Err(e) => {
                assert!(
                    !e.field.is_empty() && !e.problem.is_empty(),
                    "{text}: {e:?}"
                );
            }
        }
    }
    assert!(accepted > 0, "the generator should reach valid configs too");
    // Raw bytes: truncated, non-UTF-8, deeply nested.
    for bytes in [
        &b"{\"vendor\": \"okta\", \"plan\""[..],
        b"\xff\xfe{}",
        b"",
        b"null",
        &[b'['; 10_000][..],
    ] {
        let e = config::parse(bytes).unwrap_err();
        assert_eq!(e.field, "(document)");
    }
}

/// Arrivals for the timing properties: mostly bursts and short gaps, now and
/// then a long idle, so buckets are refused, refill and reopen.
fn gap_us(rng: &mut Rng, window_us: u64, limit: u64) -> u64 {
    let per = (window_us / limit).max(1);
    match rng.below(10) {
        0..=4 => 0,
        5..=7 => rng.next() % per.saturating_mul(2),
        8 => rng.next() % window_us.saturating_mul(2).max(1),
        _ => 1 + rng.next() % 3,
    }
}

/// The timing promise, governor's `accurate_not_until`: when a fixed window
/// or a token bucket refuses a request, the reset it gives is exact to the
/// microsecond: one microsecond before it the bucket still refuses, at it the
/// bucket admits. Random limits, windows (whole seconds or not) and arrivals.
#[test]
fn a_refusal_names_the_exact_microsecond_it_ends() {
    use idp_ratelimit::limiter::{Algorithm, Limit, MICROS_PER_SEC};
    let mut rng = Rng(0x5eed_0f71_35ab);
    let mut refusals = 0;
    for _ in 0..cases() / 10 {
        let algorithm = *rng.pick(&[Algorithm::FixedWindow, Algorithm::TokenBucket]);
        let limit = match rng.below(4) {
            0 => 1,
            1 => 1 + rng.next() % 10,
            2 => 1 + rng.next() % 1000,
            _ => 1 + rng.next() % 100_000,
        };
        let window_us = match rng.below(3) {
            0 => (1 + rng.next() % 3600) * MICROS_PER_SEC,
            1 => *rng.pick(&[1, 60, 3600, 86_400]) * MICROS_PER_SEC,
            _ => 1 + rng.next() % (120 * MICROS_PER_SEC),
        };
        let l = Limit {
            algorithm,
            limit,
            window_us,
        };
        let mut now = 1_700_000_000 * MICROS_PER_SEC + rng.next() % MICROS_PER_SEC;
        let mut state = None;
        for _ in 0..200 {
            let (out, next) = l.acquire(state, now);
            if out.admitted {
                state = next;
            } else {
                refusals += 1;
                let reset = out.reset_us;
                assert!(reset > now, "{l:?} at {now}: reset {reset} is not ahead");
                let wait = reset - now;
                assert_eq!(
                    out.retry_after_secs(now),
                    wait.div_ceil(MICROS_PER_SEC).max(1),
                    "{l:?} at {now}"
                );
                assert!(
                    !l.acquire(state, reset - 1).0.admitted,
                    "{l:?}: refused at {now}, reset {reset}, but admitted 1 us before"
                );
                let (at, next) = l.acquire(state, reset);
                assert!(
                    at.admitted,
                    "{l:?}: refused at {now}, reset {reset}, still refused at it"
                );
                state = next;
                now = reset;
            }
            now += gap_us(&mut rng, window_us, limit);
        }
    }
    assert!(refusals > 1000, "the arrivals reach refusals ({refusals})");
}

/// The same promise as the client reads it, through the whole decision and
/// the response headers: Auth0's `Retry-After` (seconds to wait) is the first
/// whole second at which the request is admitted, a second earlier it is still
/// refused; Okta's `X-Rate-Limit-Reset` is the window's end rounded down, so a
/// request is admitted at Reset + 1 (what Okta's SDKs wait for) and refused
/// just before Reset.
#[test]
fn retry_after_and_reset_headers_are_the_first_admitting_second() {
    use idp_ratelimit::engine::{Engine, RequestFacts, Verdict};
    use idp_ratelimit::limiter::MICROS_PER_SEC;
    use idp_ratelimit::store::MemoryStore;
    use std::borrow::Cow;

    struct Get;
    impl RequestFacts for Get {
        fn method(&self) -> Option<Cow<'_, str>> {
            Some("GET".into())
        }
        fn path(&self) -> Option<Cow<'_, str>> {
            Some("/v1/things".into())
        }
        fn authority(&self) -> Option<Cow<'_, str>> {
            Some("acme.example.com".into())
        }
        fn header(&self, _: &str) -> Option<Cow<'_, str>> {
            None
        }
        fn source_address(&self) -> Option<String> {
            None
        }
    }
    let header = |v: &Verdict, name: &str| -> Option<u64> {
        let Verdict::Reply(r) = v else { return None };
        r.headers
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
    };
    let mut rng = Rng(0x0ac0_0b5e);
    let mut refusals = 0;
    for _ in 0..cases() / 100 {
        let dialect = *rng.pick(&["okta", "auth0"]);
        let algorithm = *rng.pick(&["fixed_window", "token_bucket"]);
        let limit = 1 + rng.next() % 20;
        let window = 1 + rng.next() % 600;
        let json = format!(
            r#"{{"vendor": "custom", "dialect": "{dialect}", "routes": [{{"route": "/v1/*",
                "limit": {limit}, "window": {window}, "algorithm": "{algorithm}"}}]}}"#
        );
        let engine = Engine::new(config::parse(json.as_bytes()).unwrap(), "p/").unwrap();
        let store = MemoryStore::new();
        engine.create_keys(&store).unwrap();
        let window_us = window * MICROS_PER_SEC;
        let mut now = 1_700_000_000 * MICROS_PER_SEC + rng.next() % MICROS_PER_SEC;
        for _ in 0..100 {
            let d = engine.decide(&store, &Get, now, 0);
            if matches!(d.verdict, Verdict::Reply(_)) {
                refusals += 1;
                // The first admitting second, as each dialect spells it. Okta's Reset is the
                // window's end rounded down (as Okta sends it), so the first second sure to
                // admit is Reset + 1 (what Okta's SDKs wait for), and just before Reset the
                // window is surely still closed.
                let (first, before) = if dialect == "auth0" {
                    let secs = header(&d.verdict, "retry-after").unwrap();
                    assert!(secs >= 1, "{json}");
                    let first = now + secs * MICROS_PER_SEC;
                    (first, first - MICROS_PER_SEC)
                } else {
                    let reset = header(&d.verdict, "x-rate-limit-reset").unwrap() * MICROS_PER_SEC;
                    (reset + MICROS_PER_SEC, reset.saturating_sub(1))
                };
                if before >= now {
                    let d = engine.decide(&store, &Get, before, 0);
                    assert!(
                        matches!(d.verdict, Verdict::Reply(_)),
                        "{json}: refused at {now}, admitted a second before {first}"
                    );
                }
                let d = engine.decide(&store, &Get, first, 0);
                assert!(
                    matches!(d.verdict, Verdict::Forward { .. }),
                    "{json}: refused at {now}, still refused at {first}: {d:?}"
                );
                now = first;
            }
            now += gap_us(&mut rng, window_us, limit);
        }
    }
    assert!(refusals > 100, "the arrivals reach refusals ({refusals})");
}

/// A header value an upstream might send: numbers, near-numbers, dates, junk.
fn random_header_value(rng: &mut Rng) -> Option<String> {
    const PIECES: [&str; 16] = [
        "0",
        "9",
        "600",
        "1795392042",
        "18446744073709551616",
        "-",
        "+",
        " ",
        ",",
        ".",
        "Mon, 23 Nov 2026 00:00:00 GMT",
        "Mon, 23 Nov 2026 00:00:60 GMT",
        "GMT",
        "é",
        "\u{0}",
        "e3",
    ];
    if rng.chance(5) {
        return None;
    }
    // Half the time one piece, so well-formed answers come up too.
    let n = if rng.chance(2) { 1 } else { rng.below(4) };
    Some((0..n).map(|_| *rng.pick(&PIECES)).collect())
}

#[test]
fn arbitrary_upstream_headers_are_read_or_refused_never_trusted_blindly() {
    use idp_ratelimit::response::Dialect;
    use idp_ratelimit::vendor_answer::read;
    let mut rng = Rng(0x15);
    let names = [
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
        "date",
    ];
    let mut usable = 0;
    for _ in 0..cases() {
        let values: Vec<Option<String>> = names
            .iter()
            .map(|_| random_header_value(&mut rng))
            .collect();
        let header = |name: &str| {
            let i = names.iter().position(|n| *n == name)?;
            values[i].clone()
        };
        let dialect = *rng.pick(&[Dialect::Okta, Dialect::Auth0, Dialect::OneLogin]);
        let status = *rng.pick(&[200, 404, 429, 500]);
        if let Ok(a) = read(dialect, status, &header) {
            usable += 1;
            assert!(
                a.limit >= 1 && a.remaining <= a.limit,
                "{a:?} from {values:?}"
            );
            assert!(a.secs_left <= 2 * 86_400, "{a:?} from {values:?}");
            assert_eq!(a.refused, status == 429);
            assert!(!a.refused || a.remaining == 0);
        }
    }
    assert!(usable > 0, "the generator never produced a usable answer");
}
