//! The worker's [`ByteBudget`]: one per VM, and so per Envoy worker thread, shared by the
//! downstream instance (request bodies and the parsed requests handed to the attempts) and
//! the upstream instance (stream events being assembled).

use std::cell::RefCell;

use crate::limits::byte_budget::ByteBudget;

thread_local! {
    static BUDGET: RefCell<ByteBudget> = const { RefCell::new(ByteBudget::new(u64::MAX)) };
}

/// Sets the worker's limit (from the configuration).
pub fn set_limit(limit: u64) {
    BUDGET.with(|b| b.borrow_mut().set_limit(limit));
}

/// Bytes one request (or attempt) holds; given back when it is dropped.
#[derive(Debug, Default)]
pub struct Holding {
    bytes: u64,
}

impl Holding {
    /// Holds `bytes` instead of what was held; `false` (nothing changed) when that would
    /// pass the worker's limit.
    pub fn resize(&mut self, bytes: u64) -> bool {
        let ok = BUDGET.with(|b| b.borrow_mut().resize(self.bytes, bytes));
        if ok {
            self.bytes = bytes;
        }
        ok
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        if self.bytes > 0 {
            BUDGET.with(|b| b.borrow_mut().resize(self.bytes, 0));
        }
    }
}
