//! Preparing and running one container's guest: a core module, a command
//! component (`wasi:cli/run`) or a wasi:http component.
//!
//! [`PreparedGuest::prepare`] does everything that can fail because of the
//! user's input — reading and compiling (or loading from the cache) the
//! binary, resolving its WASI imports, finding what to call, opening the
//! preopens, binding the HTTP listener — so those errors surface at Create.
//! [`PreparedGuest::run`] then only instantiates and calls it.
//!
//! Which of the three a binary is comes from the binary itself: its header
//! says module or component, and a component that exports
//! `wasi:http/incoming-handler` is served, one that exports `wasi:cli/run`
//! is run.
//!
//! Exit codes, as the task reports them:
//! - the guest returns from its entry (or `wasi:cli/run` returns ok): 0;
//! - the guest calls `proc_exit(n)` / `wasi:cli/exit`: n (an error result
//!   of `wasi:cli/run` or `exit(err)`: 1);
//! - the guest traps: [`TRAP_EXIT_CODE`] (134, as a native program that
//!   aborts), with the trap message on the container's stderr;
//! - the guest is stopped for memory — it asked to grow a linear memory
//!   past `linux.resources.memory.limit`, the grow failed, and it then
//!   trapped or aborted: [`OOM_EXIT_CODE`] (137, what the kernel's OOM
//!   killer gives under runc), the reason on stderr, and the runner tells
//!   the shim, which publishes a TaskOOM event (Kubernetes: OOMKilled);
//! - a wasi:http server stopped by SIGTERM after its in-flight requests
//!   are done: 0;
//! - SIGTERM / SIGKILL from `ctr task kill`: 143 / 137, as the shim reports
//!   any signal death as 128 + the signal number.

use std::io::Write;

use wasmbox_oci::{RunPlan, WasmKind};
use wasmtime::Engine;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cache::{CacheOutcome, ModuleCache};
use crate::component::{CommandGuest, ComponentGuest};
use crate::http::HttpGuest;
use crate::limits::RefusedGrowth;
use crate::module::ModuleGuest;
use crate::stdio::ContainerOutput;
use crate::RuntimeError;

/// The exit code of a guest that trapped: that of a native program killed by
/// SIGABRT, which is what a trap is closest to. Deliberately not 137, so a
/// trap is never mistaken for a kill or an OOM.
pub const TRAP_EXIT_CODE: i32 = 134;

/// The exit code of a guest stopped for memory: the same as a container
/// the kernel's OOM killer stopped, so tools that know one know the other.
pub const OOM_EXIT_CODE: i32 = 137;

/// How a guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// Returned from its entry (0) or called `proc_exit(code)`.
    Exited(i32),
    /// Trapped; carries wasmtime's message with the wasm backtrace.
    Trapped(String),
    /// Trapped after a memory growth past the limit was refused.
    OutOfMemory(RefusedGrowth),
}

impl ExitReason {
    /// The process exit code for this reason.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExitReason::Exited(code) => *code,
            ExitReason::Trapped(_) => TRAP_EXIT_CODE,
            ExitReason::OutOfMemory(_) => OOM_EXIT_CODE,
        }
    }

    /// How a call into the guest that failed with `error` ended: an exit
    /// the guest asked for, a refused memory growth, or a trap.
    pub(crate) fn from_error(error: &wasmtime::Error, refused: Option<RefusedGrowth>) -> Self {
        match (error.downcast_ref::<I32Exit>(), refused) {
            (Some(exit), _) => ExitReason::Exited(exit.0),
            (None, Some(refused)) => ExitReason::OutOfMemory(refused),
            (None, None) => ExitReason::Trapped(format!("{error:?}")),
        }
    }

    /// Tells the container's stderr why the guest stopped, when it did not
    /// stop by itself.
    pub(crate) fn report(&self, guest_path: &str) {
        let _ = std::io::stdout().flush();
        let mut stderr = std::io::stderr();
        match self {
            ExitReason::Trapped(message) => {
                let _ = writeln!(
                    stderr,
                    "wasmbox: {guest_path} trapped (exit code {TRAP_EXIT_CODE}): {message}"
                );
            }
            ExitReason::OutOfMemory(refused) => {
                let _ = writeln!(
                    stderr,
                    "wasmbox: {guest_path} stopped: out of memory (exit code {OOM_EXIT_CODE}): it asked for \
                     {} MiB of linear memory, and the container's memory limit is {} MiB",
                    refused.desired >> 20,
                    refused.limit >> 20
                );
            }
            ExitReason::Exited(_) => {}
        }
    }
}

/// What kind of guest a prepared one is, for the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    Module,
    Command,
    Http,
}

impl GuestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Module => "module",
            GuestKind::Command => "command-component",
            GuestKind::Http => "http-component",
        }
    }
}

/// A guest that is ready to run.
pub struct PreparedGuest {
    runnable: Runnable,
    /// Whether the binary came from the cache, for logs and tests.
    pub cache_outcome: CacheOutcome,
}

enum Runnable {
    Module(ModuleGuest),
    Command(Box<CommandGuest>),
    Http(HttpGuest),
}

impl PreparedGuest {
    /// Loads and checks `plan`'s binary and builds its WASI context.
    /// `engine` comes from [`crate::engine::new_engine`] for a module and
    /// [`crate::engine::new_component_engine`] for a component; a missing
    /// module of at least `tiered_min_bytes` starts on baseline code (see
    /// [`crate::tiered`]).
    pub fn prepare(
        engine: &Engine,
        cache: &ModuleCache,
        plan: &RunPlan,
        tiered_min_bytes: u64,
    ) -> Result<Self, RuntimeError> {
        let wasm = std::fs::read(&plan.module_host_path).map_err(|source| RuntimeError::Read {
            path: plan.module_host_path.clone(),
            source,
        })?;
        let invalid = |e: wasmtime::Error| RuntimeError::InvalidModule {
            guest_path: plan.module_guest_path.clone(),
            reason: format!("{e:#}"),
        };
        let (runnable, cache_outcome) = match plan.kind {
            WasmKind::Module => {
                let (module, outcome) =
                    crate::tiered::load_module(engine, cache, &wasm, tiered_min_bytes)
                        .map_err(invalid)?;
                (
                    Runnable::Module(ModuleGuest::prepare(module, plan)?),
                    outcome,
                )
            }
            WasmKind::Component => {
                let (component, outcome) = cache.load_or_compile(engine, &wasm).map_err(invalid)?;
                let runnable = match ComponentGuest::prepare(engine, component, plan)? {
                    ComponentGuest::Command(command) => Runnable::Command(command),
                    ComponentGuest::Http(proxy) => Runnable::Http(HttpGuest::prepare(proxy, plan)?),
                };
                (runnable, outcome)
            }
        };
        Ok(Self {
            runnable,
            cache_outcome,
        })
    }

    pub fn kind(&self) -> GuestKind {
        match self.runnable {
            Runnable::Module(_) => GuestKind::Module,
            Runnable::Command(_) => GuestKind::Command,
            Runnable::Http(_) => GuestKind::Http,
        }
    }

    /// Runs the guest until it ends.
    pub fn run(self) -> ExitReason {
        match self.runnable {
            Runnable::Module(guest) => guest.run(),
            Runnable::Command(guest) => guest.run(),
            Runnable::Http(guest) => guest.run(),
        }
    }
}

/// The guest's args, env, stdio and preopens, from the plan, for a module
/// or a component.
pub(crate) fn wasi_builder(plan: &RunPlan) -> Result<WasiCtxBuilder, RuntimeError> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .inherit_stdin()
        .stdout(ContainerOutput::Stdout)
        .stderr(ContainerOutput::Stderr)
        .args(&plan.args)
        .envs(&plan.env);
    // WASI preview 1 has no working directory of its own; wasi-libc starts
    // at `/`. PWD tells programs that look for it where they are.
    if !plan.env.iter().any(|(name, _)| name == "PWD") {
        builder.env("PWD", &plan.cwd);
    }
    for preopen in &plan.preopens {
        let perms = if preopen.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&preopen.host_path, &preopen.guest_path, perms)
            .map_err(|e| RuntimeError::Preopen {
                host_path: preopen.host_path.clone(),
                guest_path: preopen.guest_path.clone(),
                reason: format!("{e:#}"),
            })?;
    }
    Ok(builder)
}
