//! Bytes one Envoy worker holds for requests in flight, against a bound.
//!
//! A worker's Wasm memory grows to the most it ever held and never shrinks, so what many
//! concurrent requests hold at once (bodies being read, parsed requests waiting for their
//! answer, unfinished stream events) must be bounded per worker, not only per request:
//! otherwise a client pins gigabytes with enough large requests in parallel.

/// The bytes a worker holds and the most it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteBudget {
    limit: u64,
    held: u64,
}

impl ByteBudget {
    /// A budget of `limit` bytes, none held.
    pub const fn new(limit: u64) -> ByteBudget {
        ByteBudget { limit, held: 0 }
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Sets the limit (a new configuration); what is held stays held.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Moves one holder from `from` to `to` bytes. Shrinking always succeeds; growing
    /// succeeds only within the limit, and a refusal changes nothing (the holder keeps
    /// `from`).
    pub fn resize(&mut self, from: u64, to: u64) -> bool {
        let others = self.held.saturating_sub(from);
        if to > from && others.saturating_add(to) > self.limit {
            return false;
        }
        self.held = others.saturating_add(to);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_share_the_limit() {
        let mut b = ByteBudget::new(100);
        assert!(b.resize(0, 60));
        assert!(!b.resize(0, 50), "a second holder would pass the limit");
        assert_eq!(b.held(), 60);
        assert!(b.resize(0, 40));
        assert!(b.resize(60, 10), "shrinking");
        assert!(b.resize(0, 50));
        assert_eq!(b.held(), 100);
        assert!(b.resize(40, 0));
        assert!(b.resize(50, 0));
        assert!(b.resize(10, 0));
        assert_eq!(b.held(), 0);
        // Releasing more than is held never wraps.
        assert!(b.resize(7, 0));
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn shrinking_below_a_lowered_limit_is_allowed() {
        let mut b = ByteBudget::new(100);
        assert!(b.resize(0, 90));
        b.set_limit(10);
        assert!(!b.resize(90, 95));
        assert!(b.resize(90, 50));
        assert_eq!(b.held(), 50);
    }
}
