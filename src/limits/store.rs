//! The shared store the limits live in: a versioned key-value map with compare-and-swap,
//! modelled on Envoy's shared data (process-wide, so limits hold across all worker VMs),
//! its in-process twin for tests and tools, and the store keys of keys and teams.

use std::collections::HashMap;
use std::sync::Mutex;

/// Most attempts of one compare-and-swap loop before giving up (fail closed). Each Envoy
/// worker runs one request at a time, so a loop only loses to another worker's write in
/// between its read and its write; 64 losses in a row means something is wrong.
pub const MAX_CAS_TRIES: usize = 64;

/// Prefix of every store key (the version changes when the record format does).
pub const STORE_PREFIX: &str = "llm_gateway.v1.";

/// Store key of a virtual key's record.
pub fn key_store_key(name: &str) -> String {
    format!("{STORE_PREFIX}key.{name}")
}

/// Store key of a team's record.
pub fn team_store_key(name: &str) -> String {
    format!("{STORE_PREFIX}team.{name}")
}

/// Why a store write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The value changed since it was read (the caller reads again and retries). From
    /// [`super::settlement::settle`]: still contended after [`MAX_CAS_TRIES`] attempts.
    CasMismatch,
    /// Any other failure of the host.
    Other(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::CasMismatch => write!(f, "value changed concurrently (cas mismatch)"),
            StoreError::Other(m) => write!(f, "{m}"),
        }
    }
}

/// A versioned key-value store with compare-and-swap, as Envoy's shared data is.
///
/// Contract (Envoy's): `get` returns the value and its version, `None` only when the key
/// does not exist; `set` with `cas: Some(v)` fails with [`StoreError::CasMismatch`] unless
/// the stored version is still `v`; with `None` it writes unconditionally. Writing a key
/// that does not exist always succeeds (there is no create-if-absent).
pub trait Store {
    /// The value of `key` and its version.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the version is still `cas` (or unconditionally with `None`).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// An in-process [`Store`] with Envoy's semantics, for tests and host-side tools.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    map: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.map.get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some((_, current)), Some(expected)) = (inner.map.get(key), cas) {
            // Envoy: a cas of 0 means "no check".
            if expected != 0 && expected != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        inner.last_cas = inner.last_cas.wrapping_add(1).max(1);
        let version = inner.last_cas;
        inner.map.insert(key.to_string(), (value.to_vec(), version));
        Ok(())
    }
}

#[cfg(test)]
impl MemoryStore {
    /// Whether nothing was ever written.
    pub(super) fn is_empty(&self) -> bool {
        self.inner.lock().unwrap().map.is_empty()
    }
}
