//! The counting store: one small interface over Envoy's shared data (a
//! key/value map shared by every worker's VM, with compare-and-swap), so that
//! another store (a remote rate-limit service) can replace it without touching
//! routing or responses. `MemoryStore` emulates Envoy's semantics for host tests.

use std::collections::HashMap;
use std::sync::Mutex;

/// What can go wrong with a store call, by kind, so callers decide on the
/// kind rather than on text. (A lost compare-and-swap is no error: `set`
/// answers `Ok(false)`.) Each names the key concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The host has no such key (a write with a CAS token to a missing key).
    NotFound(String),
    /// The host refused the call's arguments (a key or value it cannot take).
    BadArgument(String),
    /// Compare-and-swap lost this many times in a row: contention this deep
    /// means something is badly wrong.
    Contended { key: String, attempts: usize },
    /// Any other failure of the host (or of the in-memory store's lock):
    /// the key and the host's status.
    Host { key: String, status: String },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound(key) => write!(f, "shared data {key}: not found"),
            StoreError::BadArgument(key) => write!(f, "shared data {key}: bad argument"),
            StoreError::Contended { key, attempts } => write!(
                f,
                "compare-and-swap on {key} lost {attempts} times in a row"
            ),
            StoreError::Host { key, status } => write!(f, "shared data {key}: {status}"),
        }
    }
}

pub trait SharedStore {
    /// The value and CAS token of `key`, or `None` if the key was never written.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value` if the key's CAS token is still `cas` (`None`: write
    /// unconditionally). `Ok(false)` means another writer came first.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError>;
}

/// Compare-and-swap retries before one update gives up; contention this
/// deep means something is badly wrong, and the caller fails open with a log
/// line.
pub const MAX_ATTEMPTS: usize = 1000;

/// The one read-modify-write loop over shared data. Reads `key` (empty bytes
/// when it was never written), lets `f` decide from what it read, and writes
/// what `f` returns with the CAS token of that read, so the decision always
/// stands on the value actually written; on a lost race it reads again and
/// `f` decides again. `f` returning no bytes writes nothing.
///
/// A missing key is written without a token (a blind create). Every key is
/// created at configure time, so this only happens if configure could not.
pub fn update<R>(
    store: &dyn SharedStore,
    key: &str,
    mut f: impl FnMut(&[u8]) -> Result<(R, Option<Vec<u8>>), StoreError>,
) -> Result<R, StoreError> {
    let mut result = None;
    update_bytes(store, key, &mut |bytes| {
        let (r, write) = f(bytes)?;
        result = Some(r);
        Ok(write)
    })?;
    // `update_bytes` returns Ok only after `f` ran (and its result stands).
    result.ok_or_else(|| StoreError::Host {
        key: key.to_string(),
        status: "update ended without a decision".to_string(),
    })
}

/// What an update decides from the bytes read: the bytes to write, if any.
type Decide<'a> = dyn FnMut(&[u8]) -> Result<Option<Vec<u8>>, StoreError> + 'a;

/// `update`'s loop, not generic, so the `.wasm` carries one copy of it.
fn update_bytes(store: &dyn SharedStore, key: &str, f: &mut Decide) -> Result<(), StoreError> {
    for _ in 0..MAX_ATTEMPTS {
        let (bytes, cas) = match store.get(key)? {
            Some((bytes, cas)) => (bytes, Some(cas).filter(|&c| c != 0)),
            None => (Vec::new(), None),
        };
        let Some(value) = f(&bytes)? else {
            return Ok(());
        };
        if store.set(key, &value, cas)? {
            return Ok(());
        }
    }
    Err(StoreError::Contended {
        key: key.to_string(),
        attempts: MAX_ATTEMPTS,
    })
}

/// In-process store with Envoy's shared-data semantics: every write bumps a
/// global CAS counter; a CAS of 0/None always writes.
/// Key -> (value, CAS token), and the last token handed out.
type Entries = (HashMap<String, (Vec<u8>, u32)>, u32);

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Entries>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys exist (Envoy never frees one, so this only grows).
    pub fn key_count(&self) -> usize {
        self.inner.lock().map(|g| g.0.len()).unwrap_or(0)
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let guard = self.inner.lock().map_err(|_| poisoned(key))?;
        Ok(guard.0.get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        let mut guard = self.inner.lock().map_err(|_| poisoned(key))?;
        let (map, next) = &mut *guard;
        if let (Some(expected), Some((_, current))) = (cas.filter(|&c| c != 0), map.get(key)) {
            if expected != *current {
                return Ok(false);
            }
        }
        *next = next.wrapping_add(1).max(1);
        map.insert(key.to_string(), (value.to_vec(), *next));
        Ok(true)
    }
}

fn poisoned(key: &str) -> StoreError {
    StoreError::Host {
        key: key.to_string(),
        status: "memory store poisoned".to_string(),
    }
}
