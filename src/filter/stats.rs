//! Records [`crate::metrics::Record`]s into Envoy stats, defining each stat once per VM.

use std::cell::RefCell;

use super::host;
use crate::metrics::{MetricKind, Record, StatNames};

/// Stats defined so far have a bounded set of names (labels come from the config), so
/// this cache stays small.
const MAX_CACHED: usize = 4096;

thread_local! {
    static IDS: RefCell<StatNames<u32>> = RefCell::new(StatNames::default());
}

fn id_of(kind: MetricKind, name: &str) -> Option<u32> {
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        let abi_kind = match kind {
            MetricKind::Counter => 0,
            MetricKind::Gauge => 1,
            MetricKind::Histogram => 2,
        };
        let id = host::define_metric(abi_kind, name).ok()?;
        if ids.len() < MAX_CACHED {
            ids.insert(name.to_string(), id);
        }
        Some(id)
    })
}

/// Records every value; a stat the host refuses is skipped, never fatal.
pub fn record_all(records: &[Record]) {
    for r in records {
        let Some(id) = id_of(r.kind, &r.name) else {
            log::warn!("cannot define stat {}", r.name);
            continue;
        };
        let result = match r.kind {
            MetricKind::Counter if r.value > 0 => host::increment_metric(id, r.value),
            MetricKind::Counter => Ok(()),
            MetricKind::Histogram | MetricKind::Gauge => host::record_metric(id, r.value),
        };
        if let Err(e) = result {
            log::warn!("cannot record stat {} (host status {})", r.name, e.0);
        }
    }
}
