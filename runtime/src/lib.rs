//! The only part of wasmbox that knows wasmtime.
//!
//! - [`engine`]: the one `Engine` of a runner process, with its settings.
//! - [`cache`]: the on-disk compiled-module cache, keyed by the module's
//!   sha256 and the engine's settings, so a module is compiled once per node.
//! - [`tiered`]: the first start of a big module on baseline code, while
//!   the optimized code is compiled beside it for the later starts.
//! - [`identity`]: rlimits and the switch to the container's user.
//! - [`confine`]: the second wall, dropped into before the guest runs:
//!   empty root, Landlock, capabilities, no_new_privs, seccomp.
//! - [`stdio`]: the guest's stdout and stderr, which survive a reader going away.
//! - [`pidns`]: the runner as PID 1 of its container's PID namespace.
//! - [`limits`]: the guest's memory limit, and telling an OOM from a trap.
//! - [`guest`]: loading a [`wasmbox_oci::RunPlan`]'s binary, checking it can
//!   run (valid, imports satisfied, something to call) and running it, as
//!   one of:
//!   - [`module`]: a core module (WASI preview 1);
//!   - [`component`]: a command component (`wasi:cli/run`, WASI 0.2);
//!   - [`http`]: a wasi:http component, served over HTTP/1.1 and h2c.

pub mod cache;
pub mod component;
pub mod confine;
pub mod engine;
pub mod guest;
pub mod http;
pub mod identity;
pub mod limits;
pub mod logger;
pub mod module;
pub mod pidns;
pub mod shim_watch;
pub mod stdio;
pub mod tiered;

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
    #[error("{guest_path} is a component that exports neither wasi:cli/run nor wasi:http/incoming-handler, so there is nothing to run (it exports {exports})")]
    NothingToRun { guest_path: String, exports: String },
    #[error("{guest_path} is a wasi:http component, and it cannot listen on {addr}: {reason} (set the address with the env var WASMBOX_HTTP_ADDR or the annotation wasmbox.io/http-addr)")]
    Listen {
        guest_path: String,
        addr: std::net::SocketAddr,
        reason: String,
    },
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
