//! Limiter arithmetic: pure functions from (stored state, now) to a decision and
//! the state to write back. No I/O and no clock reads, so every boundary is
//! unit-testable with an injected time. Times are microseconds since the epoch.

/// Three machine words of per-key state; the meaning depends on the algorithm.
pub type State = [u64; 3];

pub const MICROS_PER_SEC: u64 = 1_000_000;

/// Whole seconds in `us`, rounded down (a real division in wasm: divide.rs).
pub fn whole_secs(us: u64) -> u64 {
    crate::divide::divide(us, MICROS_PER_SEC)
}

/// How a bucket counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Fixed window that opens at the first request after the previous one
    /// ended (Okta per-minute, OneLogin per-hour). State: [start, count, 0].
    FixedWindow,
    /// Token bucket refilled evenly, one token every `window / limit`
    /// (Auth0), kept as GCRA. State: [theoretical arrival time, 0, 0].
    TokenBucket,
    /// At most `limit` (<= 3) holds active at once, each released after
    /// `window` or explicitly (Auth0 import jobs). State: up to 3 expiry times.
    Concurrency,
    /// At most `limit` requests in flight at once, each given back when its
    /// stream ends (Okta's concurrency limit). State: [count, last change, 0].
    /// A count that no request has changed for `window` is dropped, so a
    /// VM that died with requests in flight cannot lock a key out for good.
    InFlight,
}

impl Algorithm {
    /// Stable tag mixed into slot fingerprints, so a bucket that changes
    /// algorithm never reads another algorithm's state.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::FixedWindow => "fw",
            Algorithm::TokenBucket => "tb",
            Algorithm::Concurrency => "cc",
            Algorithm::InFlight => "if",
        }
    }

    /// Whether a key that leaves the overflow entry starts from its state.
    /// Not for in-flight counts: the requests counted there are given back
    /// there, so copying them would count them twice, never to be released.
    pub fn inherits_overflow(self) -> bool {
        self != Algorithm::InFlight
    }
}

/// The numbers that define one bucket's arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub algorithm: Algorithm,
    /// Requests admitted per window (bucket size for a token bucket). >= 1.
    pub limit: u64,
    /// Window length in microseconds (refill period for a token bucket,
    /// hold time for concurrency). >= 1.
    pub window_us: u64,
}

/// What a bucket said about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub admitted: bool,
    /// Requests still admissible after this one (0 when rejected).
    pub remaining: u64,
    /// When the bucket next gains capacity: the window's end (fixed window),
    /// the next token (token bucket), the earliest release (concurrency).
    /// Microseconds since the epoch; equals `now` when nothing is pending.
    pub reset_us: u64,
}

impl Outcome {
    /// Whole seconds until a request would be admitted (at least 1 when rejected).
    pub fn retry_after_secs(&self, now_us: u64) -> u64 {
        let wait = self.reset_us.saturating_sub(now_us);
        wait.div_ceil(MICROS_PER_SEC).max(u64::from(!self.admitted))
    }
}

impl Limit {
    fn interval_us(&self) -> u64 {
        (self.window_us / self.limit.max(1)).max(1)
    }

    /// Decides one request. `state` is `None` for a fresh key. Returns the
    /// outcome and, when admitted, the state to write (a rejection changes nothing).
    pub fn acquire(&self, state: Option<State>, now: u64) -> (Outcome, Option<State>) {
        match self.algorithm {
            Algorithm::FixedWindow => self.fixed_window(state, now),
            Algorithm::TokenBucket => self.token_bucket(state, now),
            Algorithm::Concurrency => self.concurrency(state, now),
            Algorithm::InFlight => self.in_flight(state, now),
        }
    }

    /// What the bucket looks like now, without taking anything from it.
    pub fn peek(&self, state: Option<State>, now: u64) -> Outcome {
        match self.algorithm {
            Algorithm::FixedWindow => match self.live_window(state, now) {
                Some([start, count, _]) => Outcome {
                    admitted: count < self.limit,
                    remaining: self.limit.saturating_sub(count),
                    reset_us: start.saturating_add(self.window_us),
                },
                None => self.full(now),
            },
            Algorithm::TokenBucket => {
                let now = self.bucket_now(state, now);
                let tat = self.clamped_tat(state, now);
                let remaining = self.tokens_at(tat, now);
                Outcome {
                    admitted: remaining > 0,
                    remaining: remaining.min(self.limit),
                    reset_us: self.next_token(tat, now),
                }
            }
            Algorithm::Concurrency => {
                let live = live_holds(state, now);
                let used = live.iter().filter(|&&e| e != 0).count() as u64;
                Outcome {
                    admitted: used < self.limit,
                    remaining: self.limit.saturating_sub(used),
                    reset_us: earliest(&live).unwrap_or(now),
                }
            }
            Algorithm::InFlight => {
                let used = self.in_flight_count(state, now);
                Outcome {
                    admitted: used < self.limit,
                    remaining: self.limit.saturating_sub(used),
                    reset_us: self.in_flight_reset(used, now),
                }
            }
        }
    }

    /// True when the state holds nothing that affects a future decision, so
    /// its slot can be given to another key.
    pub fn is_stale(&self, state: State, now: u64) -> bool {
        match self.algorithm {
            Algorithm::FixedWindow => self.live_window(Some(state), now).is_none(),
            Algorithm::TokenBucket => {
                let [tat, _, _] = state;
                tat <= now
            }
            Algorithm::Concurrency => live_holds(Some(state), now) == [0; 3],
            Algorithm::InFlight => self.in_flight_count(Some(state), now) == 0,
        }
    }

    /// When `state` (as written by `acquire` or `release`) stops mattering,
    /// so its entry can be dropped: the window's end, the time the bucket is
    /// full again, the last hold's expiry, or (in flight) a whole window
    /// without a change; 0 for an in-flight count of 0.
    pub fn stale_after(&self, state: State) -> u64 {
        match self.algorithm {
            Algorithm::FixedWindow => {
                let [start, _, _] = state;
                start.saturating_add(self.window_us)
            }
            Algorithm::TokenBucket => {
                let [tat, _, _] = state;
                tat
            }
            Algorithm::Concurrency => state.iter().copied().max().unwrap_or(0),
            Algorithm::InFlight => match state {
                [0, _, _] => 0,
                [_, changed, _] => changed.saturating_add(self.window_us),
            },
        }
    }

    /// The latest `stale_after` any state written at `now` can have: a
    /// bound on how long an overflow count made now can matter.
    pub fn horizon(&self, now: u64) -> u64 {
        now.saturating_add(self.window_us)
    }

    /// Gives back what `acquire` took at `taken` (the state it wrote), when a
    /// later bucket rejected the same request or an import job was refused
    /// upstream. Returns the state to write, or `None` if there is nothing to undo.
    pub fn release(&self, state: Option<State>, taken: State, now: u64) -> Option<State> {
        let s = state?;
        match self.algorithm {
            Algorithm::FixedWindow => {
                let ([start, count, _], [taken_start, _, _]) = (s, taken);
                // `then`, not `then_some`: the argument must not be computed when the count is 0.
                (start == taken_start && count > 0).then(|| [start, count - 1, 0])
            }
            Algorithm::TokenBucket => {
                let [tat, last, _] = s;
                (tat > now).then_some([tat.saturating_sub(self.interval_us()).max(now), last, 0])
            }
            Algorithm::Concurrency => {
                // The hold this request added is the latest expiry it wrote.
                let hold = taken.iter().copied().max().filter(|&e| e != 0)?;
                let mut out = s;
                let pos = out.iter().position(|&e| e == hold && e != 0)?;
                out[pos] = 0;
                Some(out)
            }
            // Whatever window the count is in: a request that ends is no
            // longer in flight. A dropped (stale) count has nothing to undo.
            Algorithm::InFlight => {
                let count = self.in_flight_count(Some(s), now);
                (count > 0).then(|| [count - 1, now, 0])
            }
        }
    }

    fn full(&self, now: u64) -> Outcome {
        Outcome {
            admitted: true,
            remaining: self.limit,
            reset_us: now,
        }
    }

    /// The stored window if it is still open at `now`. A window that starts
    /// more than one window length in the future (the clock stepped back) is
    /// treated as closed, so a clock step never blocks a key for long.
    fn live_window(&self, state: Option<State>, now: u64) -> Option<State> {
        let s = state?;
        let [start, _, _] = s;
        let open = now < start.saturating_add(self.window_us)
            && start <= now.saturating_add(self.window_us);
        open.then_some(s)
    }

    fn fixed_window(&self, state: Option<State>, now: u64) -> (Outcome, Option<State>) {
        let [start, count, _] = self.live_window(state, now).unwrap_or([now, 0, 0]);
        let reset_us = start.saturating_add(self.window_us);
        if count >= self.limit {
            let out = Outcome {
                admitted: false,
                remaining: 0,
                reset_us,
            };
            return (out, None);
        }
        let count = count + 1;
        let out = Outcome {
            admitted: true,
            remaining: self.limit - count,
            reset_us,
        };
        (out, Some([start, count, 0]))
    }

    /// The theoretical arrival time of a full bucket: exactly `limit` tokens
    /// at `now`. Since the interval is `window / limit` rounded down, `now`
    /// itself would hold `window / interval` tokens, which exceeds `limit`
    /// when `limit` is above the square root of the window in microseconds
    /// (e.g. 30,000/s would burst 30,303); this caps the burst at `limit`.
    fn full_tat(&self, now: u64) -> u64 {
        let span = self.interval_us().saturating_mul(self.limit);
        now.saturating_add(self.window_us.saturating_sub(span))
    }

    /// GCRA's theoretical arrival time, kept within `[full, now + window]`
    /// (full .. empty). A stored time beyond that can only come from a clock
    /// that stepped back: by less than a window, the bucket reads as empty; by
    /// more, the state is not trusted and the bucket starts full (as a fixed
    /// window from the future is), so a clock step never blocks a key for long.
    fn clamped_tat(&self, state: Option<State>, now: u64) -> u64 {
        let full = self.full_tat(now);
        let tat = state.map_or(full, |[tat, _, _]| tat);
        let horizon = now.saturating_add(self.window_us);
        if tat > horizon.saturating_add(self.window_us) {
            return full;
        }
        tat.clamp(full, horizon.max(full))
    }

    /// When the bucket holding `tat` gains its next token (`now` if full).
    fn next_token(&self, tat: u64, now: u64) -> u64 {
        let t = self.interval_us();
        if tat <= self.full_tat(now) {
            return now;
        }
        let have = self.tokens_at(tat, now);
        if have >= self.limit {
            return now;
        }
        tat.saturating_add(have.saturating_add(1).saturating_mul(t))
            .saturating_sub(self.window_us)
    }

    /// Tokens a bucket holding `tat` has at `now`: floor((now + window - tat) / t).
    /// Saturating, like all of this arithmetic: a decision never panics or
    /// wraps, whatever `now` and the stored state (at `u64::MAX` time stops).
    fn tokens_at(&self, tat: u64, now: u64) -> u64 {
        now.saturating_add(self.window_us).saturating_sub(tat) / self.interval_us()
    }

    /// The time a token bucket decides at: `now`, or the time of the
    /// decision last written if that is later (by less than a window).
    /// Workers read the clock before they read the state, so the request
    /// that wins the compare-and-swap second may hold the earlier clock
    /// reading; deciding at it would report one token fewer than are left.
    fn bucket_now(&self, state: Option<State>, now: u64) -> u64 {
        match state {
            Some([_, last, _]) if last > now && last <= now.saturating_add(self.window_us) => last,
            _ => now,
        }
    }

    fn token_bucket(&self, state: Option<State>, now: u64) -> (Outcome, Option<State>) {
        let now = self.bucket_now(state, now);
        let t = self.interval_us();
        let tat = self.clamped_tat(state, now);
        let new_tat = tat.saturating_add(t);
        let horizon = now.saturating_add(self.window_us);
        if new_tat > horizon {
            let out = Outcome {
                admitted: false,
                remaining: 0,
                reset_us: self.next_token(tat, now),
            };
            return (out, None);
        }
        let out = Outcome {
            admitted: true,
            remaining: ((horizon - new_tat) / t).min(self.limit),
            reset_us: self.next_token(new_tat, now),
        };
        (out, Some([new_tat, now, 0]))
    }

    fn concurrency(&self, state: Option<State>, now: u64) -> (Outcome, Option<State>) {
        let mut live = live_holds(state, now);
        let used = live.iter().filter(|&&e| e != 0).count() as u64;
        if used >= self.limit.min(3) {
            let out = Outcome {
                admitted: false,
                remaining: 0,
                reset_us: earliest(&live).unwrap_or(now),
            };
            return (out, None);
        }
        // A unique expiry per hold, so a release removes exactly this one.
        let mut expiry = now.saturating_add(self.window_us);
        while live.contains(&expiry) {
            // At the end of time two holds may share u64::MAX; releasing
            // either then frees one place, which is all a release must do.
            let Some(next) = expiry.checked_add(1) else {
                break;
            };
            expiry = next;
        }
        if let Some(free) = live.iter_mut().find(|e| **e == 0) {
            *free = expiry;
        }
        let out = Outcome {
            admitted: true,
            remaining: self.limit.min(3) - used - 1,
            reset_us: earliest(&live).unwrap_or(now),
        };
        (out, Some(live))
    }
}

impl Limit {
    /// Requests in flight per the stored state (0 once it went stale: no
    /// change for a whole `window`, or a change stamped more than a window in
    /// the future, which only a clock step back produces).
    fn in_flight_count(&self, state: Option<State>, now: u64) -> u64 {
        match state {
            Some([count, changed, _])
                if now < changed.saturating_add(self.window_us)
                    && changed <= now.saturating_add(self.window_us) =>
            {
                count
            }
            _ => 0,
        }
    }

    /// When an in-flight bucket may have room again: no one can know when
    /// the requests in flight end, so (like Okta's estimate) the next second.
    fn in_flight_reset(&self, used: u64, now: u64) -> u64 {
        if used < self.limit {
            now
        } else {
            now.saturating_add(MICROS_PER_SEC)
        }
    }

    fn in_flight(&self, state: Option<State>, now: u64) -> (Outcome, Option<State>) {
        let used = self.in_flight_count(state, now);
        if used >= self.limit {
            let out = Outcome {
                admitted: false,
                remaining: 0,
                reset_us: self.in_flight_reset(used, now),
            };
            return (out, None);
        }
        let out = Outcome {
            admitted: true,
            remaining: self.limit - used - 1,
            reset_us: now,
        };
        (out, Some([used + 1, now, 0]))
    }
}

/// Concurrency holds still active at `now` (expired ones zeroed).
fn live_holds(state: Option<State>, now: u64) -> State {
    let mut s = state.unwrap_or([0; 3]);
    for e in s.iter_mut() {
        if *e <= now {
            *e = 0;
        }
    }
    s
}

fn earliest(holds: &State) -> Option<u64> {
    holds.iter().copied().filter(|&e| e != 0).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = MICROS_PER_SEC;
    const T0: u64 = 1_700_000_000 * SEC;

    fn fixed(limit: u64, secs: u64) -> Limit {
        Limit {
            algorithm: Algorithm::FixedWindow,
            limit,
            window_us: secs * SEC,
        }
    }

    fn bucket(limit: u64, secs: u64) -> Limit {
        Limit {
            algorithm: Algorithm::TokenBucket,
            limit,
            window_us: secs * SEC,
        }
    }

    /// Runs `n` requests at `now`, threading the state; returns admitted count.
    fn run(l: &Limit, state: &mut Option<State>, now: u64, n: u64) -> u64 {
        let mut admitted = 0;
        for _ in 0..n {
            let (out, next) = l.acquire(*state, now);
            if out.admitted {
                admitted += 1;
                *state = next;
            } else {
                assert!(next.is_none(), "a rejection must not write");
            }
        }
        admitted
    }

    #[test]
    fn fixed_window_exact_boundary_and_reset() {
        let l = fixed(100, 60);
        let mut s = None;
        for i in 1..=100 {
            let (out, next) = l.acquire(s, T0 + i);
            assert!(out.admitted, "request {i}");
            assert_eq!(out.remaining, 100 - i);
            assert_eq!(
                out.reset_us,
                T0 + 1 + 60 * SEC,
                "window opens at the first request"
            );
            s = next;
        }
        let (out, next) = l.acquire(s, T0 + 200);
        assert!(!out.admitted);
        assert_eq!(out.remaining, 0);
        assert_eq!(out.reset_us, T0 + 1 + 60 * SEC);
        assert_eq!(out.retry_after_secs(T0 + 200), 60);
        assert!(next.is_none());
        // One microsecond before the end: still closed; at the end: a new window.
        assert!(!l.acquire(s, T0 + 60 * SEC).0.admitted);
        let (out, _) = l.acquire(s, T0 + 1 + 60 * SEC);
        assert!(out.admitted);
        assert_eq!(out.remaining, 99);
        assert_eq!(out.reset_us, T0 + 1 + 120 * SEC);
    }

    #[test]
    fn fixed_window_clock_steps() {
        let l = fixed(2, 60);
        let mut s = None;
        assert_eq!(run(&l, &mut s, T0, 3), 2);
        // Clock steps back 30 s: the open window still holds.
        assert_eq!(run(&l, &mut s, T0 - 30 * SEC, 1), 0);
        // Clock steps back an hour: the stored window is not trusted.
        assert_eq!(run(&l, &mut s, T0 - 3600 * SEC, 3), 2);
        // Clock jumps forward a day: fresh window.
        assert_eq!(run(&l, &mut s, T0 + 86_400 * SEC, 3), 2);
    }

    #[test]
    fn release_of_an_empty_window_is_nothing() {
        let l = fixed(5, 60);
        assert_eq!(l.release(Some([T0, 0, 0]), [T0, 1, 0], T0), None);
    }

    #[test]
    fn fixed_window_staleness_and_release() {
        let l = fixed(5, 60);
        let (_, s) = l.acquire(None, T0);
        let s = s.unwrap();
        assert!(!l.is_stale(s, T0 + 59 * SEC));
        assert!(l.is_stale(s, T0 + 60 * SEC));
        let back = l.release(Some(s), s, T0).unwrap();
        assert_eq!(back[1], 0);
        // A release for an older window does nothing.
        assert!(l.release(Some([T0 + 60 * SEC, 3, 0]), s, T0).is_none());
    }

    #[test]
    fn token_bucket_burst_then_even_refill() {
        // 800/min: burst of 800, then one back every 75 ms.
        let l = bucket(800, 60);
        let mut s = None;
        assert_eq!(run(&l, &mut s, T0, 801), 800);
        let (out, _) = l.acquire(s, T0);
        assert!(!out.admitted);
        assert_eq!(out.reset_us, T0 + 75_000, "next token in 75 ms");
        assert_eq!(out.retry_after_secs(T0), 1);
        assert_eq!(run(&l, &mut s, T0 + 74_999, 1), 0);
        assert_eq!(run(&l, &mut s, T0 + 75_000, 2), 1);
        // After 750 ms, ten more.
        assert_eq!(run(&l, &mut s, T0 + 825_000, 11), 10);
        // After a full minute idle, the bucket is full again, never fuller.
        assert_eq!(run(&l, &mut s, T0 + 200 * SEC, 900), 800);
    }

    /// Two workers: the one that read the clock first writes second. Its
    /// Remaining is the tokens left, not one fewer.
    #[test]
    fn token_bucket_decides_at_the_latest_written_time() {
        let l = bucket(5, 86_400);
        let (first, s1) = l.acquire(None, T0 + 10);
        // Read the clock at T0 + 5, before the first request's T0 + 10.
        let (second, s2) = l.acquire(s1, T0 + 5);
        let (third, _) = l.acquire(s2, T0 + 7);
        assert_eq!(
            [first.remaining, second.remaining, third.remaining],
            [4, 3, 2]
        );
        assert_eq!(l.peek(s2, T0 + 5).remaining, 3);
        // A stored time more than a window ahead (a clock step) is ignored.
        assert_eq!(
            l.acquire(Some([T0, T0 + 90_000 * SEC, 0]), T0).0.remaining,
            4
        );
    }

    #[test]
    fn token_bucket_remaining_and_reset() {
        let l = bucket(10, 1); // 10/s: a token every 100 ms
        let (out, s) = l.acquire(None, T0);
        assert_eq!(out.remaining, 9);
        assert_eq!(out.reset_us, T0 + 100_000);
        let peek = l.peek(s, T0 + 100_000);
        assert_eq!(peek.remaining, 10);
        assert_eq!(peek.reset_us, T0 + 100_000);
        assert!(l.is_stale(s.unwrap(), T0 + 100_000));
        assert!(!l.is_stale(s.unwrap(), T0 + 99_999));
    }

    #[test]
    fn token_bucket_bursts_exactly_the_limit_whatever_the_rounding() {
        // 60 per 100 us: the interval rounds down to 1 us, yet the burst is 60.
        let l = Limit {
            algorithm: Algorithm::TokenBucket,
            limit: 60,
            window_us: 100,
        };
        let mut s = None;
        assert_eq!(run(&l, &mut s, T0, 100), 60);
        // 30,000 per second: interval 33 us, burst 30,000 (not 30,303).
        let l = bucket(30_000, 1);
        let mut s = None;
        assert_eq!(run(&l, &mut s, T0, 31_000), 30_000);
        assert_eq!(l.peek(None, T0).remaining, 30_000);
    }

    #[test]
    fn token_bucket_clock_steps_back() {
        let l = bucket(5, 60);
        let mut s = None;
        assert_eq!(run(&l, &mut s, T0, 5), 5);
        // Ten seconds back: the spent bucket stays spent.
        assert_eq!(run(&l, &mut s, T0 - 10 * SEC, 1), 0);
        // An hour back: the stored state is not trusted; the bucket starts full.
        assert_eq!(run(&l, &mut s, T0 - 3600 * SEC, 6), 5);
        // Forward again past the old state: refills as usual.
        assert_eq!(run(&l, &mut s, T0 + 120 * SEC, 6), 5);
    }

    #[test]
    fn token_bucket_release_returns_one() {
        let l = bucket(2, 60);
        let mut s = None;
        assert_eq!(run(&l, &mut s, T0, 2), 2);
        let taken = s.unwrap();
        s = l.release(s, taken, T0);
        assert_eq!(run(&l, &mut s, T0, 2), 1);
    }

    fn in_flight(limit: u64) -> Limit {
        Limit {
            algorithm: Algorithm::InFlight,
            limit,
            window_us: 300 * SEC,
        }
    }

    #[test]
    fn in_flight_counts_up_to_the_limit_and_down_on_release() {
        let l = in_flight(3);
        let mut s = None;
        for i in 1..=3 {
            let (out, next) = l.acquire(s, T0 + i);
            assert!(out.admitted, "request {i}");
            assert_eq!(out.remaining, 3 - i);
            s = next;
        }
        let (out, next) = l.acquire(s, T0 + 10);
        assert!(!out.admitted && next.is_none());
        assert_eq!(out.remaining, 0);
        assert_eq!(out.reset_us, T0 + 10 + SEC, "estimated: the next second");
        // One ends: room for exactly one more.
        s = l.release(s, [0; 3], T0 + 20);
        assert_eq!(s.map(|x| x[0]), Some(2));
        assert_eq!(run(&l, &mut s, T0 + 21, 2), 1);
        // Releases never go below zero.
        for _ in 0..5 {
            s = l.release(s, [0; 3], T0 + 30).or(s);
        }
        assert_eq!(l.peek(s, T0 + 30).remaining, 3);
        assert!(l.is_stale(s.unwrap(), T0 + 30));
    }

    #[test]
    fn in_flight_count_is_dropped_after_a_window_without_change() {
        let l = in_flight(2);
        let mut s = None;
        assert_eq!(run(&l, &mut s, T0, 3), 2);
        assert!(!l.is_stale(s.unwrap(), T0 + 299 * SEC));
        assert_eq!(run(&l, &mut s, T0 + 299 * SEC, 1), 0);
        // Five minutes with no request starting or ending: the count is not trusted.
        assert!(l.is_stale(s.unwrap(), T0 + 300 * SEC));
        assert_eq!(run(&l, &mut s, T0 + 300 * SEC, 3), 2);
        // A clock step back of more than a window does not lock the key either.
        assert_eq!(run(&l, &mut s, T0 - 3600 * SEC, 3), 2);
        assert!(!Algorithm::InFlight.inherits_overflow());
        assert!(Algorithm::FixedWindow.inherits_overflow());
    }

    #[test]
    fn concurrency_holds_and_releases() {
        let l = Limit {
            algorithm: Algorithm::Concurrency,
            limit: 2,
            window_us: 600 * SEC,
        };
        let (a, s1) = l.acquire(None, T0);
        assert!(a.admitted && a.remaining == 1);
        let (b, s2) = l.acquire(s1, T0 + SEC);
        assert!(b.admitted && b.remaining == 0);
        let (c, none) = l.acquire(s2, T0 + 2 * SEC);
        assert!(!c.admitted && none.is_none());
        assert_eq!(c.reset_us, T0 + 600 * SEC);
        // Releasing the second hold frees one place.
        let s3 = l.release(s2, s2.unwrap(), T0 + 3 * SEC);
        let (d, _) = l.acquire(s3, T0 + 3 * SEC);
        assert!(d.admitted);
        // After the hold time everything is free and the slot is stale.
        assert!(l.is_stale(s2.unwrap(), T0 + 601 * SEC));
        assert!(l.acquire(s2, T0 + 601 * SEC).0.admitted);
    }
    /// Every algorithm at the ends of time, with any stored state: no
    /// overflow (tests build with overflow checks), and a sane outcome.
    #[test]
    fn decisions_are_total_at_the_ends_of_time() {
        let limits = [
            fixed(3, 60),
            bucket(3, 60),
            bucket(30_000, 1),
            Limit {
                algorithm: Algorithm::Concurrency,
                limit: 2,
                window_us: 600 * SEC,
            },
        ];
        let edges = [
            0,
            1,
            T0,
            u64::MAX / 2,
            u64::MAX - 60 * SEC,
            u64::MAX - 1,
            u64::MAX,
        ];
        for l in limits {
            for &now in &edges {
                let mut states = vec![None];
                states.extend(edges.iter().map(|&w| Some([w, w, w])));
                for state in states {
                    let (out, next) = l.acquire(state, now);
                    assert!(out.remaining <= l.limit, "{l:?} {state:?} at {now}");
                    let peek = l.peek(state, now);
                    assert!(peek.remaining <= l.limit, "{l:?} {state:?} at {now}");
                    let _ = out.retry_after_secs(now);
                    if let Some(s) = state {
                        let _ = l.is_stale(s, now);
                        let _ = l.release(Some(s), s, now);
                    }
                    // Threading the written state through more requests.
                    let mut s = next.or(state);
                    for _ in 0..4 {
                        let (_, n) = l.acquire(s, now);
                        s = n.or(s);
                    }
                }
            }
        }
    }

    /// `make fuzz` found this (engine target, artifact `crash-16c5b6e1…`):
    /// a token bucket asked at `now = u64::MAX` overflowed `tat + interval`.
    #[test]
    fn fuzz_crash_16c5b6e1_token_bucket_at_u64_max() {
        let l = bucket(10, 1);
        let (out, s) = l.acquire(None, u64::MAX);
        assert!(!out.admitted || s.is_some());
        let _ = l.acquire(s, u64::MAX);
        let _ = l.peek(s, u64::MAX);
    }
}
