//! The circuit breaker in front of the rate-limit service, shared by every
//! worker through one shared-data key: after `FAILURES_TO_OPEN` failures in a
//! row, nobody calls for `BACKOFF_US`; then exactly one request (the one
//! whose compare-and-swap claims the probe) calls, and its answer closes the
//! breaker or opens it again. So a dead service costs one timeout per
//! back-off, not one per request.

use crate::store::{SharedStore, StoreError};

pub const FAILURES_TO_OPEN: u64 = 3;
pub const BACKOFF_US: u64 = 1_000_000;

/// [failures in a row, open until (µs since the epoch; 0 = closed)].
type State = [u64; 2];

fn decode(bytes: &[u8]) -> State {
    let word = |i: usize| {
        bytes
            .get(i * 8..i * 8 + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes)
    };
    [word(0), word(1)]
}

fn encode(s: State) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&s[0].to_le_bytes());
    out[8..].copy_from_slice(&s[1].to_le_bytes());
    out
}

pub struct Breaker {
    key: String,
}

impl Breaker {
    /// `prefix` namespaces the key like the counters (one per filter instance).
    pub fn new(prefix: &str) -> Breaker {
        Breaker {
            key: format!("{prefix}rls-breaker"),
        }
    }

    fn read(&self, store: &dyn SharedStore) -> Result<State, StoreError> {
        Ok(store
            .get(&self.key)?
            .map_or([0, 0], |(bytes, _)| decode(&bytes)))
    }

    /// Applies `change` with compare-and-swap (`None`: nothing to write).
    fn update(
        &self,
        store: &dyn SharedStore,
        change: impl Fn(State) -> Option<State>,
    ) -> Result<(), StoreError> {
        crate::store::update(store, &self.key, |bytes| {
            let state = if bytes.is_empty() {
                [0, 0]
            } else {
                decode(bytes)
            };
            Ok(((), change(state).map(|next| encode(next).to_vec())))
        })
    }

    /// Whether this request may call the service at `now_us`.
    pub fn allows(&self, store: &dyn SharedStore, now_us: u64) -> Result<bool, StoreError> {
        crate::store::update(store, &self.key, |bytes| {
            let [failures, open_until] = if bytes.is_empty() {
                [0, 0]
            } else {
                decode(bytes)
            };
            if open_until == 0 {
                return Ok((true, None));
            }
            if now_us < open_until {
                return Ok((false, None));
            }
            // Back-off over: claim the one probe, keeping others out meanwhile.
            let claimed = [failures, now_us.saturating_add(BACKOFF_US)];
            Ok((true, Some(encode(claimed).to_vec())))
        })
    }

    /// The service answered: close (written only if it was not closed).
    pub fn success(&self, store: &dyn SharedStore) -> Result<(), StoreError> {
        self.update(store, |s| (s != [0, 0]).then_some([0, 0]))
    }

    /// The service failed at `now_us`; `Ok(true)` if the breaker is now open.
    pub fn failure(&self, store: &dyn SharedStore, now_us: u64) -> Result<bool, StoreError> {
        self.update(store, |[failures, _]| {
            let failures = failures.saturating_add(1);
            let open_until = if failures >= FAILURES_TO_OPEN {
                now_us.saturating_add(BACKOFF_US)
            } else {
                0
            };
            Some([failures, open_until])
        })?;
        let [_, open_until] = self.read(store)?;
        Ok(open_until > now_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const T: u64 = 1_000_000_000_000;

    #[test]
    fn opens_after_repeated_failures_and_lets_one_probe_through() {
        let s = MemoryStore::new();
        let b = Breaker::new("p/");
        assert!(b.allows(&s, T).unwrap());
        assert!(!b.failure(&s, T).unwrap());
        assert!(!b.failure(&s, T).unwrap());
        assert!(b.allows(&s, T).unwrap());
        assert!(b.failure(&s, T).unwrap());
        assert!(!b.allows(&s, T + 1).unwrap());
        assert!(!b.allows(&s, T + BACKOFF_US - 1).unwrap());
        // Back-off over: one probe, the rest wait for it.
        assert!(b.allows(&s, T + BACKOFF_US).unwrap());
        assert!(!b.allows(&s, T + BACKOFF_US + 1).unwrap());
        // The probe fails: open again for a full back-off.
        assert!(b.failure(&s, T + BACKOFF_US + 2).unwrap());
        assert!(!b.allows(&s, T + 2 * BACKOFF_US).unwrap());
        assert!(b.allows(&s, T + 2 * BACKOFF_US + 2).unwrap());
        // It answers: closed, and the failure count starts over.
        b.success(&s).unwrap();
        assert!(b.allows(&s, T + 2 * BACKOFF_US + 3).unwrap());
        assert!(!b.failure(&s, T + 3 * BACKOFF_US).unwrap());
    }

    #[test]
    fn a_closed_breaker_costs_no_write_on_success() {
        let s = MemoryStore::new();
        let b = Breaker::new("p/");
        b.success(&s).unwrap();
        assert_eq!(s.key_count(), 0);
        assert_eq!(decode(&[1, 2]), [0, 0]);
    }
}
