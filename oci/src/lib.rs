//! The OCI side of wasmbox, with no I/O beyond reading files.
//!
//! - [`plan`]: the OCI runtime spec (`config.json` of a bundle) mapped onto a
//!   [`RunPlan`], the only thing the wasm runner needs to know about a
//!   container.
//! - [`wasm`]: telling a WebAssembly module or component from anything else
//!   by its bytes, with errors that say what the file is instead.
//! - [`artifact`]: which manifest and layer of a wasm OCI artifact's image
//!   is the `.wasm`.
//! - [`http`]: where a wasi:http component listens, and its request
//!   deadline.
//! - [`confine`]: the spec's capabilities, seccomp profile and the rest of
//!   what the runner drops before the guest runs.
//! - [`protocol`]: how the shim hands a plan to a runner process and learns
//!   whether it is ready, over two pipes.
//! - [`rootfs`]: resolving a path inside a container's rootfs the way the
//!   container would see it, symlinks included, without escaping it.
//!
//! - [`userns`]: the spec's user namespace and id-mapped mounts.
//! - [`trust`]: whether a cache directory or file could have been written
//!   by anyone but root.
//!
//! Every refusal is a typed [`PlanError`] whose message names the file or the
//! field and says why, so that `ctr run` can show it to the user as it is.

pub mod artifact;
pub mod compile;
pub mod confine;
pub mod http;
pub mod plan;
pub mod protocol;
pub mod rootfs;
pub mod trust;
pub mod userns;
pub mod wasm;

pub use compile::TieredCompile;
pub use confine::{confinement_from_spec, CapabilitySets, Confinement};
pub use http::{HttpSettings, DEFAULT_HTTP_ADDR, DEFAULT_REQUEST_TIMEOUT};
pub use plan::{
    load_spec, plan_for_layer, plan_from_bundle, plan_from_spec, LayerModule, Preopen, RlimitPlan,
    RunPlan, SandboxPlan, SkippedMount, UserPlan, DEFAULT_ENTRY,
};
pub use userns::UserNamespacePlan;
pub use wasm::{detect_wasm, native_entrypoint, NativeEntrypoint, WasmKind};
pub use wasmbox_idmap::{IdMapping, IdMappings};

use std::path::{Path, PathBuf};

/// Where the node-wide cache lives unless `WASMBOX_CACHE_DIR` says
/// otherwise: compiled modules (written by the runner) and wasm layers
/// fetched from containerd's content store (written by the shim).
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/wasmbox/cache";
/// The environment variable that moves the cache.
pub const CACHE_DIR_ENV: &str = "WASMBOX_CACHE_DIR";

/// The cache directory: `$WASMBOX_CACHE_DIR`, or [`DEFAULT_CACHE_DIR`].
pub fn cache_dir() -> PathBuf {
    std::env::var_os(CACHE_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR))
}

/// The extension of the wasm layers in the cache.
pub const LAYER_EXT: &str = "wasm";

/// Where the cache in `dir` keeps the wasm layer whose sha256 is `hex`.
pub fn layer_path(dir: &Path, hex: &str) -> PathBuf {
    dir.join(format!("{hex}.{LAYER_EXT}"))
}

/// Marks a file of the cache as just used: its mtime is what the cache's
/// least-recently-used eviction goes by.
pub fn mark_used(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

impl PlanError {
    /// The entrypoint's host path, when the error is that it is not wasm.
    pub fn not_wasm_path(&self) -> Option<&Path> {
        match self {
            PlanError::NotWasm { host_path, .. } => Some(host_path),
            _ => None,
        }
    }

    /// Whether the entrypoint is simply not in the rootfs (no args, or no
    /// such file): the container may then be a wasm OCI artifact, whose
    /// wasm is a layer of its image.
    pub fn entrypoint_not_in_rootfs(&self) -> bool {
        matches!(
            self,
            PlanError::NoArgs | PlanError::EntrypointMissing { .. }
        )
    }
}

/// Why a bundle cannot be turned into a runnable plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read the bundle's spec {path}: {source}")]
    ReadSpec {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("the spec has no process: set process.args to the .wasm file to run")]
    NoProcess,
    #[error("process.args is empty: its first element must name the .wasm file to run")]
    NoArgs,
    #[error("the spec has no root: set root.path to the container's rootfs")]
    NoRoot,
    #[error("process.args[0] {arg:?} has an empty function name after '#'")]
    EmptyEntryName { arg: String },
    #[error("entrypoint {guest_path}: no such file in the container's rootfs ({host_path})")]
    EntrypointMissing {
        guest_path: String,
        host_path: PathBuf,
    },
    #[error("entrypoint {guest_path}: {reason}")]
    EntrypointUnresolvable { guest_path: String, reason: String },
    #[error("entrypoint {guest_path} ({host_path}) is not a WebAssembly module: {what}")]
    NotWasm {
        guest_path: String,
        host_path: PathBuf,
        what: String,
    },
    #[error("cannot read entrypoint {guest_path} ({host_path}): {source}")]
    ReadEntrypoint {
        guest_path: String,
        host_path: PathBuf,
        source: std::io::Error,
    },
    #[error("process.env entry {entry:?} is not of the form NAME=value")]
    BadEnv { entry: String },
    #[error("process.cwd {cwd:?} must be an absolute path")]
    RelativeCwd { cwd: String },
    #[error("mount at {destination}: {reason}")]
    Mount { destination: String, reason: String },
    #[error("{setting} {value:?} is not a listen address like 0.0.0.0:8080: {reason}")]
    BadHttpAddr {
        setting: String,
        value: String,
        reason: String,
    },
    #[error("{setting} {value:?}: {reason}")]
    BadSetting {
        setting: String,
        value: String,
        reason: &'static str,
    },
    #[error("process.args[0] {arg:?}: '#{entry}' picks an export of a core module; a component runs through wasi:cli/run or wasi:http")]
    EntryOnComponent { arg: String, entry: String },
    #[error("process.terminal is true, but wasmbox does not support a terminal yet: run without -t/--tty")]
    TerminalUnsupported,
    #[error("{field}: {reason}")]
    Seccomp { field: String, reason: String },
    #[error("{field}: {reason}")]
    UserNamespace { field: String, reason: String },
}
