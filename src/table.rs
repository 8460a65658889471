//! A fixed-size table of counting records in shared data, so the number of
//! keys the filter creates is capped whatever the number of distinct clients,
//! and one request costs one read and one compare-and-swap.
//!
//! A request's buckets that count under the same key (its *owner*: the scope
//! and the key, e.g. the org's host) live together. The owner's fingerprint
//! picks one of `groups` shared-data values (a *cell*); the cell holds the
//! entries of at most `WAYS` live owners, one entry per (owner, bucket). The
//! request reads the cell once, decides every bucket on what it read, and
//! writes all of them with one compare-and-swap: every bucket admits and all
//! are written, or (enforce mode) nothing is. Two workers can never place
//! the same owner twice, and no decision stands on a value not written.
//!
//! Entries that no longer matter (see `Limit::stale_after`) are dropped each
//! time a cell is written, so a cell holds only live state. When a cell
//! already holds `WAYS` other live owners, the request counts in the one
//! overflow cell, shared by every owner that did not fit: that errs toward
//! rejecting, never toward admitting. The group is marked first
//! (`overflow_until`), and until the mark passes, an entry created there
//! starts from the overflow's state for its bucket (an upper bound on its
//! own use), so moving out of overflow never hands out extra requests.
//!
//! All keys are created at configure time (`create_all`): Envoy has no
//! create-if-absent, so creating on the request path could let one worker's
//! blind create overwrite another's count.

use crate::limiter::{Limit, Outcome, State};
use crate::store::{self, SharedStore, StoreError};

/// Live owners one cell holds.
pub const WAYS: usize = 4;
const HEADER_BYTES: usize = 8;
const ENTRY_BYTES: usize = 48;
/// The bucket tag of a learned vendor record (`update_entry`).
const RECORD_TAG: u64 = 0x7265_636f_7264;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    owner: u64,
    bucket: u64,
    stale_after: u64,
    state: State,
}

/// One shared-data value: a group's entries, or the overflow's (owner 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Cell {
    /// Until when an owner of this group may have counted in overflow.
    overflow_until: u64,
    entries: Vec<Entry>,
}

fn word(bytes: &[u8], i: usize) -> u64 {
    bytes
        .get(i * 8..i * 8 + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

impl Cell {
    fn decode(bytes: &[u8]) -> Cell {
        let body = bytes.get(HEADER_BYTES..).unwrap_or_default();
        Cell {
            overflow_until: word(bytes, 0),
            entries: body
                .chunks_exact(ENTRY_BYTES)
                .map(|b| Entry {
                    owner: word(b, 0),
                    bucket: word(b, 1),
                    stale_after: word(b, 2),
                    state: [word(b, 3), word(b, 4), word(b, 5)],
                })
                .collect(),
        }
    }

    /// The bytes to write, without the entries that stopped mattering.
    fn encode(&self, now: u64) -> Vec<u8> {
        let live = self.entries.iter().filter(|e| e.stale_after > now);
        let mut out = Vec::with_capacity(HEADER_BYTES + ENTRY_BYTES * self.entries.len());
        out.extend_from_slice(&self.overflow_until.to_le_bytes());
        for e in live {
            let [a, b, c] = e.state;
            for w in [e.owner, e.bucket, e.stale_after, a, b, c] {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    /// The live state of `owner` in `bucket`.
    fn state(&self, owner: u64, bucket: u64, now: u64) -> Option<State> {
        self.entries
            .iter()
            .find(|e| e.owner == owner && e.bucket == bucket && e.stale_after > now)
            .map(|e| e.state)
    }

    /// Whether `owner` has a place here: it holds one, or fewer than `WAYS`
    /// other owners are live.
    fn has_room_for(&self, owner: u64, now: u64) -> bool {
        let mut others = [0u64; WAYS];
        let mut n = 0;
        for e in self.entries.iter().filter(|e| e.stale_after > now) {
            if e.owner == owner {
                return true;
            }
            if !others[..n].contains(&e.owner) {
                if n == WAYS {
                    return false;
                }
                others[n] = e.owner;
                n += 1;
            }
        }
        n < WAYS
    }

    fn put(&mut self, owner: u64, bucket: u64, limit: &Limit, state: State) {
        self.put_entry(Entry {
            owner,
            bucket,
            stale_after: limit.stale_after(state),
            state,
        });
    }

    /// Replaces the entry of the same owner and bucket, or adds it.
    fn put_entry(&mut self, entry: Entry) {
        let (owner, bucket) = (entry.owner, entry.bucket);
        match self
            .entries
            .iter_mut()
            .find(|e| e.owner == owner && e.bucket == bucket)
        {
            Some(e) => *e = entry,
            None => self.entries.push(entry),
        }
    }
}

/// One bucket a request counts in: its fingerprint and arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Take {
    pub bucket: u64,
    pub limit: Limit,
}

/// Where an owner's entries were written: its group, or the overflow cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Group(u32),
    Overflow,
}

/// What counting did: per take, in order, the bucket's outcome and the
/// state written (none when nothing was written for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    pub outcomes: Vec<Outcome>,
    pub written: Vec<Option<State>>,
    pub place: Place,
}

/// Something to give back: the bucket, its arithmetic and the state its
/// take wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Given {
    pub bucket: u64,
    pub limit: Limit,
    pub taken: State,
}

pub struct SlotTable {
    prefix: String,
    groups: u32,
}

impl SlotTable {
    /// `prefix` namespaces the keys (one filter instance must not read
    /// another's); `groups` >= 1.
    pub fn new(prefix: &str, groups: u32) -> Self {
        SlotTable {
            prefix: prefix.to_string(),
            groups: groups.max(1),
        }
    }

    /// Shared-data keys the table creates: its groups and the overflow cell.
    pub fn key_count(&self) -> u64 {
        u64::from(self.groups) + 1
    }

    fn group_key(&self, group: u32) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 11);
        key.push_str(&self.prefix);
        key.push('g');
        crate::text::push_u64(&mut key, u64::from(group));
        key
    }

    fn overflow_key(&self) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 1);
        key.push_str(&self.prefix);
        key.push('o');
        key
    }

    fn flag_key(&self, bucket_fingerprint: u64) -> String {
        format!("{}f{:016x}", self.prefix, bucket_fingerprint)
    }

    fn key_of(&self, place: Place) -> String {
        match place {
            Place::Group(g) => self.group_key(g),
            Place::Overflow => self.overflow_key(),
        }
    }

    pub(crate) fn group_of(&self, owner: u64) -> u32 {
        (crate::hash::mix(owner) % u64::from(self.groups)) as u32
    }

    /// Creates every group and the overflow cell, where missing. Returns how
    /// many keys were created.
    pub fn create_all(&self, store: &dyn SharedStore) -> Result<u32, StoreError> {
        let keys = (0..self.groups)
            .map(|g| self.group_key(g))
            .chain([self.overflow_key()]);
        create_missing(store, keys, &[0u8; HEADER_BYTES])
    }

    /// Creates one flag per bucket (cleared), where missing; returns how many
    /// keys were created.
    pub fn create_flags(
        &self,
        store: &dyn SharedStore,
        bucket_fingerprints: &[u64],
    ) -> Result<u32, StoreError> {
        let keys = bucket_fingerprints.iter().map(|&f| self.flag_key(f));
        create_missing(store, keys, &[0])
    }

    /// Sets the bucket's flag; true for the one caller that set it (a
    /// compare-and-swap from cleared), false for every other, ever.
    pub fn claim_flag(
        &self,
        store: &dyn SharedStore,
        bucket_fingerprint: u64,
    ) -> Result<bool, StoreError> {
        store::update(store, &self.flag_key(bucket_fingerprint), |bytes| {
            Ok(match bytes.first() {
                Some(&b) if b != 0 => (false, None),
                _ => (true, Some(vec![1])),
            })
        })
    }

    /// Counts one request in every bucket of `takes` for `owner`, with one
    /// read and one compare-and-swap. `atomic` (enforce mode): if any bucket
    /// refuses, none is written; otherwise each admitting bucket is written.
    pub fn count(
        &self,
        store: &dyn SharedStore,
        owner: u64,
        takes: &[Take],
        atomic: bool,
        now: u64,
    ) -> Result<Counted, StoreError> {
        let group = self.group_of(owner);
        let key = self.group_key(group);
        let placed = store::update(store, &key, |bytes| {
            let mut cell = Cell::decode(bytes);
            if !cell.has_room_for(owner, now) {
                return Ok((None, None));
            }
            let overflow = match cell.overflow_until > now {
                true => Some(self.read(store, Place::Overflow)?),
                false => None,
            };
            let states = takes.iter().map(|t| {
                cell.state(owner, t.bucket, now).or_else(|| {
                    let inherited = overflow.as_ref()?.state(0, t.bucket, now)?;
                    let live =
                        t.limit.algorithm.inherits_overflow() && !t.limit.is_stale(inherited, now);
                    live.then_some(inherited)
                })
            });
            let (outcomes, written) = decide(takes, states, atomic, now);
            let write = apply(&mut cell, owner, takes, &written).then(|| cell.encode(now));
            Ok((Some((outcomes, written)), write))
        })?;
        if let Some((outcomes, written)) = placed {
            return Ok(Counted {
                outcomes,
                written,
                place: Place::Group(group),
            });
        }
        self.count_in_overflow(store, &key, takes, atomic, now)
    }

    /// Every way of the owner's group holds another live owner: marks the
    /// group (see the module comment), then counts in the overflow cell.
    fn count_in_overflow(
        &self,
        store: &dyn SharedStore,
        group_key: &str,
        takes: &[Take],
        atomic: bool,
        now: u64,
    ) -> Result<Counted, StoreError> {
        let until = takes
            .iter()
            .map(|t| t.limit.horizon(now))
            .max()
            .unwrap_or(now);
        store::update(store, group_key, |bytes| {
            let mut cell = Cell::decode(bytes);
            if cell.overflow_until >= until {
                return Ok(((), None));
            }
            cell.overflow_until = until;
            Ok(((), Some(cell.encode(now))))
        })?;
        store::update(store, &self.overflow_key(), |bytes| {
            let mut cell = Cell::decode(bytes);
            let states = takes.iter().map(|t| cell.state(0, t.bucket, now));
            let (outcomes, written) = decide(takes, states, atomic, now);
            let write = apply(&mut cell, 0, takes, &written).then(|| cell.encode(now));
            let counted = Counted {
                outcomes,
                written,
                place: Place::Overflow,
            };
            Ok((counted, write))
        })
    }

    /// Reads `owner`'s live entry for a learned record and rewrites it with
    /// one compare-and-swap: `f` sees the live state (`None` when there is
    /// none) and returns its result and, to write, the new state with the
    /// time it stops mattering. `Ok(None)`: `f` wanted to write a new entry
    /// but the group holds `WAYS` other live owners.
    pub fn update_entry<R>(
        &self,
        store: &dyn SharedStore,
        owner: u64,
        now: u64,
        mut f: impl FnMut(Option<State>) -> (R, Option<(State, u64)>),
    ) -> Result<Option<R>, StoreError> {
        let key = self.group_key(self.group_of(owner));
        store::update(store, &key, |bytes| {
            let mut cell = Cell::decode(bytes);
            let (result, write) = f(cell.state(owner, RECORD_TAG, now));
            let Some((state, stale_after)) = write else {
                return Ok((Some(result), None));
            };
            if !cell.has_room_for(owner, now) {
                return Ok((None, None));
            }
            cell.put_entry(Entry {
                owner,
                bucket: RECORD_TAG,
                stale_after,
                state,
            });
            Ok((Some(result), Some(cell.encode(now))))
        })
    }

    /// Reads one bucket's state for `owner` without taking anything: its own
    /// entry, else (while it may have counted there) the overflow's.
    pub fn peek(
        &self,
        store: &dyn SharedStore,
        owner: u64,
        bucket: u64,
        limit: &Limit,
        now: u64,
    ) -> Result<Outcome, StoreError> {
        let cell = self.read(store, Place::Group(self.group_of(owner)))?;
        let state = match cell.state(owner, bucket, now) {
            Some(s) => Some(s),
            None if cell.has_room_for(owner, now) && cell.overflow_until <= now => None,
            None => self.read(store, Place::Overflow)?.state(0, bucket, now),
        };
        Ok(limit.peek(state, now))
    }

    /// Undoes what `count` wrote at `place` for `owner` (see
    /// `Limit::release`), with one compare-and-swap for all of `given`. Best
    /// effort: an entry that has since gone has nothing to undo.
    pub fn release(
        &self,
        store: &dyn SharedStore,
        owner: u64,
        place: Place,
        given: &[Given],
        now: u64,
    ) -> Result<(), StoreError> {
        let owner = match place {
            Place::Group(_) => owner,
            Place::Overflow => 0,
        };
        store::update(store, &self.key_of(place), |bytes| {
            let mut cell = Cell::decode(bytes);
            let mut changed = false;
            for g in given {
                let Some(e) = cell
                    .entries
                    .iter_mut()
                    .find(|e| e.owner == owner && e.bucket == g.bucket)
                else {
                    continue;
                };
                if let Some(next) = g.limit.release(Some(e.state), g.taken, now) {
                    e.state = next;
                    e.stale_after = g.limit.stale_after(next);
                    changed = true;
                }
            }
            Ok(((), changed.then(|| cell.encode(now))))
        })
    }

    fn read(&self, store: &dyn SharedStore, place: Place) -> Result<Cell, StoreError> {
        let key = self.key_of(place);
        Ok(store
            .get(&key)?
            .map(|(bytes, _)| Cell::decode(&bytes))
            .unwrap_or_default())
    }
}

/// Every bucket's decision on the state read. `atomic`: one refusal and
/// none is written.
fn decide(
    takes: &[Take],
    states: impl Iterator<Item = Option<State>>,
    atomic: bool,
    now: u64,
) -> (Vec<Outcome>, Vec<Option<State>>) {
    let (outcomes, mut written): (Vec<Outcome>, Vec<Option<State>>) = takes
        .iter()
        .zip(states)
        .map(|(t, state)| t.limit.acquire(state, now))
        .unzip();
    if atomic && outcomes.iter().any(|o| !o.admitted) {
        written.iter_mut().for_each(|w| *w = None);
    }
    (outcomes, written)
}

/// Puts what was decided into the cell; true when there is anything to write.
fn apply(cell: &mut Cell, owner: u64, takes: &[Take], written: &[Option<State>]) -> bool {
    let mut any = false;
    for (t, w) in takes.iter().zip(written) {
        if let Some(state) = w {
            cell.put(owner, t.bucket, &t.limit, *state);
            any = true;
        }
    }
    any
}

fn create_missing(
    store: &dyn SharedStore,
    keys: impl Iterator<Item = String>,
    empty: &[u8],
) -> Result<u32, StoreError> {
    let mut created = 0;
    for key in keys {
        if store.get(&key)?.is_none() {
            store.set(&key, empty, None)?;
            created += 1;
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::{Algorithm, MICROS_PER_SEC};
    use crate::store::MemoryStore;
    use std::sync::Arc;

    const T0: u64 = 1_700_000_000 * MICROS_PER_SEC;
    const BUCKET: u64 = 0xb0c;

    fn fixed(limit: u64) -> Limit {
        Limit {
            algorithm: Algorithm::FixedWindow,
            limit,
            window_us: 60 * MICROS_PER_SEC,
        }
    }

    fn one(limit: Limit) -> [Take; 1] {
        [Take {
            bucket: BUCKET,
            limit,
        }]
    }

    fn admitted(table: &SlotTable, store: &MemoryStore, owner: u64, l: Limit, now: u64) -> bool {
        table
            .count(store, owner, &one(l), true, now)
            .unwrap()
            .outcomes[0]
            .admitted
    }

    fn table(groups: u32) -> (SlotTable, MemoryStore) {
        let store = MemoryStore::new();
        let table = SlotTable::new("t/", groups);
        table.create_all(&store).unwrap();
        (table, store)
    }

    #[test]
    fn keys_are_capped_whatever_the_number_of_clients() {
        let (table, store) = table(64);
        let before = store.key_count();
        assert_eq!(before, 65);
        for client in 0..20_000u64 {
            let fp = crate::hash::fingerprint(&[&client.to_le_bytes()]);
            table.count(&store, fp, &one(fixed(5)), true, T0).unwrap();
        }
        assert_eq!(store.key_count(), before);
    }

    #[test]
    fn each_key_counts_exactly_while_the_table_has_room() {
        let (table, store) = table(256);
        for client in 0..100u64 {
            let fp = crate::hash::fingerprint(&[&client.to_le_bytes()]);
            let n = (0..5)
                .filter(|_| admitted(&table, &store, fp, fixed(3), T0))
                .count();
            assert_eq!(n, 3, "client {client}");
        }
    }

    /// Several buckets of one owner: one read and one write per request, and
    /// a refusal by any writes none of them.
    #[test]
    fn one_transaction_per_request_and_all_or_nothing() {
        struct Counting(MemoryStore, std::cell::Cell<(u32, u32)>);
        impl SharedStore for Counting {
            fn get(&self, k: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
                let (g, s) = self.1.get();
                self.1.set((g + 1, s));
                self.0.get(k)
            }
            fn set(&self, k: &str, v: &[u8], c: Option<u32>) -> Result<bool, StoreError> {
                let (g, s) = self.1.get();
                self.1.set((g, s + 1));
                self.0.set(k, v, c)
            }
        }
        let store = Counting(MemoryStore::new(), Default::default());
        let table = SlotTable::new("t/", 8);
        table.create_all(&store).unwrap();
        let takes = [
            Take {
                bucket: 1,
                limit: fixed(5),
            },
            Take {
                bucket: 2,
                limit: fixed(2),
            },
            Take {
                bucket: 3,
                limit: Limit {
                    algorithm: Algorithm::TokenBucket,
                    limit: 10,
                    window_us: MICROS_PER_SEC,
                },
            },
        ];
        store.1.set((0, 0));
        let c = table.count(&store, 7, &takes, true, T0).unwrap();
        assert_eq!(store.1.get(), (1, 1), "one get and one compare-and-swap");
        assert!(c.outcomes.iter().all(|o| o.admitted));
        assert!(table.count(&store, 7, &takes, true, T0).unwrap().outcomes[1].admitted);
        // Bucket 2 is used up: the third request writes nothing anywhere.
        let c = table.count(&store, 7, &takes, true, T0).unwrap();
        assert_eq!(
            c.outcomes.iter().map(|o| o.admitted).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert_eq!(c.written, [None, None, None]);
        let peek = |b: u64, l: &Limit| table.peek(&store, 7, b, l, T0).unwrap().remaining;
        assert_eq!(
            peek(1, &takes[0].limit),
            3,
            "bucket 1 counted twice, not three times"
        );
        // Not atomic (shadow mode): the admitting buckets count.
        let c = table.count(&store, 7, &takes, false, T0).unwrap();
        assert!(c.written[0].is_some() && c.written[1].is_none());
        assert_eq!(peek(1, &takes[0].limit), 2);
    }

    #[test]
    fn a_full_group_overflows_conservatively_and_stale_ways_are_reused() {
        let (table, store) = table(1); // every owner in one cell of 4 ways
        for owner in 1..=4u64 {
            assert!(admitted(&table, &store, owner, fixed(3), T0));
        }
        // Owners 5.. share the overflow: 3 admits between them, not 3 each.
        let overflow_admits = (5..=10u64)
            .filter(|&owner| admitted(&table, &store, owner, fixed(3), T0))
            .count();
        assert_eq!(overflow_admits, 3);
        // A window later the ways are stale and are handed out again.
        let later = T0 + 61 * MICROS_PER_SEC;
        let c = table
            .count(&store, 99, &one(fixed(3)), true, later)
            .unwrap();
        assert_eq!(c.place, Place::Group(0));
        assert_eq!(c.outcomes[0].remaining, 2);
    }

    #[test]
    fn stale_entries_are_dropped_when_a_cell_is_written() {
        let (table, store) = table(1);
        for owner in 1..=4u64 {
            assert!(admitted(&table, &store, owner, fixed(3), T0));
        }
        let size = |s: &MemoryStore| s.get("t/g0").unwrap().unwrap().0.len();
        assert_eq!(size(&store), HEADER_BYTES + 4 * ENTRY_BYTES);
        assert!(admitted(
            &table,
            &store,
            9,
            fixed(3),
            T0 + 61 * MICROS_PER_SEC
        ));
        assert_eq!(size(&store), HEADER_BYTES + ENTRY_BYTES);
    }

    #[test]
    fn leaving_overflow_starts_from_the_overflow_count() {
        let (table, store) = table(1);
        let short = Limit {
            algorithm: Algorithm::TokenBucket,
            limit: 1,
            window_us: MICROS_PER_SEC,
        };
        // Four short-lived token-bucket owners fill the cell for one second.
        for owner in [3u64, 5, 7, 9] {
            table.count(&store, owner, &one(short), true, T0).unwrap();
        }
        for _ in 0..2 {
            assert!(admitted(&table, &store, 11, fixed(3), T0));
        }
        // The ways free up; owner 11 moves in but keeps the 2 it used.
        let t = T0 + 2 * MICROS_PER_SEC;
        let c = table.count(&store, 11, &one(fixed(3)), true, t).unwrap();
        assert_eq!(c.place, Place::Group(0));
        assert!(c.outcomes[0].admitted);
        assert_eq!(c.outcomes[0].remaining, 0);
        assert!(!admitted(&table, &store, 11, fixed(3), t));
    }

    #[test]
    fn a_flag_is_claimed_once() {
        let t = SlotTable::new("p/", 4);
        let s = MemoryStore::new();
        assert_eq!(t.create_flags(&s, &[11, 12]), Ok(2));
        assert_eq!(t.create_flags(&s, &[11, 12]), Ok(0));
        assert_eq!(t.claim_flag(&s, 11), Ok(true));
        assert_eq!(t.claim_flag(&s, 11), Ok(false));
        assert_eq!(t.claim_flag(&s, 12), Ok(true));
    }

    #[test]
    fn release_gives_back_one() {
        let (table, store) = table(8);
        let l = fixed(1);
        let c = table.count(&store, 77, &one(l), true, T0).unwrap();
        let taken = c.written[0].unwrap();
        assert!(!admitted(&table, &store, 77, l, T0));
        let given = [Given {
            bucket: BUCKET,
            limit: l,
            taken,
        }];
        table.release(&store, 77, c.place, &given, T0).unwrap();
        assert!(admitted(&table, &store, 77, l, T0));
        assert_eq!(table.peek(&store, 77, BUCKET, &l, T0).unwrap().remaining, 0);
    }

    #[test]
    fn a_learned_record_lives_beside_the_owners_counts() {
        let (table, store) = table(1);
        assert!(admitted(&table, &store, 5, fixed(3), T0));
        let put = table.update_entry(&store, 5, T0, |s| (s, Some(([1, 2, 3], T0 + 10))));
        assert_eq!(put, Ok(Some(None)));
        let read = table.update_entry(&store, 5, T0, |s| (s, None));
        assert_eq!(read, Ok(Some(Some([1, 2, 3]))));
        assert_eq!(
            table
                .peek(&store, 5, BUCKET, &fixed(3), T0)
                .unwrap()
                .remaining,
            2
        );
        for owner in 6..=8u64 {
            assert!(admitted(&table, &store, owner, fixed(3), T0));
        }
        // A fifth owner finds no room for a record.
        assert_eq!(
            table.update_entry(&store, 9, T0, |_| ((), Some(([1, 0, 0], T0 + 10)))),
            Ok(None)
        );
    }

    #[test]
    fn parallel_workers_admit_exactly_the_limit() {
        let store = Arc::new(MemoryStore::new());
        let table = Arc::new(SlotTable::new("t/", 4));
        table.create_all(&*store).unwrap();
        let takes = [
            Take {
                bucket: 1,
                limit: fixed(1000),
            },
            Take {
                bucket: 2,
                limit: fixed(1500),
            },
        ];
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (store, table) = (store.clone(), table.clone());
                std::thread::spawn(move || {
                    (0..500)
                        .filter(|_| {
                            let c = table.count(&*store, 42, &takes, true, T0).unwrap();
                            c.outcomes.iter().all(|o| o.admitted)
                        })
                        .count()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1000);
        let left = table.peek(&*store, 42, 2, &takes[1].limit, T0).unwrap();
        assert_eq!(left.remaining, 500, "bucket 2 counted exactly the admitted");
    }
}
