//! Core modules (what `wasm32-wasip1` produces): WASI preview 1, one
//! instance, the entry export called once.

use wasmbox_oci::RunPlan;
use wasmtime::{ExternType, InstancePre, Linker, Module, Store, Val};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::guest::{wasi_builder, ExitReason};
use crate::limits::MemoryLimiter;
use crate::RuntimeError;

/// What the store holds for a module.
struct ModuleState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

/// A module that is linked, with its WASI context, ready to instantiate.
pub struct ModuleGuest {
    store: Store<ModuleState>,
    instance_pre: InstancePre<ModuleState>,
    entry: String,
    guest_path: String,
}

impl ModuleGuest {
    /// Checks the entry export and the imports of `module`, and builds its
    /// WASI context from `plan`.
    pub fn prepare(module: Module, plan: &RunPlan) -> Result<Self, RuntimeError> {
        let guest_path = plan.module_guest_path.clone();
        check_entry(&module, &guest_path, &plan.entry)?;
        let engine = module.engine().clone();
        let mut linker: Linker<ModuleState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state| &mut state.wasi)
            .map_err(|e| RuntimeError::Engine(format!("cannot add WASI to the linker: {e:#}")))?;
        let instance_pre = linker
            .instantiate_pre(&module)
            .map_err(|e| RuntimeError::Link {
                guest_path: guest_path.clone(),
                reason: format!("{e:#}"),
            })?;

        let state = ModuleState {
            wasi: wasi_builder(plan)?.build_p1(),
            limiter: MemoryLimiter::new(plan.memory_limit),
        };
        let mut store = Store::new(&engine, state);
        store.limiter(|state| &mut state.limiter);
        Ok(Self {
            store,
            instance_pre,
            entry: plan.entry.clone(),
            guest_path,
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
            Err(e) => ExitReason::from_error(&e, self.store.data().limiter.refused()),
        };
        reason.report(&self.guest_path);
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
