//! The two kinds of container one shim serves, behind one interface.
//!
//! - [`wasm::WasmContainer`]: a `.wasm` entrypoint (or a pod sandbox),
//!   run by a `wasmbox-runner` process;
//! - [`native::NativeContainer`]: anything else (an ELF, a `#!` script),
//!   run through runc from the same bundle, as containerd's runc shim
//!   would.
//!
//! [`create`] is the one place that decides which; the Task API
//! (`crate::task`) then only dispatches to the [`Container`] it got.

pub mod kind;
pub mod native;
pub mod options;
pub mod process;
pub mod runc;
pub mod wasm;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_shim::api::{CreateTaskRequest, ExecProcessRequest, StateResponse};
use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::ttrpc::Code;
use containerd_shim::protos::types::task::ProcessInfo;
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;

use crate::events::EventPublisher;
use crate::exits::{ExitInfo, ExitReceiver, ExitRegistry};

/// Why a Task API call on a container failed; each maps to a ttrpc code.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
}

impl ContainerError {
    pub fn code(&self) -> Code {
        match self {
            ContainerError::NotFound(_) => Code::NOT_FOUND,
            ContainerError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ContainerError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ContainerError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ContainerError::Internal(_) => Code::INTERNAL,
        }
    }
}

pub type Result<T> = std::result::Result<T, ContainerError>;

/// What every container of one shim shares: containerd's address and
/// namespace, the exit registry, the event publisher, and the optimized
/// compiles it runs.
pub struct Shared {
    pub namespace: String,
    pub containerd_address: String,
    pub exits: ExitRegistry,
    pub publisher: EventPublisher,
    pub optimizer: crate::optimize::Optimizer,
}

impl Shared {
    pub async fn publish(&self, event: impl Event + Message) {
        self.publisher.publish(&self.namespace, event);
    }
}

/// What Delete reports of the process it removed.
pub struct Deleted {
    pub pid: u32,
    pub exit: ExitInfo,
}

/// One container, as the Task API sees it. `exec_id` is empty for the
/// container's own process.
#[async_trait]
pub trait Container: Send + Sync {
    /// The task's pid: the container's init (or the wasm guest's process).
    fn pid(&self) -> u32;

    /// Starts the container's process, or an exec process; returns its pid.
    async fn start(&mut self, exec_id: &str) -> Result<u32>;

    /// The exit of the container's process or of an exec process.
    fn exit(&self, exec_id: &str) -> Result<ExitReceiver>;

    /// Signals the process (with `all`, every process of the container).
    async fn kill(&mut self, exec_id: &str, signal: Signal, all: bool) -> Result<()>;

    /// Removes an exited process; for the container's own, everything the
    /// container holds (mounts, cgroup, state).
    async fn delete(&mut self, exec_id: &str) -> Result<Deleted>;

    /// The process's state, as State answers it.
    fn state(&self, exec_id: &str) -> Result<StateResponse>;

    async fn pids(&self) -> Result<Vec<ProcessInfo>>;

    /// The container's cgroup metrics.
    async fn stats(&mut self) -> Result<Any>;

    async fn pause(&mut self) -> Result<()>;

    async fn resume(&mut self) -> Result<()>;

    /// Applies new `linux.resources`.
    async fn update(&mut self, resources: &oci_spec::runtime::LinuxResources) -> Result<()>;

    /// Adds an exec process (`ctr task exec`, CRI Exec and ExecSync).
    async fn exec(&mut self, req: &ExecProcessRequest) -> Result<()>;

    async fn resize_pty(&mut self, exec_id: &str, width: u32, height: u32) -> Result<()>;

    /// containerd closed the process's stdin.
    async fn close_io(&mut self, exec_id: &str) -> Result<()>;
}

/// Everything [`create`] needs to make a container.
pub struct CreateRequest<'a> {
    pub req: &'a CreateTaskRequest,
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    /// Where the shim mounted the rootfs, if it did.
    pub mounted_rootfs: Option<PathBuf>,
}

/// Makes the container `request` describes, of the kind its entrypoint
/// says (see [`kind::decide`]).
pub async fn create(
    shared: &std::sync::Arc<Shared>,
    request: CreateRequest<'_>,
) -> Result<Box<dyn Container>> {
    let options = options::RuntimeOptions::from_request(request.req.options.as_ref())?;
    match kind::decide(shared, &request, &options).await? {
        kind::Kind::Wasm(mode) => Ok(Box::new(
            wasm::WasmContainer::create(shared, request, mode, &options).await?,
        )),
        kind::Kind::Native(what) => Ok(Box::new(
            native::NativeContainer::create(shared, request, what, &options).await?,
        )),
    }
}

pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
        ..Default::default()
    }
}
