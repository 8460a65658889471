//! The bucket arithmetic under arbitrary limits, windows and clocks (steps
//! back and forward included): never a panic, and never more admitted than
//! the algorithm allows.
#![no_main]
use idp_ratelimit::limiter::{Algorithm, Limit, State};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let algorithm = [Algorithm::FixedWindow, Algorithm::TokenBucket, Algorithm::Concurrency, Algorithm::InFlight][usize::from(data[0]) % 4];
    let limit = u64::from(u16::from_le_bytes([data[1], data[2]])).max(1);
    let window_us = u64::from(u32::from_le_bytes([data[3], data[4], data[5], data[6]])).max(1);
    let l = Limit { algorithm, limit, window_us };
    let mut now: u64 = 1_700_000_000_000_000;
    let mut state: Option<State> = None;
    let mut taken: Vec<State> = Vec::new();
    // Admits, net of releases that gave something back, since `now` last
    // changed: without time passing nothing refills, so this stays <= limit.
    let mut net_at_same_now = 0i64;
    for chunk in data[7..].chunks(2) {
        let op = chunk[0];
        let arg = u64::from(*chunk.get(1).unwrap_or(&0));
        match op % 4 {
            0 => {
                let (out, next) = l.acquire(state, now);
                assert!(out.remaining <= l.limit);
                if out.admitted {
                    let next = next.expect("an admit writes state");
                    taken.push(next);
                    state = Some(next);
                    net_at_same_now += 1;
                    if algorithm != Algorithm::Concurrency {
                        assert!(net_at_same_now <= l.limit as i64, "{net_at_same_now} > {}", l.limit);
                    }
                } else {
                    assert!(next.is_none());
                    assert_eq!(out.remaining, 0);
                    assert!(out.retry_after_secs(now) >= 1);
                }
            }
            1 | 2 => {
                // The clock moves forward, or steps back, by a fraction or
                // multiple of the window (refilling, or by design after a
                // step back of over a window, granting a fresh bucket).
                let step = window_us.saturating_mul(arg) / 16;
                let next = if op % 4 == 1 { now.saturating_add(step) } else { now.saturating_sub(step) };
                if next != now {
                    net_at_same_now = 0;
                }
                now = next;
            }
            _ => {
                if let Some(t) = taken.pop() {
                    if let Some(next) = l.release(state, t, now) {
                        state = Some(next);
                        net_at_same_now -= 1;
                    }
                }
                let peek = l.peek(state, now);
                assert!(peek.remaining <= l.limit);
                if let Some(s) = state {
                    let _ = l.is_stale(s, now);
                }
            }
        }
    }
});
