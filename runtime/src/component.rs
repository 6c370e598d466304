//! Components (what `wasm32-wasip2` produces): WASI 0.2 on the async
//! engine. A component that exports `wasi:http/incoming-handler` is served
//! (see [`crate::http`]); one that exports `wasi:cli/run` is run once, like
//! a module.
//!
//! Components built against any WASI 0.2.x link: wasmtime matches an import
//! such as `wasi:http/types@0.2.12` to the 0.2 version it implements, as
//! 0.2 releases only add to the interfaces.

use wasmbox_oci::RunPlan;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::guest::{wasi_builder, ExitReason};
use crate::limits::MemoryLimiter;
use crate::RuntimeError;

const CLI_RUN: &str = "wasi:cli/run";
const HTTP_HANDLER: &str = "wasi:http/incoming-handler";

/// What the store of one component instance holds.
pub struct ComponentState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
}

impl ComponentState {
    /// A fresh context from `plan`. `stdin` is false for HTTP requests:
    /// the container's stdin is not one request's.
    pub fn new(plan: &RunPlan, stdin: bool) -> Result<Self, RuntimeError> {
        let mut builder = wasi_builder(plan)?;
        // The container's network namespace is the boundary, as for any
        // container: the guest may use whatever it can reach.
        builder
            .inherit_network()
            .allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(true)
            .initial_cwd(&plan.cwd);
        if !stdin {
            builder.stdin(wasmtime_wasi::p2::pipe::ClosedInputStream);
        }
        Ok(Self {
            wasi: builder.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(plan.memory_limit),
        })
    }

    /// A store for one instance, with the memory limit applied.
    pub fn into_store(self, engine: &Engine) -> Store<Self> {
        let mut store = Store::new(engine, self);
        store.limiter(|state| &mut state.limiter);
        store
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

/// A linked component, by what it exports.
pub enum ComponentGuest {
    Command(Box<CommandGuest>),
    Http(ProxyPre<ComponentState>),
}

impl ComponentGuest {
    /// Links `component` against WASI 0.2 and wasi:http, and picks how to
    /// run it from its exports.
    pub fn prepare(
        engine: &Engine,
        component: Component,
        plan: &RunPlan,
    ) -> Result<Self, RuntimeError> {
        let guest_path = &plan.module_guest_path;
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports_interface = |interface: &str| {
            exports.iter().any(|name| {
                name.strip_prefix(interface)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('@'))
            })
        };
        let serves = exports_interface(HTTP_HANDLER);
        if !serves && !exports_interface(CLI_RUN) {
            return Err(RuntimeError::NothingToRun {
                guest_path: guest_path.clone(),
                exports: if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                },
            });
        }

        let mut linker: Linker<ComponentState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .map_err(|e| RuntimeError::Engine(format!("cannot add WASI to the linker: {e:#}")))?;
        let link_error = |e: wasmtime::Error| RuntimeError::Link {
            guest_path: guest_path.clone(),
            reason: format!("{e:#}"),
        };
        let instance_pre = linker.instantiate_pre(&component).map_err(link_error)?;
        if serves {
            return Ok(ComponentGuest::Http(
                ProxyPre::new(instance_pre).map_err(link_error)?,
            ));
        }
        Ok(ComponentGuest::Command(Box::new(CommandGuest {
            pre: CommandPre::new(instance_pre).map_err(link_error)?,
            state: ComponentState::new(plan, true)?,
            guest_path: guest_path.clone(),
        })))
    }
}

/// A command component: `wasi:cli/run` is called once.
pub struct CommandGuest {
    pre: CommandPre<ComponentState>,
    state: ComponentState,
    guest_path: String,
}

impl CommandGuest {
    pub fn run(self) -> ExitReason {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let reason = ExitReason::Trapped(format!("cannot start the async runtime: {e}"));
                reason.report(&self.guest_path);
                return reason;
            }
        };
        let CommandGuest {
            pre,
            state,
            guest_path,
        } = self;
        let mut store = state.into_store(pre.engine());
        // Nothing ticks the epoch in a command's runner: no deadline.
        store.set_epoch_deadline(u64::MAX);
        let result = runtime.block_on(async {
            let command = pre.instantiate_async(&mut store).await?;
            command.wasi_cli_run().call_run(&mut store).await
        });
        let reason = match result {
            Ok(Ok(())) => ExitReason::Exited(0),
            Ok(Err(())) => ExitReason::Exited(1),
            Err(e) => ExitReason::from_error(&e, store.data().limiter.refused()),
        };
        reason.report(&guest_path);
        reason
    }
}
