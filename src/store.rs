//! The counting store: one small interface over Envoy's shared data (a
//! key/value map shared by every worker's VM, with compare-and-swap), so that
//! another store (a remote rate-limit service) can replace it without touching
//! routing or responses. `MemoryStore` emulates Envoy's semantics for host tests.

use std::collections::HashMap;
use std::sync::Mutex;

/// A host call failed; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

pub trait SharedStore {
    /// The value and CAS token of `key`, or `None` if the key was never written.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value` if the key's CAS token is still `cas` (`None`: write
    /// unconditionally). `Ok(false)` means another writer came first.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError>;
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
        let guard = self
            .inner
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))?;
        Ok(guard.0.get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))?;
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
