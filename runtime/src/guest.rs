//! Preparing and running one container's guest.
//!
//! [`PreparedGuest::prepare`] does everything that can fail because of the
//! user's input — reading and compiling (or loading from the cache) the
//! module, resolving its WASI imports, finding the entry export, opening the
//! preopens — so those errors surface at Create. [`PreparedGuest::run`] then
//! only instantiates and calls the entry.
//!
//! Exit codes, as the task reports them:
//! - the guest returns from its entry: 0;
//! - the guest calls `proc_exit(n)`: n;
//! - the guest traps: [`TRAP_EXIT_CODE`] (134, as a native program that
//!   aborts), with the trap message on the container's stderr;
//! - the guest is stopped for memory — it asked to grow a linear memory
//!   past `linux.resources.memory.limit`, the grow failed, and it then
//!   trapped or aborted: [`OOM_EXIT_CODE`] (137, what the kernel's OOM
//!   killer gives under runc), the reason on stderr, and the runner tells
//!   the shim, which publishes a TaskOOM event (Kubernetes: OOMKilled);
//! - SIGTERM / SIGKILL from `ctr task kill`: 143 / 137, as the shim reports
//!   any signal death as 128 + the signal number.

use std::io::Write;

use wasmbox_oci::{RunPlan, WasmKind};
use wasmtime::{Engine, ExternType, InstancePre, Linker, Module, Store, Val};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cache::{CacheOutcome, ModuleCache};
use crate::limits::{MemoryLimiter, RefusedGrowth};
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
}

/// What the store holds for the guest.
struct GuestState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

/// A guest that is ready to run.
pub struct PreparedGuest {
    store: Store<GuestState>,
    instance_pre: InstancePre<GuestState>,
    entry: String,
    guest_path: String,
    /// Whether the module came from the cache, for logs and tests.
    pub cache_outcome: CacheOutcome,
}

impl PreparedGuest {
    /// Loads and checks `plan`'s module and builds its WASI context.
    pub fn prepare(
        engine: &Engine,
        cache: &ModuleCache,
        plan: &RunPlan,
    ) -> Result<Self, RuntimeError> {
        let guest_path = plan.module_guest_path.clone();
        if plan.kind == WasmKind::Component {
            return Err(RuntimeError::ComponentUnsupported { guest_path });
        }
        let wasm = std::fs::read(&plan.module_host_path).map_err(|source| RuntimeError::Read {
            path: plan.module_host_path.clone(),
            source,
        })?;
        let (module, cache_outcome) =
            cache
                .load_or_compile(engine, &wasm)
                .map_err(|e| RuntimeError::InvalidModule {
                    guest_path: guest_path.clone(),
                    reason: format!("{e:#}"),
                })?;
        check_entry(&module, &guest_path, &plan.entry)?;

        let mut linker: Linker<GuestState> = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state| &mut state.wasi)
            .map_err(|e| RuntimeError::Engine(format!("cannot add WASI to the linker: {e:#}")))?;
        let instance_pre = linker
            .instantiate_pre(&module)
            .map_err(|e| RuntimeError::Link {
                guest_path: guest_path.clone(),
                reason: format!("{e:#}"),
            })?;

        let state = GuestState {
            wasi: wasi_context(plan)?,
            limiter: MemoryLimiter::new(plan.memory_limit),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        Ok(Self {
            store,
            instance_pre,
            entry: plan.entry.clone(),
            guest_path,
            cache_outcome,
        })
    }

    /// Instantiates the module and calls its entry, until the guest ends.
    pub fn run(mut self) -> ExitReason {
        let result = self
            .instance_pre
            .instantiate(&mut self.store)
            .and_then(|instance| {
                let func = instance
                    .get_func(&mut self.store, &self.entry)
                    .ok_or_else(|| wasmtime::format_err!("export {:?} vanished", self.entry))?;
                let mut results = vec![Val::I32(0); func.ty(&self.store).results().len()];
                func.call(&mut self.store, &[], &mut results)
            });
        let reason = match result {
            Ok(()) => ExitReason::Exited(0),
            Err(e) => match (
                e.downcast_ref::<I32Exit>(),
                self.store.data().limiter.refused(),
            ) {
                (Some(exit), _) => ExitReason::Exited(exit.0),
                (None, Some(refused)) => ExitReason::OutOfMemory(refused),
                (None, None) => ExitReason::Trapped(format!("{e:?}")),
            },
        };
        let _ = std::io::stdout().flush();
        let mut stderr = std::io::stderr();
        match &reason {
            ExitReason::Trapped(message) => {
                let _ = writeln!(
                    stderr,
                    "wasmbox: {} trapped (exit code {TRAP_EXIT_CODE}): {message}",
                    self.guest_path
                );
            }
            ExitReason::OutOfMemory(refused) => {
                let _ = writeln!(
                    stderr,
                    "wasmbox: {} stopped: out of memory (exit code {OOM_EXIT_CODE}): it asked for \
                     {} MiB of linear memory, and the container's memory limit is {} MiB",
                    self.guest_path,
                    refused.desired >> 20,
                    refused.limit >> 20
                );
            }
            ExitReason::Exited(_) => {}
        }
        reason
    }
}

/// Checks that `entry` is an exported function the runner can call.
fn check_entry(module: &Module, guest_path: &str, entry: &str) -> Result<(), RuntimeError> {
    match module.get_export(entry) {
        Some(ExternType::Func(ty)) if ty.params().len() == 0 => Ok(()),
        Some(ExternType::Func(_)) => Err(RuntimeError::EntryTakesParams {
            guest_path: guest_path.to_string(),
            entry: entry.to_string(),
        }),
        _ => {
            let functions: Vec<String> = module
                .exports()
                .filter(|e| matches!(e.ty(), ExternType::Func(_)))
                .map(|e| e.name().to_string())
                .collect();
            let hint = if functions.is_empty() {
                " (it exports no functions)".to_string()
            } else {
                format!(" (its exported functions: {})", functions.join(", "))
            };
            Err(RuntimeError::MissingExport {
                guest_path: guest_path.to_string(),
                entry: entry.to_string(),
                hint,
            })
        }
    }
}

/// The guest's args, env, stdio and preopens, from the plan.
fn wasi_context(plan: &RunPlan) -> Result<WasiP1Ctx, RuntimeError> {
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
    Ok(builder.build_p1())
}
