//! Envoy shared data as the accounting store: one process-wide map with compare-and-swap,
//! shared by every worker's VM, so limits and budgets hold across threads.

use super::host;
use crate::limits::store::{Store, StoreError};

/// The shared-data store.
pub struct SharedData;

impl Store for SharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        host::get_shared_data(key).ok().flatten()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match host::set_shared_data(key, value, cas.unwrap_or(0)) {
            Ok(()) => Ok(()),
            Err(e) if e.0 == host::CAS_MISMATCH => Err(StoreError::CasMismatch),
            Err(e) => Err(StoreError::Other(format!("host status {}", e.0))),
        }
    }
}
