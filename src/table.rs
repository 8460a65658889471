//! A fixed-size table of counter slots in shared data, so the number of keys
//! the filter creates is capped whatever the number of distinct clients.
//!
//! Layout: `groups` shared-data keys, each holding 4 entries (ways) of
//! `(fingerprint, stale_after, state[3])`. A bucket key's fingerprint picks
//! its group; inside it the key takes its own way, or a free one (never used,
//! or stale: holding nothing that affects a decision). The whole group is read
//! and written with one compare-and-swap, so two workers can never place the
//! same key twice. When all 4 ways hold live keys, the request is counted in
//! its bucket's single overflow entry, shared by every key that did not fit:
//! that errs toward rejecting, never toward admitting. A key that later finds
//! a free way starts from the overflow entry's state (an upper bound on its own
//! use), so moving out of overflow never hands out extra requests.
//!
//! All keys are created at configure time (`create_all`): Envoy has no
//! create-if-absent, so creating on the request path could let one worker's
//! blind create overwrite another's count.

use crate::limiter::{Limit, Outcome, State};
use crate::store::{SharedStore, StoreError};

pub const WAYS: usize = 4;
const ENTRY_BYTES: usize = 40;
const GROUP_BYTES: usize = WAYS * ENTRY_BYTES;
/// CAS retries before giving up on one update; contention this deep means
/// something is badly wrong, and the caller fails open with a log line.
const MAX_ATTEMPTS: usize = 1000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    fingerprint: u64,
    stale_after: u64,
    state: State,
}

impl Entry {
    fn decode(b: &[u8]) -> Entry {
        let word = |i: usize| {
            b.get(i * 8..i * 8 + 8)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        Entry {
            fingerprint: word(0),
            stale_after: word(1),
            state: [word(2), word(3), word(4)],
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        for w in [
            self.fingerprint,
            self.stale_after,
            self.state[0],
            self.state[1],
            self.state[2],
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    fn is_free(&self, now: u64) -> bool {
        self.fingerprint == 0 || self.stale_after <= now
    }
}

/// Where a bucket's state for one key lives: a way of a group, or the bucket's
/// overflow entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Group(u32),
    Overflow(String),
}

/// The result of an update: the bucket's outcome and, if something was
/// written, where and what (so it can be released later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub outcome: Outcome,
    pub written: Option<(Place, State)>,
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

    pub fn groups(&self) -> u32 {
        self.groups
    }

    fn group_key(&self, group: u32) -> String {
        format!("{}g{}", self.prefix, group)
    }

    fn overflow_key(&self, bucket_fingerprint: u64) -> String {
        format!("{}o{:016x}", self.prefix, bucket_fingerprint)
    }

    pub(crate) fn group_of(&self, fingerprint: u64) -> u32 {
        (crate::hash::mix(fingerprint) % u64::from(self.groups)) as u32
    }

    /// Creates every group key and the overflow key of each bucket, where
    /// missing. Returns how many keys were created.
    pub fn create_all(
        &self,
        store: &dyn SharedStore,
        bucket_fingerprints: &[u64],
    ) -> Result<u32, StoreError> {
        let empty = [0u8; GROUP_BYTES];
        let mut created = 0;
        let keys = (0..self.groups)
            .map(|g| (self.group_key(g), GROUP_BYTES))
            .chain(
                bucket_fingerprints
                    .iter()
                    .map(|&f| (self.overflow_key(f), ENTRY_BYTES)),
            );
        for (key, len) in keys {
            if store.get(&key)?.is_none() {
                store.set(&key, &empty[..len], None)?;
                created += 1;
            }
        }
        Ok(created)
    }

    fn flag_key(&self, bucket_fingerprint: u64) -> String {
        format!("{}f{:016x}", self.prefix, bucket_fingerprint)
    }

    /// Creates one flag per bucket (cleared), where missing; returns how many
    /// keys were created.
    pub fn create_flags(
        &self,
        store: &dyn SharedStore,
        bucket_fingerprints: &[u64],
    ) -> Result<u32, StoreError> {
        let mut created = 0;
        for &f in bucket_fingerprints {
            let key = self.flag_key(f);
            if store.get(&key)?.is_none() {
                store.set(&key, &[0], None)?;
                created += 1;
            }
        }
        Ok(created)
    }

    /// Sets the bucket's flag; true for the one caller that set it (a
    /// compare-and-swap from cleared), false for every other, ever.
    pub fn claim_flag(
        &self,
        store: &dyn SharedStore,
        bucket_fingerprint: u64,
    ) -> Result<bool, StoreError> {
        let key = self.flag_key(bucket_fingerprint);
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, cas) = read(store, &key)?;
            if bytes.first().is_some_and(|&b| b != 0) {
                return Ok(false);
            }
            // Never created (configure could not): claim without creating it.
            let Some(cas) = cas else { return Ok(true) };
            if store.set(&key, &[1], Some(cas))? {
                return Ok(true);
            }
        }
        Err(contended(&key))
    }

    /// Takes one request from `limit` for the key with `fingerprint`, in the
    /// bucket whose overflow entry is `bucket_fingerprint`.
    pub fn acquire(
        &self,
        store: &dyn SharedStore,
        bucket_fingerprint: u64,
        fingerprint: u64,
        limit: &Limit,
        now: u64,
    ) -> Result<Taken, StoreError> {
        let group = self.group_of(fingerprint);
        let key = self.group_key(group);
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, cas) = read(store, &key)?;
            let mut entries = decode_group(&bytes);
            let own = entries.iter().position(|e| e.fingerprint == fingerprint);
            let way = match own.or_else(|| entries.iter().position(|e| e.is_free(now))) {
                Some(way) => way,
                None => return self.acquire_overflow(store, bucket_fingerprint, limit, now),
            };
            let state = if own.is_some() {
                Some(entries[way].state)
            } else if limit.algorithm.inherits_overflow() {
                self.overflow_state(store, bucket_fingerprint, limit, now)?
            } else {
                None
            };
            let (outcome, next) = limit.acquire(state, now);
            let Some(next) = next else {
                return Ok(Taken {
                    outcome,
                    written: None,
                });
            };
            entries[way] = Entry {
                fingerprint,
                stale_after: stale_after(limit, next),
                state: next,
            };
            if store.set(&key, &encode_group(&entries), cas)? {
                return Ok(Taken {
                    outcome,
                    written: Some((Place::Group(group), next)),
                });
            }
        }
        Err(contended(&key))
    }

    /// Reads and rewrites the entry of `fingerprint` alone (never an overflow
    /// entry), with one compare-and-swap: `f` sees the live state (`None`
    /// when there is none) and returns its result and, to write, the new
    /// state with the time it stops mattering. `Ok(None)`: `f` wanted to
    /// write a new entry but every way of its group holds a live key.
    pub fn update<R>(
        &self,
        store: &dyn SharedStore,
        fingerprint: u64,
        now: u64,
        mut f: impl FnMut(Option<State>) -> (R, Option<(State, u64)>),
    ) -> Result<Option<R>, StoreError> {
        let group = self.group_of(fingerprint);
        let key = self.group_key(group);
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, cas) = read(store, &key)?;
            let mut entries = decode_group(&bytes);
            let own = entries.iter().position(|e| e.fingerprint == fingerprint);
            let live = own
                .map(|w| entries[w])
                .filter(|e| !e.is_free(now))
                .map(|e| e.state);
            let (result, write) = f(live);
            let Some((state, stale_after)) = write else {
                return Ok(Some(result));
            };
            let Some(way) = own.or_else(|| entries.iter().position(|e| e.is_free(now))) else {
                return Ok(None);
            };
            entries[way] = Entry {
                fingerprint,
                stale_after,
                state,
            };
            if store.set(&key, &encode_group(&entries), cas)? {
                return Ok(Some(result));
            }
        }
        Err(contended(&key))
    }

    /// Reads the bucket's state for a key without taking anything.
    pub fn peek(
        &self,
        store: &dyn SharedStore,
        bucket_fingerprint: u64,
        fingerprint: u64,
        limit: &Limit,
        now: u64,
    ) -> Result<Outcome, StoreError> {
        let (bytes, _) = read(store, &self.group_key(self.group_of(fingerprint)))?;
        let entries = decode_group(&bytes);
        let state = match entries.iter().find(|e| e.fingerprint == fingerprint) {
            Some(e) => Some(e.state),
            None if entries.iter().any(|e| e.is_free(now)) => None,
            None => self.overflow_state(store, bucket_fingerprint, limit, now)?,
        };
        Ok(limit.peek(state, now))
    }

    /// Undoes what `acquire` wrote (see `Limit::release`). Best effort: if the
    /// slot has since been given to another key, there is nothing to undo.
    pub fn release(
        &self,
        store: &dyn SharedStore,
        fingerprint: u64,
        place: &Place,
        taken: State,
        limit: &Limit,
        now: u64,
    ) -> Result<(), StoreError> {
        let (key, owner) = match place {
            Place::Group(g) => (self.group_key(*g), fingerprint),
            Place::Overflow(k) => (k.clone(), 0),
        };
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, cas) = read(store, &key)?;
            let mut entries = decode_group(&bytes);
            let way = match place {
                Place::Group(_) => entries.iter().position(|e| e.fingerprint == owner),
                Place::Overflow(_) => Some(0),
            };
            let Some(way) = way else { return Ok(()) };
            let Some(next) = limit.release(Some(entries[way].state), taken, now) else {
                return Ok(());
            };
            entries[way].state = next;
            entries[way].stale_after = stale_after(limit, next);
            let bytes = match place {
                Place::Group(_) => encode_group(&entries),
                Place::Overflow(_) => encode_entry(&entries[0]),
            };
            if store.set(&key, &bytes, cas)? {
                return Ok(());
            }
        }
        Err(contended(&key))
    }

    fn overflow_state(
        &self,
        store: &dyn SharedStore,
        bucket_fingerprint: u64,
        limit: &Limit,
        now: u64,
    ) -> Result<Option<State>, StoreError> {
        let (bytes, _) = read(store, &self.overflow_key(bucket_fingerprint))?;
        let entry = Entry::decode(&bytes);
        Ok((!entry.is_free(now) && !limit.is_stale(entry.state, now)).then_some(entry.state))
    }

    fn acquire_overflow(
        &self,
        store: &dyn SharedStore,
        bucket_fingerprint: u64,
        limit: &Limit,
        now: u64,
    ) -> Result<Taken, StoreError> {
        let key = self.overflow_key(bucket_fingerprint);
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, cas) = read(store, &key)?;
            let entry = Entry::decode(&bytes);
            let state = (entry.fingerprint != 0).then_some(entry.state);
            let (outcome, next) = limit.acquire(state, now);
            let Some(next) = next else {
                return Ok(Taken {
                    outcome,
                    written: None,
                });
            };
            let entry = Entry {
                fingerprint: bucket_fingerprint,
                stale_after: stale_after(limit, next),
                state: next,
            };
            if store.set(&key, &encode_entry(&entry), cas)? {
                return Ok(Taken {
                    outcome,
                    written: Some((Place::Overflow(key), next)),
                });
            }
        }
        Err(contended(&key))
    }
}

/// When a state stops mattering: the window's end, a full bucket, the last
/// hold's expiry.
fn stale_after(limit: &Limit, state: State) -> u64 {
    use crate::limiter::Algorithm::*;
    match limit.algorithm {
        FixedWindow => state[0].saturating_add(limit.window_us),
        TokenBucket => state[0],
        Concurrency => state.iter().copied().max().unwrap_or(0),
        InFlight if state[0] == 0 => 0,
        InFlight => state[1].saturating_add(limit.window_us),
    }
}

/// Reads a key created by `create_all`; a missing key reads as empty with no
/// CAS token (the write then creates it, which only happens if configure
/// could not).
fn read(store: &dyn SharedStore, key: &str) -> Result<(Vec<u8>, Option<u32>), StoreError> {
    Ok(match store.get(key)? {
        Some((bytes, cas)) => (bytes, Some(cas).filter(|&c| c != 0)),
        None => (Vec::new(), None),
    })
}

fn decode_group(bytes: &[u8]) -> [Entry; WAYS] {
    let mut out = [Entry::default(); WAYS];
    for (i, e) in out.iter_mut().enumerate() {
        if let Some(chunk) = bytes.get(i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES) {
            *e = Entry::decode(chunk);
        }
    }
    out
}

fn encode_group(entries: &[Entry; WAYS]) -> Vec<u8> {
    let mut out = Vec::with_capacity(GROUP_BYTES);
    for e in entries {
        e.encode_into(&mut out);
    }
    out
}

fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRY_BYTES);
    e.encode_into(&mut out);
    out
}

fn contended(key: &str) -> StoreError {
    StoreError::Contended {
        key: key.to_string(),
        attempts: MAX_ATTEMPTS,
    }
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

    #[test]
    fn keys_are_capped_whatever_the_number_of_clients() {
        let store = MemoryStore::new();
        let table = SlotTable::new("t/", 64);
        table.create_all(&store, &[BUCKET]).unwrap();
        let before = store.key_count();
        assert_eq!(before, 65);
        for client in 0..20_000u64 {
            let fp = crate::hash::fingerprint(&[&client.to_le_bytes()]);
            table.acquire(&store, BUCKET, fp, &fixed(5), T0).unwrap();
        }
        assert_eq!(store.key_count(), before);
    }

    #[test]
    fn each_key_counts_exactly_while_the_table_has_room() {
        let store = MemoryStore::new();
        let table = SlotTable::new("t/", 256);
        table.create_all(&store, &[BUCKET]).unwrap();
        let l = fixed(3);
        for client in 0..100u64 {
            let fp = crate::hash::fingerprint(&[&client.to_le_bytes()]);
            let admitted = (0..5)
                .filter(|_| {
                    table
                        .acquire(&store, BUCKET, fp, &l, T0)
                        .unwrap()
                        .outcome
                        .admitted
                })
                .count();
            assert_eq!(admitted, 3, "client {client}");
        }
    }

    #[test]
    fn a_full_group_overflows_conservatively_and_stale_ways_are_reused() {
        let store = MemoryStore::new();
        let table = SlotTable::new("t/", 1); // every key in one group of 4 ways
        table.create_all(&store, &[BUCKET]).unwrap();
        let l = fixed(3);
        for fp in 1..=4u64 {
            assert!(
                table
                    .acquire(&store, BUCKET, fp * 2 + 1, &l, T0)
                    .unwrap()
                    .outcome
                    .admitted
            );
        }
        // Keys 5.. share the overflow entry: 3 admits between them, not 3 each.
        let overflow_admits = (5..=10u64)
            .filter(|fp| {
                table
                    .acquire(&store, BUCKET, fp * 2 + 1, &l, T0)
                    .unwrap()
                    .outcome
                    .admitted
            })
            .count();
        assert_eq!(overflow_admits, 3);
        // A window later the ways are stale and are handed out again.
        let later = T0 + 61 * MICROS_PER_SEC;
        let taken = table.acquire(&store, BUCKET, 99, &l, later).unwrap();
        assert!(matches!(taken.written, Some((Place::Group(0), _))));
        assert_eq!(taken.outcome.remaining, 2);
    }

    #[test]
    fn leaving_overflow_starts_from_the_overflow_count() {
        let store = MemoryStore::new();
        let table = SlotTable::new("t/", 1);
        table.create_all(&store, &[BUCKET]).unwrap();
        let short = Limit {
            algorithm: Algorithm::TokenBucket,
            limit: 1,
            window_us: MICROS_PER_SEC,
        };
        let l = fixed(3);
        // Four short-lived token-bucket keys fill the group for one second.
        for fp in [3u64, 5, 7, 9] {
            table.acquire(&store, 0xabc, fp, &short, T0).unwrap();
        }
        for _ in 0..2 {
            assert!(
                table
                    .acquire(&store, BUCKET, 11, &l, T0)
                    .unwrap()
                    .outcome
                    .admitted
            );
        }
        // The ways free up; key 11 moves in but keeps the 2 it used.
        let t = T0 + 2 * MICROS_PER_SEC;
        let taken = table.acquire(&store, BUCKET, 11, &l, t).unwrap();
        assert!(taken.outcome.admitted);
        assert_eq!(taken.outcome.remaining, 0);
        assert!(
            !table
                .acquire(&store, BUCKET, 11, &l, t)
                .unwrap()
                .outcome
                .admitted
        );
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
        let store = MemoryStore::new();
        let table = SlotTable::new("t/", 8);
        table.create_all(&store, &[BUCKET]).unwrap();
        let l = fixed(1);
        let taken = table.acquire(&store, BUCKET, 77, &l, T0).unwrap();
        let (place, state) = taken.written.unwrap();
        assert!(
            !table
                .acquire(&store, BUCKET, 77, &l, T0)
                .unwrap()
                .outcome
                .admitted
        );
        table.release(&store, 77, &place, state, &l, T0).unwrap();
        assert!(
            table
                .acquire(&store, BUCKET, 77, &l, T0)
                .unwrap()
                .outcome
                .admitted
        );
        assert_eq!(table.peek(&store, BUCKET, 77, &l, T0).unwrap().remaining, 0);
    }

    #[test]
    fn parallel_workers_admit_exactly_the_limit() {
        let store = Arc::new(MemoryStore::new());
        let table = Arc::new(SlotTable::new("t/", 4));
        table.create_all(&*store, &[BUCKET]).unwrap();
        let l = fixed(1000);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (store, table) = (store.clone(), table.clone());
                std::thread::spawn(move || {
                    (0..500)
                        .filter(|_| {
                            table
                                .acquire(&*store, BUCKET, 42, &l, T0)
                                .unwrap()
                                .outcome
                                .admitted
                        })
                        .count()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }
}
