//! The wasmtime `Engine` of a runner process.
//!
//! One engine per process, with settings that are part of the compiled
//! cache's key (wasmtime's own compatibility hash covers them), so a change
//! of settings or of wasmtime version can never load a stale artifact.
//!
//! - Core modules run on a synchronous engine with on-demand allocation:
//!   one instance per process, nothing to pool.
//! - Components run on an async engine (wasi:http and wasi:sockets are
//!   built on tokio) with the pooling allocator: a wasi:http component gets
//!   a fresh instance per request, and pooled slots with copy-on-write
//!   memory images make that a matter of microseconds. Component code
//!   checks wasmtime's epoch: that is how a wasi:http request's deadline
//!   ends a handler stuck in a loop, and how a busy handler yields its
//!   thread to the other requests (see [`crate::http`]). A command
//!   component's store never reaches its deadline.
//! - The first start of a big core module may run on a Winch engine
//!   instead (see [`crate::tiered`]).

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
    RegallocAlgorithm, Strategy,
};

use crate::RuntimeError;

/// How many instances of a component may live at once: the ceiling on
/// concurrent wasi:http requests of one container. The pool reserves
/// address space for them, not memory.
pub const MAX_CONCURRENT_INSTANCES: u32 = 1000;

/// How much of a freed instance's linear memory and tables stays resident
/// for the next instance in the slot (reset to its initial contents).
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

fn base_config() -> Config {
    let mut config = Config::new();
    config.cranelift_opt_level(OptLevel::Speed);
    // Compile large modules on every core.
    config.parallel_compilation(true);
    config
}

fn build(config: &Config) -> Result<Engine, RuntimeError> {
    Engine::new(config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))
}

/// The engine for core modules.
pub fn new_engine() -> Result<Engine, RuntimeError> {
    build(&base_config())
}

/// The engine for the first start of a big core module: Winch, the
/// baseline compiler, with the core engine's other settings (see
/// [`crate::tiered`]). Its code is never stored, and only has to start the
/// container soon, so it leaves out what serves later runs: the table from
/// native to wasm addresses (a trap's backtrace still names each
/// function, without its wasm offset), the native unwind tables (for
/// outside profilers and debuggers; wasmtime's own backtraces do not use
/// them), and Cranelift's optimizations of the trampolines it compiles
/// beside Winch's code. Together they take 12% off a 30 MB module's first
/// start here (yosys: 2.37 -> 2.09 s, median of 6).
pub fn new_baseline_engine() -> Result<Engine, RuntimeError> {
    let mut config = base_config();
    config
        .strategy(Strategy::Winch)
        .generate_address_map(false)
        .native_unwind_info(false)
        .cranelift_opt_level(OptLevel::None)
        .cranelift_regalloc_algorithm(RegallocAlgorithm::SinglePass);
    build(&config)
}

/// How many freed slots, with their resident pages, the pool keeps warm:
/// wasmtime's default of 100, but never more than a quarter of the
/// container's memory limit (what they hold counts against it, and the
/// kernel cannot reclaim it).
fn warm_slots(memory_limit: Option<u64>) -> u32 {
    const DEFAULT: u32 = 100;
    match memory_limit {
        None => DEFAULT,
        Some(limit) => (limit / 4 / KEEP_RESIDENT_BYTES as u64).clamp(1, DEFAULT as u64) as u32,
    }
}

/// The engine for components, in a container with `memory_limit`.
pub fn new_component_engine(memory_limit: Option<u64>) -> Result<Engine, RuntimeError> {
    let mut config = base_config();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
        .total_core_instances(MAX_CONCURRENT_INSTANCES)
        .total_memories(MAX_CONCURRENT_INSTANCES)
        .total_tables(MAX_CONCURRENT_INSTANCES)
        .total_stacks(MAX_CONCURRENT_INSTANCES)
        // A freed slot's memory and tables are reset in place, with memset
        // of only the pages it dirtied (found with the PAGEMAP_SCAN ioctl
        // on Linux 6.7+), instead of madvise: a madvise per request makes
        // the kernel flush every worker thread's TLB (an IPI to each
        // core), which was a third of a busy server's CPU time.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .pagemap_scan(Enabled::Auto)
        .max_unused_warm_slots(warm_slots(memory_limit));
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    build(&config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_slots_hold_at_most_a_quarter_of_the_memory_limit() {
        assert_eq!(warm_slots(None), 100);
        assert_eq!(warm_slots(Some(64 << 20)), 16);
        assert_eq!(warm_slots(Some(1 << 20)), 1);
        assert_eq!(warm_slots(Some(8 << 30)), 100);
    }
}
