//! The Task API that containerd calls, dispatched to the [`Container`]
//! each id names: a wasm container or a native one (see
//! `crate::container`). Containers are locked one by one, so a slow call on
//! one (a Delete waiting for its process) never holds up another's.
//!
//! One shim process can serve several containers (a pod's).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::asynchronous::monitor::monitor_subscribe;
use containerd_shim::monitor::{Subject, Topic};
use containerd_shim::protos::events::task::{
    TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused, TaskResumed,
    TaskStart,
};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{ExitSignal, Task, TtrpcContext};
use nix::sys::signal::Signal;
use tokio::sync::Mutex;

use crate::container::{timestamp, Container, ContainerError, Deleted, Shared};
use crate::exits::{ExitInfo, ExitOwner, ExitRegistry};

mod create;

/// One container of this shim: its task pid, known from Create on, and
/// the container behind its own lock.
struct Entry {
    pid: u32,
    container: Mutex<Box<dyn Container>>,
    /// Its record in its pod sandbox's bundle (see crate::cleanup).
    pod_record: Option<PathBuf>,
}

#[derive(Clone)]
pub struct TaskService {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    containers: Mutex<HashMap<String, Arc<Entry>>>,
    /// Ids whose Create is under way, not in `containers` yet.
    creating: std::sync::Mutex<HashSet<String>>,
    exit_signal: Arc<ExitSignal>,
}

fn error(code: Code, message: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

impl From<ContainerError> for ttrpc::Error {
    fn from(e: ContainerError) -> Self {
        error(e.code(), e)
    }
}

fn not_found(id: &str) -> ttrpc::Error {
    error(
        Code::NOT_FOUND,
        format!("container {id} not found in this shim"),
    )
}

impl TaskService {
    pub async fn new(
        namespace: &str,
        containerd_address: &str,
        publisher: crate::events::EventPublisher,
        exit_signal: Arc<ExitSignal>,
    ) -> Self {
        let service = Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    namespace: namespace.to_string(),
                    containerd_address: containerd_address.to_string(),
                    exits: ExitRegistry::default(),
                    publisher,
                    optimizer: Default::default(),
                }),
                containers: Mutex::new(HashMap::new()),
                creating: Default::default(),
                exit_signal,
            }),
        };
        service.watch_exits().await;
        service
    }

    /// Routes the crate's reaper notifications to containers and publishes
    /// TaskExit for each of their processes.
    async fn watch_exits(&self) {
        let mut subscription = match monitor_subscribe(Topic::Pid).await {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot watch child exits: {e}");
                return;
            }
        };
        let shared = self.inner.shared.clone();
        let mut late = shared.exits.late_exits();
        tokio::spawn(async move {
            loop {
                let reported = tokio::select! {
                    event = subscription.rx.recv() => {
                        let Some(event) = event else { break };
                        let Subject::Pid(pid) = event.subject else {
                            continue;
                        };
                        let Some(reported) = shared.exits.notify(pid, event.exit_code) else {
                            continue;
                        };
                        reported
                    }
                    Some(reported) = late.recv() => reported,
                };
                if !reported.owner.silent {
                    publish_exit(&shared, &reported.owner, reported.info).await;
                }
                reported.deliver();
            }
        });
    }

    /// What the containers share: for the shim's exit, which waits for
    /// the optimized compiles.
    pub fn shared(&self) -> Arc<Shared> {
        self.inner.shared.clone()
    }

    /// Deletes container `id`'s process `exec_id` (the container itself
    /// when empty) and publishes TaskDelete for a container.
    async fn delete_container(&self, id: &str, exec_id: &str) -> ttrpc::Result<Deleted> {
        let entry = self.entry(id).await?;
        let deleted = entry.container.lock().await.delete(exec_id).await?;
        if exec_id.is_empty() {
            self.inner.containers.lock().await.remove(id);
            if let Some(record) = &entry.pod_record {
                let _ = std::fs::remove_file(record);
            }
            self.inner
                .shared
                .publish(TaskDelete {
                    container_id: id.to_string(),
                    id: id.to_string(),
                    pid: deleted.pid,
                    exit_status: deleted.exit.code,
                    exited_at: MessageField::some(timestamp(deleted.exit.at)),
                    ..Default::default()
                })
                .await;
        }
        Ok(deleted)
    }

    async fn entry(&self, id: &str) -> ttrpc::Result<Arc<Entry>> {
        self.inner
            .containers
            .lock()
            .await
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }
}

/// Publishes the events of a process's exit, in containerd's order:
/// TaskOOM (a container's own process that ran out of memory), then
/// TaskExit.
async fn publish_exit(shared: &Shared, owner: &ExitOwner, exit: ExitInfo) {
    if owner.exec.is_empty() && crate::oom::out_of_memory(owner).await {
        shared
            .publish(TaskOOM {
                container_id: owner.container.clone(),
                ..Default::default()
            })
            .await;
    }
    log::info!(
        "container {}: process {}{} exited with {}",
        owner.container,
        owner.task_pid,
        if owner.exec.is_empty() {
            String::new()
        } else {
            format!(" (exec {})", owner.exec)
        },
        exit.code
    );
    shared
        .publish(TaskExit {
            container_id: owner.container.clone(),
            id: if owner.exec.is_empty() {
                owner.container.clone()
            } else {
                owner.exec.clone()
            },
            pid: owner.task_pid,
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
        .await;
}

#[async_trait]
impl Task for TaskService {
    /// The container is made by a task of its own, which ttrpc cannot drop
    /// halfway: ttrpc drops a call's future when its deadline passes or its
    /// connection closes (containerd 1.7 closes a task's connection when it
    /// gives up on its Create), and a Create dropped mid-way would leave its
    /// runner, cgroup and rootfs mount to no one. A Create that containerd
    /// stopped waiting for runs to its end, and the container is deleted
    /// then (see [`TaskService::create_detached`]).
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        if !req.checkpoint.is_empty() {
            return Err(error(
                Code::UNIMPLEMENTED,
                "checkpoint/restore is not supported by wasmbox",
            ));
        }
        let pid = self.create_container(req).await?;
        crate::heap::trim_when_quiet();
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let entry = self.entry(&req.id).await?;
        let pid = entry.container.lock().await.start(&req.exec_id).await?;
        if req.exec_id.is_empty() {
            self.inner
                .shared
                .publish(TaskStart {
                    container_id: req.id,
                    pid,
                    ..Default::default()
                })
                .await;
        } else {
            self.inner
                .shared
                .publish(TaskExecStarted {
                    container_id: req.id,
                    exec_id: req.exec_id,
                    pid,
                    ..Default::default()
                })
                .await;
        }
        crate::heap::trim_when_quiet();
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let entry = self.entry(&req.id).await?;
        let mut exit = entry.container.lock().await.exit(&req.exec_id)?;
        let info = exit
            .wait_for(|e| e.is_some())
            .await
            .map_err(|_| error(Code::INTERNAL, "the exit watcher went away"))?
            .ok_or_else(|| error(Code::INTERNAL, "no exit status"))?;
        Ok(WaitResponse {
            exit_status: info.code,
            exited_at: MessageField::some(timestamp(info.at)),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        let entry = self.entry(&req.id).await?;
        let signal = Signal::try_from(req.signal as i32).map_err(|_| {
            error(
                Code::INVALID_ARGUMENT,
                format!("unknown signal {}", req.signal),
            )
        })?;
        entry
            .container
            .lock()
            .await
            .kill(&req.exec_id, signal, req.all)
            .await?;
        Ok(Empty::new())
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        let deleted = self.delete_container(&req.id, &req.exec_id).await?;
        crate::heap::trim_when_quiet();
        Ok(DeleteResponse {
            pid: deleted.pid,
            exit_status: deleted.exit.code,
            exited_at: MessageField::some(timestamp(deleted.exit.at)),
            ..Default::default()
        })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        let entry = self.entry(&req.id).await?;
        let state = entry.container.lock().await.state(&req.exec_id)?;
        Ok(state)
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        let entry = self.entry(&req.id).await?;
        let mut processes = entry.container.lock().await.pids().await?;
        // When containerd restarts, it drops a shim whose Pids is empty as
        // a leak (containerd#6860), and with it the exit of a task that
        // ended while containerd was away: `ctr task ls` would not list it
        // and its exit code would be lost (runc's shim loses it so). Until
        // Delete, the task's own process is listed, running or exited.
        if processes.is_empty() {
            processes.push(ProcessInfo {
                pid: entry.pid,
                ..Default::default()
            });
        }
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        let task_pid = self.entry(&req.id).await.map(|e| e.pid).unwrap_or_default();
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let entry = self.entry(&req.id).await?;
        let stats = entry.container.lock().await.stats().await?;
        Ok(StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        let entry = self.entry(&req.id).await?;
        entry.container.lock().await.pause().await?;
        self.inner
            .shared
            .publish(TaskPaused {
                container_id: req.id,
                ..Default::default()
            })
            .await;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        let entry = self.entry(&req.id).await?;
        entry.container.lock().await.resume().await?;
        self.inner
            .shared
            .publish(TaskResumed {
                container_id: req.id,
                ..Default::default()
            })
            .await;
        Ok(Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        let resources = req
            .resources
            .as_ref()
            .ok_or_else(|| error(Code::INVALID_ARGUMENT, "update carries no resources"))?;
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&resources.value)
            .map_err(|e| {
                error(
                    Code::INVALID_ARGUMENT,
                    format!("update resources are not LinuxResources JSON: {e}"),
                )
            })?;
        let entry = self.entry(&req.id).await?;
        entry.container.lock().await.update(&resources).await?;
        Ok(Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        Err(error(
            Code::UNIMPLEMENTED,
            "checkpoint is not supported by wasmbox",
        ))
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        let entry = self.entry(&req.id).await?;
        entry.container.lock().await.close_io(&req.exec_id).await?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        let entry = self.entry(&req.id).await?;
        entry
            .container
            .lock()
            .await
            .resize_pty(&req.exec_id, req.width, req.height)
            .await?;
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        let entry = self.entry(&req.id).await?;
        entry.container.lock().await.exec(&req).await?;
        self.inner
            .shared
            .publish(TaskExecAdded {
                container_id: req.id,
                exec_id: req.exec_id,
                ..Default::default()
            })
            .await;
        Ok(Empty::new())
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        if self.inner.containers.lock().await.is_empty() {
            log::info!("last container gone: shutting down");
            self.inner.exit_signal.signal();
        }
        Ok(Empty::new())
    }
}
