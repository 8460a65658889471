//! What the vendor last said about one (bucket, key), kept in the slot table
//! beside the filter's own counter (`"upstream": "vendor"`), and the rule
//! that admits requests against it.
//!
//! A record is the vendor's `Remaining` and limit, the local time its reset
//! falls due (seconds left by the vendor's clock, counted from the answer's
//! arrival), the answer's `Date`, and the requests this filter admitted
//! against it whose answers have not come back (in flight). Until the reset,
//! a request is admitted only while `remaining − in flight` is above the
//! reserve `headroom_percent` keeps; a vendor 429 is a record with nothing
//! remaining. A request in flight may already be in the vendor's count, so
//! the estimate errs low, never high, with requests in parallel; with one at
//! a time it is exact. After the reset the record is stale, its way is free,
//! and the filter's own count alone decides until the next answer. Every
//! change is one compare-and-swap of the slot group, and the decision is made
//! on the value written.

use crate::limiter::{State, MICROS_PER_SEC};
use crate::store::{SharedStore, StoreError};
use crate::table::SlotTable;
use crate::vendor_answer::Answer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Local time (µs) the vendor's counter resets.
    pub reset_us: u64,
    /// The answer's `Date` (0: unknown).
    pub date_secs: u64,
    pub limit: u64,
    pub remaining: u64,
    /// Requests admitted against the record whose answers are still to come.
    pub in_flight: u64,
}

const LOW: u64 = 0xffff_ffff;

impl Record {
    fn encode(&self) -> State {
        [
            self.reset_us,
            (self.date_secs.min(LOW) << 32) | self.limit.min(LOW),
            (self.remaining.min(LOW) << 32) | self.in_flight.min(LOW),
        ]
    }

    fn decode(s: State) -> Record {
        Record {
            reset_us: s[0],
            date_secs: s[1] >> 32,
            limit: s[1] & LOW,
            remaining: s[2] >> 32,
            in_flight: s[2] & LOW,
        }
    }

    /// What must stay unspent: `(100 − headroom_percent)%` of the limit.
    fn reserve(&self, headroom_percent: u64) -> u64 {
        self.limit * 100u64.saturating_sub(headroom_percent) / 100
    }
}

/// The fingerprint of the learned record of the counter `key_fingerprint`:
/// its own entry in the same table, so learned records share the table's cap.
pub fn fingerprint(key_fingerprint: u64) -> u64 {
    crate::hash::fingerprint(&[b"learned", &key_fingerprint.to_le_bytes()])
}

/// How long a record without an answer yet keeps its in-flight count (a
/// request out longer than this has surely been answered or dropped).
const PENDING_US: u64 = 60 * MICROS_PER_SEC;

/// What a live record said about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No record and no room for one: the filter's own count decides.
    NoRecord,
    /// No vendor answer yet: the filter's own count decides, and the request
    /// is counted in flight, so the first answer is not read as if it were
    /// the only request out.
    Pending,
    /// Admitted and counted in the record; `limit` is the vendor's.
    Admitted { limit: u64 },
    /// The vendor's quota (less the reserve) is spent until `reset_us`.
    Refused { limit: u64, reset_us: u64 },
}

/// The admission rule on a stored record (pure): the verdict and the record
/// to write when admitted.
pub fn admit(
    state: Option<State>,
    headroom_percent: u64,
    now_us: u64,
) -> (Verdict, Option<Record>) {
    let pending_until = now_us.saturating_add(PENDING_US);
    let r = match state.map(Record::decode).filter(|r| r.reset_us > now_us) {
        None => Record {
            reset_us: pending_until,
            date_secs: 0,
            limit: 0,
            remaining: 0,
            in_flight: 1,
        },
        Some(r) if r.limit == 0 => Record {
            reset_us: r.reset_us.max(pending_until),
            in_flight: r.in_flight + 1,
            ..r
        },
        Some(r) => return admit_against(r, headroom_percent),
    };
    (Verdict::Pending, Some(r))
}

/// The rule on a record that holds a vendor answer.
fn admit_against(r: Record, headroom_percent: u64) -> (Verdict, Option<Record>) {
    if r.remaining.saturating_sub(r.in_flight) > r.reserve(headroom_percent) {
        let next = Record {
            in_flight: r.in_flight + 1,
            ..r
        };
        (Verdict::Admitted { limit: r.limit }, Some(next))
    } else {
        let verdict = Verdict::Refused {
            limit: r.limit,
            reset_us: r.reset_us,
        };
        (verdict, None)
    }
}

/// What an answer arriving at `now_us` does to the stored record (pure), and
/// the record to write, if any. `took`: the answered request was admitted
/// against the record (so it is no longer in flight). The newest answer wins:
/// a later `Date`; on equal dates the later arrival, except that within one
/// vendor window (the same `Date` and reset) the vendor's count only grows,
/// so the smaller `Remaining` is the later count whatever order the answers
/// came back in.
pub fn learn(
    state: Option<State>,
    answer: &Answer,
    took: bool,
    now_us: u64,
) -> (Learned, Option<Record>) {
    let stored = state.map(Record::decode).filter(|r| r.reset_us > now_us);
    let in_flight = stored.map_or(0, |r| r.in_flight.saturating_sub(u64::from(took)));
    let reset_us = now_us.saturating_add(answer.secs_left.saturating_mul(MICROS_PER_SEC));
    let Some(r) = stored.filter(|r| r.limit != 0) else {
        // Nothing stored, or only requests in flight without an answer yet.
        return (
            Learned::Stored,
            Some(Record::from(answer, reset_us, in_flight)),
        );
    };
    if r.date_secs != 0 && answer.date_secs != 0 && answer.date_secs < r.date_secs {
        let next = (in_flight != r.in_flight).then_some(Record { in_flight, ..r });
        return (Learned::Older, next);
    }
    let mut next = Record::from(answer, reset_us, in_flight);
    if r.date_secs == answer.date_secs && r.reset_us.abs_diff(reset_us) < 2 * MICROS_PER_SEC {
        next.remaining = next.remaining.min(r.remaining);
    }
    (Learned::Stored, Some(next))
}

impl Record {
    fn from(answer: &Answer, reset_us: u64, in_flight: u64) -> Record {
        Record {
            reset_us,
            date_secs: answer.date_secs,
            limit: answer.limit,
            remaining: answer.remaining,
            in_flight,
        }
    }
}

/// Applies the admission rule to the record `fingerprint` in `table`.
pub fn take(
    table: &SlotTable,
    store: &dyn SharedStore,
    fingerprint: u64,
    headroom_percent: u64,
    now_us: u64,
) -> Result<Verdict, StoreError> {
    let verdict = table.update_entry(store, fingerprint, now_us, |state| {
        let (verdict, next) = admit(state, headroom_percent, now_us);
        (verdict, next.map(|r| (r.encode(), r.reset_us)))
    })?;
    // No room in the group for a new record.
    Ok(verdict.unwrap_or(Verdict::NoRecord))
}

/// Takes one request off the record's in-flight count (a later bucket
/// refused it, or it ended without a usable answer).
pub fn give_back(
    table: &SlotTable,
    store: &dyn SharedStore,
    fingerprint: u64,
    now_us: u64,
) -> Result<(), StoreError> {
    table.update_entry(store, fingerprint, now_us, |state| {
        let next = state.map(Record::decode).and_then(|r| {
            (r.in_flight > 0).then(|| Record {
                in_flight: r.in_flight - 1,
                ..r
            })
        });
        ((), next.map(|r| (r.encode(), r.reset_us)))
    })?;
    Ok(())
}

/// What storing an answer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    Stored,
    /// A newer answer was already stored.
    Older,
    /// Every way of the record's group holds a live key: not stored (the
    /// filter's own count still bounds the key).
    NoRoom,
}

/// Stores the vendor's answer for the record `fingerprint` (`took`: see `learn`).
pub fn store_answer(
    table: &SlotTable,
    store: &dyn SharedStore,
    fingerprint: u64,
    answer: &Answer,
    took: bool,
    now_us: u64,
) -> Result<Learned, StoreError> {
    let done = table.update_entry(store, fingerprint, now_us, |state| {
        let (learned, next) = learn(state, answer, took, now_us);
        (learned, next.map(|r| (r.encode(), r.reset_us)))
    })?;
    Ok(done.unwrap_or(Learned::NoRoom))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const NOW: u64 = 1_795_392_000 * MICROS_PER_SEC;
    const DATE: u64 = 1_795_392_000;
    const S: u64 = MICROS_PER_SEC;

    fn answer(limit: u64, remaining: u64, secs_left: u64, date_secs: u64) -> Answer {
        Answer {
            limit,
            remaining,
            secs_left,
            date_secs,
            refused: false,
        }
    }

    fn setup() -> (SlotTable, MemoryStore) {
        let t = SlotTable::new("t/", 16);
        let s = MemoryStore::new();
        t.create_all(&s).unwrap();
        (t, s)
    }

    /// Takes until refused; returns how many were admitted (all left in flight).
    fn admitted(t: &SlotTable, s: &MemoryStore, fp: u64, headroom: u64, now: u64) -> u64 {
        let mut n = 0;
        while let Verdict::Admitted { .. } = take(t, s, fp, headroom, now).unwrap() {
            n += 1;
            assert!(n < 100_000);
        }
        n
    }

    fn stored(t: &SlotTable, s: &MemoryStore, fp: u64, a: Answer, took: bool) -> Learned {
        store_answer(t, s, fp, &a, took, NOW).unwrap()
    }

    #[test]
    fn one_request_at_a_time_admits_exactly_what_the_vendor_has_left() {
        let (t, s) = setup();
        let fp = fingerprint(7);
        // The first request goes out before any answer; the vendor says 10 left after it.
        assert_eq!(take(&t, &s, fp, 100, NOW), Ok(Verdict::Pending));
        assert_eq!(
            stored(&t, &s, fp, answer(600, 10, 42, DATE), true),
            Learned::Stored
        );
        let mut left = 10;
        while let Ok(Verdict::Admitted { limit: 600 }) = take(&t, &s, fp, 100, NOW) {
            left -= 1;
            stored(&t, &s, fp, answer(600, left, 42, DATE), true);
        }
        assert_eq!(left, 0);
        assert_eq!(
            take(&t, &s, fp, 100, NOW + 41 * S),
            Ok(Verdict::Refused {
                limit: 600,
                reset_us: NOW + 42 * S
            })
        );
        // At the vendor's reset the record stops deciding.
        assert_eq!(take(&t, &s, fp, 100, NOW + 42 * S), Ok(Verdict::Pending));
    }

    #[test]
    fn requests_in_flight_count_against_what_is_left() {
        let (t, s) = setup();
        let fp = fingerprint(7);
        stored(&t, &s, fp, answer(600, 5, 60, DATE), false);
        assert_eq!(admitted(&t, &s, fp, 100, NOW), 5);
        // Three of the five come back, out of order (the vendor counted 4, 3, 2 left):
        // the smallest is the vendor's latest count, and 2 are still in flight.
        for left in [2, 4, 3] {
            stored(&t, &s, fp, answer(600, left, 60, DATE), true);
        }
        assert_eq!(admitted(&t, &s, fp, 100, NOW), 0);
        // The last two come back: nothing was left.
        for left in [1, 0] {
            stored(&t, &s, fp, answer(600, left, 60, DATE), true);
        }
        assert_eq!(admitted(&t, &s, fp, 100, NOW), 0);
        // Requests that never got an answer leave the in-flight count too.
        stored(&t, &s, fp, answer(600, 4, 59, DATE + 1), false);
        assert_eq!(admitted(&t, &s, fp, 100, NOW), 4);
        for _ in 0..3 {
            give_back(&t, &s, fp, NOW).unwrap();
        }
        assert_eq!(admitted(&t, &s, fp, 100, NOW), 3);
    }

    #[test]
    fn requests_out_before_the_first_answer_stay_in_flight() {
        let (t, s) = setup();
        let fp = fingerprint(7);
        for _ in 0..3 {
            assert_eq!(take(&t, &s, fp, 100, NOW), Ok(Verdict::Pending));
        }
        // The first answer (5 left) comes back while two others are still out.
        stored(&t, &s, fp, answer(600, 5, 60, DATE), true);
        assert_eq!(admitted(&t, &s, fp, 100, NOW), 3);
        // Without room for a record, the filter's own count alone decides.
        let t = SlotTable::new("u/", 1);
        t.create_all(&s).unwrap();
        for k in 0..4 {
            assert_eq!(take(&t, &s, fingerprint(k), 100, NOW), Ok(Verdict::Pending));
        }
        assert_eq!(
            take(&t, &s, fingerprint(9), 100, NOW),
            Ok(Verdict::NoRecord)
        );
    }

    #[test]
    fn headroom_keeps_a_reserve_of_the_vendors_limit() {
        let (t, s) = setup();
        let fp = fingerprint(7);
        // 90%: 60 of the vendor's 600 stay unspent; 100 left means 40 to spend.
        stored(&t, &s, fp, answer(600, 100, 60, DATE), false);
        assert_eq!(admitted(&t, &s, fp, 90, NOW), 40);
        for left in (60..100).rev() {
            stored(&t, &s, fp, answer(600, left, 60, DATE), true);
        }
        assert_eq!(admitted(&t, &s, fp, 90, NOW), 0);
    }

    #[test]
    fn the_newest_answer_wins_by_date_then_arrival() {
        let (t, s) = setup();
        let fp = fingerprint(7);
        stored(&t, &s, fp, answer(600, 5, 60, DATE), false);
        // A later Date (a new window at the vendor) replaces it, even with more left...
        stored(&t, &s, fp, answer(600, 500, 59, DATE + 1), false);
        assert_eq!(admitted(&t, &s, fp, 100, NOW), 500);
        // ...an earlier Date arriving late only leaves the in-flight count.
        assert_eq!(
            stored(&t, &s, fp, answer(600, 599, 60, DATE), true),
            Learned::Older
        );
        assert_eq!(admitted(&t, &s, fp, 100, NOW), 1);
        // The same Date with another reset is another window: the later arrival wins...
        let other = fingerprint(8);
        stored(&t, &s, other, answer(600, 5, 60, DATE), false);
        stored(&t, &s, other, answer(600, 9, 30, DATE), false);
        assert_eq!(admitted(&t, &s, other, 100, NOW), 9);
        // ...in the same window the vendor's count only grows: the smaller figure stands.
        let third = fingerprint(9);
        stored(&t, &s, third, answer(600, 5, 60, DATE), false);
        stored(&t, &s, third, answer(600, 9, 60, DATE), false);
        assert_eq!(admitted(&t, &s, third, 100, NOW), 5);
    }

    #[test]
    fn a_vendor_429_refuses_until_its_reset() {
        let (t, s) = setup();
        let fp = fingerprint(7);
        let refused = Answer {
            refused: true,
            ..answer(600, 0, 5, DATE)
        };
        stored(&t, &s, fp, refused, false);
        assert_eq!(admitted(&t, &s, fp, 100, NOW + 5 * S - 1), 0);
        assert_eq!(take(&t, &s, fp, 100, NOW + 5 * S), Ok(Verdict::Pending));
    }

    #[test]
    fn give_back_stops_at_zero_and_needs_a_record() {
        let (t, s) = setup();
        let fp = fingerprint(7);
        stored(&t, &s, fp, answer(600, 2, 60, DATE), false);
        assert_eq!(admitted(&t, &s, fp, 100, NOW), 2);
        for _ in 0..5 {
            give_back(&t, &s, fp, NOW).unwrap();
        }
        assert_eq!(admitted(&t, &s, fp, 100, NOW), 2);
        // Without a record there is nothing to give back, and nothing is written.
        let groups = |s: &MemoryStore| {
            (0..16)
                .map(|g| s.get(&format!("t/g{g}")).unwrap())
                .collect::<Vec<_>>()
        };
        let before = groups(&s);
        give_back(&t, &s, fingerprint(8), NOW).unwrap();
        assert_eq!(groups(&s), before);
    }

    #[test]
    fn records_share_the_tables_cap() {
        let t = SlotTable::new("t/", 1);
        let s = MemoryStore::new();
        t.create_all(&s).unwrap();
        let results: Vec<Learned> = (0..6)
            .map(|k| stored(&t, &s, fingerprint(k), answer(600, 9, 60, DATE), false))
            .collect();
        assert_eq!(results.iter().filter(|l| **l == Learned::Stored).count(), 4);
        assert_eq!(results.iter().filter(|l| **l == Learned::NoRoom).count(), 2);
        // The group and the overflow cell.
        assert_eq!(s.key_count(), 2);
    }

    #[test]
    fn parallel_takes_never_exceed_what_was_left() {
        let (t, s) = setup();
        let fp = fingerprint(7);
        stored(&t, &s, fp, answer(600, 300, 60, DATE), false);
        let total: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| admitted(&t, &s, fp, 100, NOW)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(total, 300);
    }

    #[test]
    fn encoding_round_trips() {
        let r = Record {
            reset_us: NOW + 5,
            date_secs: DATE,
            limit: 1200,
            remaining: 1199,
            in_flight: 3,
        };
        assert_eq!(Record::decode(r.encode()), r);
    }
}
