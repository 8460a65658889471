//! How close each bucket is to its limit: per bucket, the highest share of
//! the (enforced) limit that any one key has used during the current period,
//! exported as the gauge `<stat_prefix>.<bucket id>.peak_used_percent`.
//!
//! One series per bucket, whatever the traffic. The period is the bucket's
//! window, at least a minute (so a scrape every 15-30 s sees each period),
//! aligned to the epoch. Cheap on the request path: the share comes from the
//! value the decision already wrote; each worker keeps its own high-water
//! mark per bucket and only when that rises merges it into one shared-data
//! record per bucket (max within a period, by CAS) and sets the gauge to the
//! merged value: at most about a hundred times per bucket, worker and period.
//! A once-a-second tick sets each gauge from its record, so a gauge falls
//! back to 0 when a period passes without traffic (the counting itself never
//! depends on the tick).

use crate::limiter::{Limit, MICROS_PER_SEC};
use crate::policy::Bucket;
use crate::store::{SharedStore, StoreError};

/// The shortest period a peak covers.
pub const MIN_PERIOD_US: u64 = 60 * MICROS_PER_SEC;

/// The period index `now_us` falls in, for a bucket with `limit`.
pub fn period_of(limit: &Limit, now_us: u64) -> u64 {
    now_us / limit.window_us.max(MIN_PERIOD_US)
}

/// Percent of `limit` used when `remaining` are left, rounded down (100 only
/// when nothing is left).
pub fn used_percent(limit: u64, remaining: u64) -> u8 {
    let used = limit.saturating_sub(remaining);
    (used.saturating_mul(100) / limit.max(1)).min(100) as u8
}

/// A peak: the highest percent seen in one period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    pub period: u64,
    pub percent: u8,
}

const RECORD_BYTES: usize = 9;

fn encode(m: Mark) -> [u8; RECORD_BYTES] {
    let mut b = [0u8; RECORD_BYTES];
    b[..8].copy_from_slice(&m.period.to_le_bytes());
    b[8] = m.percent;
    b
}

fn decode(bytes: &[u8]) -> Option<Mark> {
    let period = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    Some(Mark {
        period,
        percent: *bytes.get(8)?,
    })
}

/// One worker's high-water marks, one per bucket.
#[derive(Clone, Debug, Default)]
pub struct Marks(Vec<Mark>);

impl Marks {
    pub fn new(buckets: usize) -> Marks {
        Marks(vec![Mark::default(); buckets])
    }

    /// Records `percent` for `bucket` in `period`. True when this worker's
    /// mark rose (a new period counts as a rise): only then is it published.
    pub fn observe(&mut self, bucket: usize, period: u64, percent: u8) -> bool {
        let Some(m) = self.0.get_mut(bucket) else {
            return false;
        };
        if period > m.period || (period == m.period && percent > m.percent) {
            *m = Mark { period, percent };
            return true;
        }
        false
    }
}

/// The shared-data records, one per bucket (created at configure time, so the
/// first merge is already a compare-and-swap).
#[derive(Clone, Debug)]
pub struct PeakRecords {
    keys: Vec<String>,
}

// A merge's CAS only fails when another worker raised the record (writers
// only ever raise it), at most 101 times a period: far below the retries
// `store::update` allows.
impl PeakRecords {
    /// `prefix` namespaces the keys like the slot table's.
    pub fn new(prefix: &str, buckets: &[Bucket]) -> PeakRecords {
        PeakRecords {
            keys: buckets
                .iter()
                .map(|b| format!("{prefix}p{:016x}", b.fingerprint))
                .collect(),
        }
    }

    /// Creates the records that are missing; returns how many it created.
    pub fn create_all(&self, store: &dyn SharedStore) -> Result<u32, StoreError> {
        let mut created = 0;
        for key in &self.keys {
            if store.get(key)?.is_none() {
                store.set(key, &encode(Mark::default()), None)?;
                created += 1;
            }
        }
        Ok(created)
    }

    /// Merges `mine` into the bucket's record. Returns the bucket's peak for
    /// `mine.period` (the gauge's new value), or `None` when the record
    /// already belongs to a later period.
    pub fn publish(
        &self,
        store: &dyn SharedStore,
        bucket: usize,
        mine: Mark,
    ) -> Result<Option<u8>, StoreError> {
        let Some(key) = self.keys.get(bucket) else {
            return Ok(None);
        };
        crate::store::update(store, key, |bytes| {
            if let Some(s) = decode(bytes) {
                if s.period > mine.period {
                    return Ok((None, None));
                }
                if s.period == mine.period && s.percent >= mine.percent {
                    return Ok((Some(s.percent), None));
                }
            }
            Ok((Some(mine.percent), Some(encode(mine).to_vec())))
        })
    }

    /// The bucket's peak in `period`: its record's, or 0 if the record is
    /// from an earlier period (nothing seen yet in this one).
    pub fn current(
        &self,
        store: &dyn SharedStore,
        bucket: usize,
        period: u64,
    ) -> Result<u8, StoreError> {
        let Some(key) = self.keys.get(bucket) else {
            return Ok(0);
        };
        Ok(match store.get(key)?.and_then(|(b, _)| decode(&b)) {
            Some(m) if m.period >= period => m.percent,
            _ => 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::Algorithm;
    use crate::policy::Scope;
    use crate::store::MemoryStore;

    fn bucket(id: &str, window_secs: u64) -> Bucket {
        let limit = Limit {
            algorithm: Algorithm::FixedWindow,
            limit: 600,
            window_us: window_secs * MICROS_PER_SEC,
        };
        Bucket::new(id, id, limit, Scope::Host)
    }

    #[test]
    fn used_share_rounds_down_and_reaches_100_only_when_empty() {
        assert_eq!(used_percent(600, 600), 0);
        assert_eq!(used_percent(600, 599), 0);
        assert_eq!(used_percent(600, 120), 80);
        assert_eq!(used_percent(600, 121), 79);
        assert_eq!(used_percent(600, 1), 99);
        assert_eq!(used_percent(600, 0), 100);
        assert_eq!(used_percent(2, 1), 50);
        // Remaining above the limit (an override lowered it) is 0% used.
        assert_eq!(used_percent(5, 9), 0);
        assert_eq!(used_percent(0, 0), 0);
    }

    #[test]
    fn periods_are_the_window_but_at_least_a_minute() {
        let second = bucket("s", 1).limit;
        let hour = bucket("h", 3600).limit;
        let t = 1_795_392_000 * MICROS_PER_SEC; // a whole hour
        assert_eq!(period_of(&second, t), period_of(&second, t + 59_999_999));
        assert_eq!(
            period_of(&second, t) + 1,
            period_of(&second, t + 60_000_000)
        );
        assert_eq!(
            period_of(&hour, t),
            period_of(&hour, t + 3599 * MICROS_PER_SEC)
        );
        assert_eq!(
            period_of(&hour, t) + 1,
            period_of(&hour, t + 3600 * MICROS_PER_SEC)
        );
    }

    #[test]
    fn a_worker_publishes_only_when_its_mark_rises() {
        let mut m = Marks::new(2);
        assert!(m.observe(0, 7, 0), "a new period is a rise");
        assert!(!m.observe(0, 7, 0));
        assert!(m.observe(0, 7, 10));
        assert!(!m.observe(0, 7, 9));
        assert!(
            !m.observe(0, 6, 90),
            "an earlier period never lowers the mark"
        );
        assert!(m.observe(0, 8, 1));
        assert!(m.observe(1, 8, 1), "buckets are independent");
        assert!(!m.observe(2, 8, 1), "no such bucket");
    }

    #[test]
    fn records_keep_the_highest_peak_of_the_latest_period() {
        let store = MemoryStore::new();
        let buckets = [bucket("a", 60), bucket("b", 60)];
        let r = PeakRecords::new("t/", &buckets);
        assert_eq!(r.create_all(&store).unwrap(), 2);
        assert_eq!(r.create_all(&store).unwrap(), 0, "created once");
        let at = |period, percent| Mark { period, percent };
        assert_eq!(r.publish(&store, 0, at(5, 40)).unwrap(), Some(40));
        // Another worker's lower mark in the same period reads the higher one.
        assert_eq!(r.publish(&store, 0, at(5, 30)).unwrap(), Some(40));
        assert_eq!(r.publish(&store, 0, at(5, 95)).unwrap(), Some(95));
        assert_eq!(r.current(&store, 0, 5).unwrap(), 95);
        assert_eq!(r.current(&store, 1, 5).unwrap(), 0, "per bucket");
        // A later period starts afresh; a stale worker cannot bring back the old one.
        assert_eq!(r.current(&store, 0, 6).unwrap(), 0);
        assert_eq!(r.publish(&store, 0, at(6, 10)).unwrap(), Some(10));
        assert_eq!(r.publish(&store, 0, at(5, 99)).unwrap(), None);
        assert_eq!(r.current(&store, 0, 6).unwrap(), 10);
        assert_eq!(
            store.key_count(),
            2,
            "one record per bucket, whatever the traffic"
        );
    }

    #[test]
    fn concurrent_publishers_leave_the_maximum() {
        let store = MemoryStore::new();
        let buckets = [bucket("a", 60)];
        let r = PeakRecords::new("t/", &buckets);
        r.create_all(&store).unwrap();
        std::thread::scope(|s| {
            for w in 0..4u8 {
                let (r, store) = (&r, &store);
                s.spawn(move || {
                    for p in (0..=100u8).filter(|p| p % 4 == w) {
                        let _ = r.publish(
                            store,
                            0,
                            Mark {
                                period: 9,
                                percent: p,
                            },
                        );
                    }
                });
            }
        });
        assert_eq!(r.current(&store, 0, 9).unwrap(), 100);
    }
}
