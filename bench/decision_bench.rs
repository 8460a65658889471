//! Host-side cost of one decision (route match + bucket arithmetic over the
//! in-process `MemoryStore`), without Envoy or wasm. Part of `make bench`;
//! run it alone with `cargo run --release --example decision_bench [N] [RUNS]`.
//!
//! The configurations and paths are those of the Envoy benchmark
//! (bench/run.py): limits raised so that nothing is ever rejected. Prints one
//! Markdown table row per case; the median of RUNS runs of N decisions each.
//! A benchmark, not a test: nothing here asserts on time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use idp_ratelimit::engine::{Engine, RequestFacts, Verdict};
use idp_ratelimit::store::MemoryStore;

/// The system allocator, counting allocations: the decision's heap traffic
/// (in wasm every allocation is dlmalloc's work, a visible share of the cost).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Facts {
    method: &'static str,
    path: &'static str,
}

impl RequestFacts for Facts {
    fn method(&self) -> Option<Cow<'_, str>> {
        Some(self.method.into())
    }
    fn path(&self) -> Option<Cow<'_, str>> {
        Some(self.path.into())
    }
    fn authority(&self) -> Option<Cow<'_, str>> {
        Some("example.okta.com".into())
    }
    fn header(&self, _: &str) -> Option<Cow<'_, str>> {
        None
    }
    fn source_address(&self) -> Option<String> {
        Some("127.0.0.1:40000".to_string())
    }
}

const OKTA: &str = r#"{"vendor": "okta", "plan": "enterprise", "overrides": [
    {"bucket": "okta.management.users", "limit": 1000000000},
    {"bucket": "okta.management.api-v1", "limit": 1000000000},
    {"bucket": "okta.end-user.api-v1", "limit": 1000000000}]}"#;
const AUTH0: &str = r#"{"vendor": "auth0", "plan": "enterprise-prod", "overrides": [
    {"bucket": "auth0.tenant.per-second", "limit": 1000000000},
    {"bucket": "auth0.tenant.per-minute", "limit": 1000000000},
    {"bucket": "auth0.endpoint.users.per-second", "limit": 1000000000},
    {"bucket": "auth0.endpoint.users.per-minute", "limit": 1000000000},
    {"bucket": "auth0.spa.current-user", "limit": 1000000000}]}"#;

struct Case {
    name: &'static str,
    config: &'static str,
    facts: Facts,
}

fn engine(config: &str) -> Result<(Engine, MemoryStore), String> {
    let config = idp_ratelimit::config::parse(config.as_bytes()).map_err(|e| e.to_string())?;
    let engine = Engine::new(config, "idprl/bench/").map_err(|e| format!("{e:?}"))?;
    let store = MemoryStore::new();
    engine.create_keys(&store).map_err(|e| e.to_string())?;
    Ok((engine, store))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn run(case: &Case, n: u64, runs: u64) -> Result<(), String> {
    let (engine, store) = engine(case.config)?;
    // Start of the clock: a fixed epoch time; each decision is 20 µs later
    // (about the pace of the Envoy benchmark), so windows roll as in Envoy.
    let mut now: u64 = 1_767_225_600_000_000;
    let first = engine.decide(&store, &case.facts, now, 0);
    let buckets: Vec<&str> = first
        .counts
        .iter()
        .filter_map(|(b, _)| engine.policy.buckets.get(*b).map(|b| b.id.as_str()))
        .collect();
    let verdict = match &first.verdict {
        Verdict::Unlimited => "unlimited".to_string(),
        Verdict::Forward { headers, .. } => format!("forward, {} headers", headers.len()),
        Verdict::Reply(r) => format!("reply {}", r.status),
        Verdict::Ask(p) => format!(
            "ask the rate-limit service about {} buckets",
            p.remote.len()
        ),
    };
    let mut per_run = Vec::new();
    let mut rejected = 0u64;
    let allocations_before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..runs {
        let start = Instant::now();
        for i in 0..n {
            now += 20;
            let d = engine.decide(&store, black_box(&case.facts), now, i);
            match &d.verdict {
                Verdict::Reply(_) => rejected += 1,
                // The stream ends: what it held in flight is given back (Okta's
                // concurrency limit), as Envoy's on_log does.
                Verdict::Forward { in_flight, .. } if !in_flight.is_empty() => {
                    engine.release(&store, in_flight, now, &mut Vec::new());
                }
                _ => {}
            }
            black_box(d);
        }
        per_run.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    let allocations =
        (ALLOCATIONS.load(Ordering::Relaxed) - allocations_before) as f64 / (n * runs) as f64;
    let raw: Vec<String> = per_run.iter().map(|x| format!("{x:.0}")).collect();
    println!(
        "| {} | {} {} | {} | {} | {:.0} | {allocations:.1} | {} |",
        case.name,
        case.facts.method,
        case.facts.path,
        if buckets.is_empty() {
            "(none)".to_string()
        } else {
            buckets.join(", ")
        },
        verdict,
        median(per_run),
        raw.join(" "),
    );
    if rejected > 0 {
        eprintln!(
            "warning: {}: {rejected} decisions were rejections",
            case.name
        );
    }
    Ok(())
}

fn main() {
    let n = arg(1, 200_000).max(1);
    let runs = arg(2, 7).max(1);
    let cases = [
        Case {
            name: "okta enterprise",
            config: OKTA,
            facts: Facts {
                method: "GET",
                path: "/api/v1/users",
            },
        },
        Case {
            name: "auth0 enterprise-prod",
            config: AUTH0,
            facts: Facts {
                method: "GET",
                path: "/api/v2/users",
            },
        },
        Case {
            name: "okta enterprise, unmatched path",
            config: OKTA,
            facts: Facts {
                method: "GET",
                path: "/bench/unmatched",
            },
        },
    ];
    println!("decision_bench: {n} decisions per run, median of {runs} runs (MemoryStore)");
    println!();
    println!("| case | request | buckets counted | verdict | ns/decision (median) | allocations/decision | ns/decision per run |");
    println!("|---|---|---|---|---:|---:|---|");
    for case in &cases {
        if let Err(e) = run(case, n, runs) {
            eprintln!("{}: {e}", case.name);
            std::process::exit(1);
        }
    }
}
