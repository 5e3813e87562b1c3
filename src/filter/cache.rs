//! The response cache's host side: entries in Envoy's shared data (fixed slots) when there
//! is no spend store ([`crate::cache`] holds the logic).

use super::host;
use crate::cache::{self, ResponseCache};

/// The answer cached for `key`, if any is fresh enough.
pub fn lookup_local(
    config: &ResponseCache,
    key: &str,
    now: u64,
    s_maxage: Option<u64>,
) -> Option<Vec<u8>> {
    let (entry, _) = host::get_shared_data(&cache::slot_of(key, config.slots))
        .ok()
        .flatten()?;
    cache::decode_entry(&entry, key, now, s_maxage).map(<[u8]>::to_vec)
}

/// Stores `entry` in its slot, replacing whatever was there.
pub fn store_local(config: &ResponseCache, key: &str, entry: &[u8]) {
    if let Err(e) = host::set_shared_data(&cache::slot_of(key, config.slots), entry, 0) {
        log::warn!(
            "response cache: cannot store an entry (host status {})",
            e.0
        );
    }
}
