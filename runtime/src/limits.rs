//! The guest's memory limit, from `linux.resources.memory.limit`.
//!
//! wasmtime asks the store's limiter before every `memory.grow`; past the
//! limit the grow fails the way the wasm spec says (it returns -1), so a
//! well-written guest sees an out-of-memory error it can handle. The
//! limiter remembers that it refused, so a guest that then traps or aborts
//! (Rust's allocator does) is reported as stopped for memory, not as a
//! plain trap.

use wasmtime::ResourceLimiter;

/// A refused growth: the limit and what the guest asked for, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedGrowth {
    pub limit: usize,
    pub desired: usize,
}

/// Caps each linear memory of the guest at `limit` bytes.
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    limit: Option<usize>,
    refused: Option<RefusedGrowth>,
}

impl MemoryLimiter {
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            limit: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            refused: None,
        }
    }

    /// The first growth that was refused, if any.
    pub fn refused(&self) -> Option<RefusedGrowth> {
        self.refused
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.limit {
            Some(limit) if desired > limit => {
                self.refused.get_or_insert(RefusedGrowth { limit, desired });
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_limit_is_refused_and_remembered() {
        let mut limiter = MemoryLimiter::new(Some(64 << 20));
        assert!(limiter.memory_growing(0, 32 << 20, None).unwrap());
        assert_eq!(limiter.refused(), None);
        assert!(!limiter.memory_growing(32 << 20, 256 << 20, None).unwrap());
        assert_eq!(
            limiter.refused(),
            Some(RefusedGrowth {
                limit: 64 << 20,
                desired: 256 << 20
            })
        );
        let mut unlimited = MemoryLimiter::new(None);
        assert!(unlimited.memory_growing(0, 1 << 40, None).unwrap());
    }
}
