//! The first start of a big core module: baseline code now, optimized code
//! for every later start.
//!
//! Cranelift's optimizing compile of a 30 MB module takes tens of seconds,
//! and a kubelet waits that long for the first pod of a new image on each
//! node. Winch, wasmtime's baseline compiler, translates the same module in
//! a fraction of that time into slower code. So:
//!
//! - A start finds the optimized code in the cache: it runs that (a hit).
//! - A start of a core module that misses, of at least the size
//!   [`baseline_from`] gives, compiles it with Winch, in memory, and runs that
//!   ([`CacheOutcome::Baseline`]). The runner then asks the shim for the
//!   optimized compile ([`wasmbox_oci::protocol::OPTIMIZE_NOTICE`]), which
//!   runs as `wasmbox-runner --optimize PATH` ([`optimize`]) beside the
//!   container, not in it, and stores Cranelift's code in the cache (under
//!   the cache's lock, so once per node), where the next start finds it.
//! - Smaller modules, components, modules Winch cannot compile (a proposal
//!   it lacks) and an untrusted cache (nothing could be stored) compile
//!   with Cranelift at once, as before.
//!
//! Baseline code is never stored: the cache holds one entry per module,
//! the optimized one, and a second start before it is there simply runs
//! baseline code again.

use std::path::Path;
use std::time::Instant;

use wasmbox_oci::TieredCompile;
use wasmtime::{Engine, Module};

use crate::cache::{CacheOutcome, ModuleCache};
use crate::engine::{new_baseline_engine, new_engine};

/// The environment variable that sets the size, in bytes, from which a
/// core module's first start runs baseline code.
pub const TIERED_MIN_BYTES_ENV: &str = "WASMBOX_TIERED_MIN_BYTES";

/// The default: 1 MiB of wasm, about where Cranelift's compile passes a
/// second on this project's 2-core machines (the SQLite shell is 1.5 MB).
pub const DEFAULT_TIERED_MIN_BYTES: u64 = 1 << 20;

/// From what size on a missing module starts on baseline code, as the
/// container's `setting` and the node's threshold say: for `auto`, the
/// node's `WASMBOX_TIERED_MIN_BYTES` (`off`, or any value that is not a
/// number, turns tiering off).
pub fn baseline_from(setting: TieredCompile) -> u64 {
    match setting {
        TieredCompile::On => 0,
        TieredCompile::Off => u64::MAX,
        TieredCompile::Auto => match std::env::var(TIERED_MIN_BYTES_ENV) {
            Err(_) => DEFAULT_TIERED_MIN_BYTES,
            Ok(text) => text.trim().parse().unwrap_or(u64::MAX),
        },
    }
}

/// Loads a core module for `engine` (the optimizing one): from the cache,
/// as baseline code when it is missing and at least `min_bytes` long, or
/// compiled and stored now.
pub fn load_module(
    engine: &Engine,
    cache: &ModuleCache,
    wasm: &[u8],
    min_bytes: u64,
) -> wasmtime::Result<(Module, CacheOutcome)> {
    if wasm.len() as u64 >= min_bytes && cache.trusted() {
        if let Some(module) = cache.load_existing::<Module>(engine, wasm) {
            return Ok((module, CacheOutcome::Hit));
        }
        match compile_baseline(wasm) {
            Ok(module) => return Ok((module, CacheOutcome::Baseline)),
            Err(e) => log::debug!("baseline compile refused ({e:#}); compiling optimized now"),
        }
    }
    cache.load_or_compile(engine, wasm)
}

fn compile_baseline(wasm: &[u8]) -> wasmtime::Result<Module> {
    let engine = new_baseline_engine().map_err(wasmtime::Error::msg)?;
    crate::cache::compile_scoped(&engine, wasm)
}

/// What [`optimize`] did, for the shim's log.
#[derive(Debug)]
pub struct Optimized {
    pub outcome: CacheOutcome,
    pub millis: f64,
    /// What the compile was confined to.
    pub confined: String,
}

/// Why [`optimize`] did not store the optimized code.
#[derive(Debug, thiserror::Error)]
pub enum OptimizeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot confine the compile: {0}")]
    Confine(#[from] crate::confine::ConfineError),
    #[error("the wasm engine cannot be set up: {0}")]
    Engine(String),
    #[error("cannot compile {path}: {reason}")]
    Compile { path: String, reason: String },
}

/// The optimized compile of the core module at `path` into the cache: the
/// file is read whole (and closed: the container's rootfs may be unmounted
/// at any time now), the process confines itself (see
/// [`crate::confine::confine_compiler`]) and lowers its CPU priority to
/// SCHED_IDLE, and Cranelift's code is stored under the cache's lock.
pub fn optimize(path: &Path, cache: &ModuleCache) -> Result<Optimized, OptimizeError> {
    let started = Instant::now();
    let wasm = std::fs::read(path).map_err(|source| OptimizeError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let confined = crate::confine::confine_compiler(cache.dir())?;
    let engine = new_engine().map_err(|e| OptimizeError::Engine(e.to_string()))?;
    let (_, outcome) = cache
        .load_or_compile::<Module>(&engine, &wasm)
        .map_err(|e| OptimizeError::Compile {
            path: path.display().to_string(),
            reason: format!("{e:#}"),
        })?;
    Ok(Optimized {
        outcome,
        millis: started.elapsed().as_secs_f64() * 1000.0,
        confined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::EMPTY_START;

    /// An empty cache in a temporary directory, and the optimizing engine.
    fn empty_cache() -> (tempfile::TempDir, ModuleCache, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::new(dir.path().join("cache"), u64::MAX);
        (dir, cache, new_engine().unwrap())
    }

    #[test]
    fn a_missing_big_module_starts_on_baseline_code_and_stores_nothing() {
        let (_dir, cache, engine) = empty_cache();
        let (module, outcome) = load_module(&engine, &cache, EMPTY_START, 0).unwrap();
        assert_eq!(outcome, CacheOutcome::Baseline);
        assert!(module.get_export("_start").is_some());
        assert!(!cache.entry_path(&engine, EMPTY_START).exists());

        // Once the optimized code is stored, that is what starts.
        cache
            .load_or_compile::<Module>(&engine, EMPTY_START)
            .unwrap();
        let (_, outcome) = load_module(&engine, &cache, EMPTY_START, 0).unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
    }

    #[test]
    fn a_small_module_is_optimized_at_once() {
        let (_dir, cache, engine) = empty_cache();
        let (_, outcome) = load_module(&engine, &cache, EMPTY_START, 1 << 20).unwrap();
        assert_eq!(outcome, CacheOutcome::Compiled);
    }

    /// Baseline code has no native-to-wasm address map: a trap's backtrace
    /// still has the function, without its offset in the module.
    #[test]
    fn a_trap_in_baseline_code_names_its_function() {
        // (func (export "_start") unreachable)
        const TRAPS: &[u8] = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\
            \x07\x0a\x01\x06_start\0\0\x0a\x05\x01\x03\0\0\x0b";
        let module = compile_baseline(TRAPS).unwrap();
        let mut store = wasmtime::Store::new(module.engine(), ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .unwrap();
        let error = start.call(&mut store, ()).unwrap_err();
        assert_eq!(
            error.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::UnreachableCodeReached)
        );
        let backtrace = error.downcast_ref::<wasmtime::WasmBacktrace>().unwrap();
        let frame = &backtrace.frames()[0];
        assert_eq!(frame.func_index(), 0);
        assert_eq!(frame.module_offset(), None);
    }

    #[test]
    fn invalid_wasm_gets_the_optimizing_compiler_s_error() {
        let (_dir, cache, engine) = empty_cache();
        let error = load_module(&engine, &cache, b"\0asm\x01\0\0\0\x99", 0).unwrap_err();
        assert!(format!("{error:#}").contains("section"), "{error:#}");
    }
}
