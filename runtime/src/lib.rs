//! The only part of wasmbox that knows wasmtime.
//!
//! - [`engine`]: the one `Engine` of a runner process, with its settings.
//! - [`cache`]: the on-disk compiled-module cache, keyed by the module's
//!   sha256 and the engine's settings, so a module is compiled once per node.
//! - [`identity`]: rlimits and the switch to the container's user.
//! - [`stdio`]: the guest's stdout and stderr, which survive a reader going away.
//! - [`pidns`]: the fork that puts the guest inside a PID namespace.
//! - [`limits`]: the guest's memory limit, and telling an OOM from a trap.
//! - [`guest`]: loading a [`wasmbox_oci::RunPlan`]'s module, checking it can
//!   run (valid, imports satisfied, entry export present) and running it.

pub mod cache;
pub mod engine;
pub mod guest;
pub mod identity;
pub mod limits;
pub mod pidns;
pub mod stdio;

pub use guest::{ExitReason, PreparedGuest, OOM_EXIT_CODE, TRAP_EXIT_CODE};

use std::path::PathBuf;

/// Why a guest cannot be prepared or run. Messages name the file and the
/// reason; the shim hands them to the user unchanged.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{guest_path} is not a valid WebAssembly module: {reason}")]
    InvalidModule { guest_path: String, reason: String },
    #[error("{guest_path} is a WebAssembly component; wasmbox runs only core modules (wasm32-wasip1) so far")]
    ComponentUnsupported { guest_path: String },
    #[error("{guest_path} has no exported function {entry:?}{hint}")]
    MissingExport {
        guest_path: String,
        entry: String,
        hint: String,
    },
    #[error("{guest_path}: export {entry:?} takes parameters; only functions without parameters can be an entrypoint")]
    EntryTakesParams { guest_path: String, entry: String },
    #[error("{guest_path} cannot be linked: {reason}")]
    Link { guest_path: String, reason: String },
    #[error("cannot preopen {host_path} as {guest_path}: {reason}")]
    Preopen {
        host_path: PathBuf,
        guest_path: String,
        reason: String,
    },
    #[error("{0}")]
    Identity(String),
    #[error("the wasm engine cannot be set up: {0}")]
    Engine(String),
}
