//! The wasmtime `Engine` of a runner process.
//!
//! One engine per process, with settings that are part of the compiled
//! cache's key (wasmtime's own compatibility hash covers them), so a change
//! of settings or of wasmtime version can never load a stale artifact.

use wasmtime::{Config, Engine, OptLevel};

use crate::RuntimeError;

/// Builds the engine every runner uses.
pub fn new_engine() -> Result<Engine, RuntimeError> {
    let mut config = Config::new();
    config.cranelift_opt_level(OptLevel::Speed);
    // Compile large modules on every core.
    config.parallel_compilation(true);
    Engine::new(&config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))
}
