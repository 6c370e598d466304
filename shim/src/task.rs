//! The Task API that containerd calls: create, start, wait, kill, delete,
//! state, pids, connect, stats, shutdown, and clear refusals for the rest.
//!
//! One shim process can serve several containers (a pod's), each with its
//! own runner process.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use containerd_shim::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::asynchronous::monitor::monitor_subscribe;
use containerd_shim::event::Event;
use containerd_shim::monitor::{Subject, Topic};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExit, TaskIO, TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::ttrpc::{self, context::Context, Code};
use containerd_shim::protos::types::task::{ProcessInfo, Status};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{ExitSignal, Task, TtrpcContext};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::Mutex;
use wasmbox_oci::protocol::{read_notice, OOM_NOTICE};

use crate::artifact::ContainerdApi;
use crate::cgroup::{CgroupSlot, ContainerCgroup};
use crate::exits::{ExitInfo, ExitReceiver, ExitRegistry};
use crate::namespaces::NamespacePlan;
use crate::runner::{self, RunnerMode, RunnerStdio};
use crate::{rootfs, stdio};

/// How long Delete waits for a created-but-never-started runner to die.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// One container served by this shim.
struct Container {
    bundle: PathBuf,
    /// The task's pid: the guest's process (see `PreparedRunner::guest_pid`).
    pid: u32,
    /// The runner process, whose exit is the task's.
    runner_pid: u32,
    io: TaskIO,
    started: bool,
    exit: ExitReceiver,
    /// The runner's control pipe until the task is started.
    control: Option<File>,
    /// Where the shim mounted the rootfs, to unmount at delete.
    mounted_rootfs: Option<PathBuf>,
    cgroup: CgroupSlot,
    paused: bool,
}

impl Container {
    fn exited(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    fn status(&self) -> Status {
        match (self.exited(), self.started, self.paused) {
            (Some(_), _, _) => Status::STOPPED,
            (None, _, true) => Status::PAUSED,
            (None, true, false) => Status::RUNNING,
            (None, false, false) => Status::CREATED,
        }
    }
}

#[derive(Clone)]
pub struct TaskService {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    containerd_address: String,
    containers: Mutex<HashMap<String, Container>>,
    exits: ExitRegistry,
    publisher: RemotePublisher,
    exit_signal: Arc<ExitSignal>,
}

impl TaskService {
    pub async fn new(
        namespace: &str,
        containerd_address: &str,
        publisher: RemotePublisher,
        exit_signal: Arc<ExitSignal>,
    ) -> Self {
        let service = Self {
            inner: Arc::new(Inner {
                namespace: namespace.to_string(),
                containerd_address: containerd_address.to_string(),
                containers: Mutex::new(HashMap::new()),
                exits: ExitRegistry::default(),
                publisher,
                exit_signal,
            }),
        };
        service.watch_exits().await;
        service
    }

    /// Routes the crate's reaper notifications to containers and publishes
    /// TaskExit for each.
    async fn watch_exits(&self) {
        let mut subscription = match monitor_subscribe(Topic::Pid).await {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot watch child exits: {e}");
                return;
            }
        };
        let inner = self.inner.clone();
        tokio::spawn(async move {
            while let Some(event) = subscription.rx.recv().await {
                let Subject::Pid(pid) = event.subject else {
                    continue;
                };
                if let Some((id, exit)) = inner.exits.notify(pid, event.exit_code) {
                    log::info!("container {id}: runner {pid} exited with {}", exit.code);
                    // The event names the task's pid, which is the guest's
                    // process when the runner forked one.
                    let task_pid = inner
                        .containers
                        .lock()
                        .await
                        .get(&id)
                        .map(|c| c.pid)
                        .unwrap_or(pid as u32);
                    inner
                        .publish(TaskExit {
                            container_id: id.clone(),
                            id,
                            pid: task_pid,
                            exit_status: exit.code,
                            exited_at: MessageField::some(timestamp(exit.at)),
                            ..Default::default()
                        })
                        .await;
                }
            }
        });
    }
}

impl TaskService {
    /// Freezes or thaws a container's cgroup (pause and resume).
    async fn set_frozen(&self, id: &str, frozen: bool) -> ttrpc::Result<()> {
        let mut containers = self.inner.containers.lock().await;
        let container = containers.get_mut(id).ok_or_else(|| not_found(id))?;
        let cgroup = container
            .cgroup
            .get()
            .await
            .map_err(|e| error(Code::FAILED_PRECONDITION, e))?;
        let result = if frozen {
            cgroup.freeze()
        } else {
            cgroup.thaw()
        };
        result.map_err(|e| error(Code::INTERNAL, e))?;
        container.paused = frozen;
        Ok(())
    }

    /// Reads the runner's notices until it exits; an OOM notice becomes a
    /// TaskOOM event, which CRI reports as the reason OOMKilled.
    fn watch_notices(&self, id: &str, mut notices: std::io::BufReader<File>) {
        let inner = self.inner.clone();
        let id = id.to_string();
        let handle = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            while let Ok(Some(notice)) = read_notice(&mut notices) {
                if notice == OOM_NOTICE {
                    log::info!("container {id}: guest stopped for memory");
                    let event = TaskOOM {
                        container_id: id.clone(),
                        ..Default::default()
                    };
                    let inner = inner.clone();
                    handle.spawn(async move { inner.publish(event).await });
                }
            }
        });
    }
}

impl TaskService {
    /// The plan for a container whose entrypoint is not in its rootfs: its
    /// image may be a wasm OCI artifact. If it has no wasm layer either, the
    /// error is the rootfs one, `not_in_rootfs`.
    async fn plan_for_wasm_layer(
        &self,
        id: &str,
        spec: &oci_spec::runtime::Spec,
        bundle: &std::path::Path,
        not_in_rootfs: wasmbox_oci::PlanError,
    ) -> Result<wasmbox_oci::RunPlan, String> {
        let api = ContainerdApi::connect(&self.inner.containerd_address, &self.inner.namespace)
            .await
            .map_err(|e| format!("{not_in_rootfs} (and its image cannot be read: {e})"))?;
        // The layer is what the container runs: keep it in the node cache
        // only if no one but root can write there, else in the bundle.
        let cache = wasmbox_oci::cache_dir();
        let store = match wasmbox_oci::trust::ensure_dir(&cache) {
            Ok(()) => cache,
            Err(reason) => {
                log::warn!(
                    "container {id}: not keeping its wasm layer in {}: {reason}; using the bundle",
                    cache.display()
                );
                bundle.to_path_buf()
            }
        };
        let layer = api
            .wasm_layer(id, &store)
            .await
            .map_err(|e| format!("{not_in_rootfs} (and its image cannot be used: {e})"))?
            .ok_or_else(|| not_in_rootfs.to_string())?;
        log::info!(
            "container {id}: runs wasm layer {} of image {}",
            layer.digest,
            layer.image
        );
        wasmbox_oci::plan_for_layer(
            spec,
            bundle,
            wasmbox_oci::LayerModule {
                host_path: &layer.path,
                image: &layer.image,
            },
        )
        .map_err(|e| e.to_string())
    }
}

impl Inner {
    async fn publish(&self, event: impl Event + 'static) {
        let topic = event.topic();
        if let Err(e) = self
            .publisher
            .publish(Context::default(), &topic, &self.namespace, Box::new(event))
            .await
        {
            log::warn!("cannot publish {topic}: {e}");
        }
    }
}

fn timestamp(at: SystemTime) -> Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// Whether the runtime options (containerd's `SystemdCgroup`) ask for
/// systemd to manage cgroups.
fn systemd_cgroup(req: &CreateTaskRequest) -> bool {
    use containerd_shim::bootstrap::any_is;
    use containerd_shim::protos::protobuf::Message;
    use containerd_shim::protos::shim::oci::Options;
    req.options
        .as_ref()
        .filter(|any| any_is::<Options>(any))
        .and_then(|any| Options::parse_from_bytes(&any.value).ok())
        .map(|options| options.systemd_cgroup)
        .unwrap_or(false)
}

/// The annotation CRI puts on a container to say what it is.
const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";

/// Whether `spec` is a pod's sandbox (CRI's pause container), whose binary
/// wasmbox never runs: the runner holds the pod's namespaces instead.
fn is_sandbox(spec: &oci_spec::runtime::Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(CONTAINER_TYPE_ANNOTATION))
        .is_some_and(|t| t == "sandbox")
}

fn error(code: Code, message: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

fn not_found(id: &str) -> ttrpc::Error {
    error(
        Code::NOT_FOUND,
        format!("container {id} not found in this shim"),
    )
}

fn no_exec(exec_id: &str) -> Result<(), ttrpc::Error> {
    if exec_id.is_empty() {
        Ok(())
    } else {
        Err(error(
            Code::UNIMPLEMENTED,
            "exec is not supported for wasm containers",
        ))
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let id = req.id.clone();
        let create_started = Instant::now();
        let bundle = PathBuf::from(&req.bundle);
        if self.inner.containers.lock().await.contains_key(&id) {
            return Err(error(
                Code::ALREADY_EXISTS,
                format!("container {id} already exists"),
            ));
        }
        if req.terminal {
            return Err(error(
                Code::INVALID_ARGUMENT,
                "wasmbox does not support a terminal yet: run without -t/--tty",
            ));
        }
        if !req.checkpoint.is_empty() {
            return Err(error(
                Code::UNIMPLEMENTED,
                "checkpoint/restore is not supported for wasm containers",
            ));
        }

        let spec = wasmbox_oci::load_spec(&bundle).map_err(|e| error(Code::INVALID_ARGUMENT, e))?;
        let userns = wasmbox_oci::userns::user_namespace_from_spec(&spec)
            .map_err(|e| error(Code::INVALID_ARGUMENT, e))?;
        let mounted_rootfs = rootfs::mount(&bundle, &req.rootfs, userns.as_ref())
            .await
            .map_err(|e| error(Code::INTERNAL, e))?;
        let cleanup = |e: ttrpc::Error| {
            if let Some(target) = &mounted_rootfs {
                rootfs::unmount(target);
            }
            e
        };

        let mode = if is_sandbox(&spec) {
            RunnerMode::Sandbox(Box::new(
                wasmbox_oci::SandboxPlan::from_spec(&spec)
                    .map_err(|e| cleanup(error(Code::INVALID_ARGUMENT, e)))?,
            ))
        } else {
            RunnerMode::Guest(Box::new(
                match wasmbox_oci::plan_from_spec(&spec, &bundle) {
                    Ok(plan) => plan,
                    Err(e) if e.entrypoint_not_in_rootfs() => self
                        .plan_for_wasm_layer(&id, &spec, &bundle, e)
                        .await
                        .map_err(|e| cleanup(error(Code::INVALID_ARGUMENT, e)))?,
                    Err(e) => return Err(cleanup(error(Code::INVALID_ARGUMENT, e))),
                },
            ))
        };
        let skipped_mounts = match &mode {
            RunnerMode::Guest(plan) => plan.skipped_mounts.as_slice(),
            RunnerMode::Sandbox(_) => &[],
        };
        for skipped in skipped_mounts {
            log::info!(
                "container {id}: mount at {} ({}) skipped on purpose: {}",
                skipped.destination,
                skipped.kind,
                skipped.reason
            );
        }
        let stdio = (|| -> std::io::Result<RunnerStdio> {
            Ok(RunnerStdio {
                stdin: stdio::open_input(&req.stdin)?,
                stdout: stdio::open_output(&req.stdout)?,
                stderr: stdio::open_output(&req.stderr)?,
            })
        })()
        .map_err(|e| {
            cleanup(error(
                Code::INTERNAL,
                format!("cannot open the container's stdio: {e}"),
            ))
        })?;

        let linux = spec.linux().as_ref();
        let cgroups_path = linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| format!("/wasmbox/{id}"));
        let resources = linux.and_then(|l| l.resources().as_ref());
        let mut cgroup = ContainerCgroup::create(&cgroups_path, systemd_cgroup(&req), resources)
            .map_err(|e| cleanup(error(Code::INVALID_ARGUMENT, e)))?;

        let namespaces = NamespacePlan::from_spec(
            &id,
            linux
                .and_then(|l| l.namespaces().as_deref())
                .unwrap_or_default(),
        )
        .map_err(|e| cleanup(error(Code::INVALID_ARGUMENT, e)))?;
        let spawn_at = Instant::now();
        let runs = mode.describe().to_string();
        let spawned =
            runner::spawn(&id, mode, stdio, &self.inner.exits, &namespaces).map_err(|e| {
                cgroup.destroy();
                cleanup(error(Code::INVALID_ARGUMENT, e))
            })?;
        // The move into the cgroup waits on the kernel; the runner loads its
        // module meanwhile, and Start waits for the move (see CgroupSlot).
        let (children, named_children) = std::sync::mpsc::channel();
        let mut cgroup = CgroupSlot::confine(cgroup, spawned.pid, named_children);
        let prepared = match spawned.ready(&self.inner.exits, children).await {
            Ok(prepared) => prepared,
            Err(e) => {
                cgroup.destroy().await;
                return Err(cleanup(error(Code::INVALID_ARGUMENT, e)));
            }
        };
        let runner_pid = prepared.pid;
        let pid = prepared.guest_pid.unwrap_or(runner_pid);
        log::info!(
            "container {id}: runner {runner_pid} (task pid {pid}) ready for {}",
            runs
        );
        log::debug!(
            "container {id}: create path: set-up {:.2} ms, runner spawn to ready {:.2} ms, total {:.2} ms; runner: {}",
            (spawn_at - create_started).as_secs_f64() * 1000.0,
            spawn_at.elapsed().as_secs_f64() * 1000.0,
            create_started.elapsed().as_secs_f64() * 1000.0,
            prepared.details
        );
        self.watch_notices(&id, prepared.notices);
        if let Err(e) = std::fs::write(bundle.join("runner.pid"), runner_pid.to_string()) {
            log::warn!(
                "cannot record the runner's pid in {}: {e}",
                bundle.display()
            );
        }

        let io = TaskIO {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            ..Default::default()
        };
        self.inner.containers.lock().await.insert(
            id.clone(),
            Container {
                bundle: bundle.clone(),
                pid,
                runner_pid,
                io: io.clone(),
                started: false,
                exit: prepared.exit,
                control: Some(prepared.control),
                mounted_rootfs,
                cgroup,
                paused: false,
            },
        );
        self.inner
            .publish(TaskCreate {
                container_id: id,
                bundle: req.bundle,
                rootfs: req.rootfs,
                io: MessageField::some(io),
                pid,
                ..Default::default()
            })
            .await;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        no_exec(&req.exec_id)?;
        let pid = {
            let mut containers = self.inner.containers.lock().await;
            let container = containers
                .get_mut(&req.id)
                .ok_or_else(|| not_found(&req.id))?;
            let waited = Instant::now();
            container.cgroup.get().await.map_err(|e| {
                error(
                    Code::FAILED_PRECONDITION,
                    format!("container {} cannot start: {e}", req.id),
                )
            })?;
            log::debug!(
                "container {}: start waited {:.2} ms for the cgroup",
                req.id,
                waited.elapsed().as_secs_f64() * 1000.0
            );
            let Some(mut control) = container.control.take() else {
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    format!("container {} was already started", req.id),
                ));
            };
            control
                .write_all(&[wasmbox_oci::protocol::START])
                .map_err(|e| {
                    error(
                        Code::FAILED_PRECONDITION,
                        format!("container {} ended before it started: {e}", req.id),
                    )
                })?;
            container.started = true;
            container.pid
        };
        self.inner
            .publish(TaskStart {
                container_id: req.id,
                pid,
                ..Default::default()
            })
            .await;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        no_exec(&req.exec_id)?;
        let mut exit = {
            let containers = self.inner.containers.lock().await;
            containers
                .get(&req.id)
                .ok_or_else(|| not_found(&req.id))?
                .exit
                .clone()
        };
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
        no_exec(&req.exec_id)?;
        let containers = self.inner.containers.lock().await;
        let container = containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        if container.exited().is_some() {
            return Err(error(
                Code::NOT_FOUND,
                format!("container {}: process already finished", req.id),
            ));
        }
        let signal = Signal::try_from(req.signal as i32).map_err(|_| {
            error(
                Code::INVALID_ARGUMENT,
                format!("unknown signal {}", req.signal),
            )
        })?;
        kill(Pid::from_raw(container.pid as i32), signal).map_err(|e| {
            error(
                Code::INTERNAL,
                format!("cannot signal runner {}: {e}", container.pid),
            )
        })?;
        Ok(Empty::new())
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        no_exec(&req.exec_id)?;
        let mut exit = {
            let containers = self.inner.containers.lock().await;
            let container = containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
            if container.started && container.exited().is_none() {
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    format!(
                        "container {} is running: kill it before deleting it",
                        req.id
                    ),
                ));
            }
            if !container.started && container.exited().is_none() {
                // Created, never started: the runner waits for its start byte.
                let _ = kill(Pid::from_raw(container.runner_pid as i32), Signal::SIGKILL);
            }
            container.exit.clone()
        };
        let info = tokio::time::timeout(KILL_WAIT, exit.wait_for(|e| e.is_some()))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|e| *e));
        let mut container = self
            .inner
            .containers
            .lock()
            .await
            .remove(&req.id)
            .ok_or_else(|| not_found(&req.id))?;
        if let Some(target) = &container.mounted_rootfs {
            rootfs::unmount(target);
        }
        container.cgroup.destroy().await;
        let _ = std::fs::remove_file(container.bundle.join("runner.pid"));
        self.inner.exits.forget(container.runner_pid as i32);
        let info = info.unwrap_or(ExitInfo {
            code: 128 + Signal::SIGKILL as u32,
            at: SystemTime::now(),
        });
        self.inner
            .publish(TaskDelete {
                container_id: req.id.clone(),
                id: req.id,
                pid: container.pid,
                exit_status: info.code,
                exited_at: MessageField::some(timestamp(info.at)),
                ..Default::default()
            })
            .await;
        Ok(DeleteResponse {
            pid: container.pid,
            exit_status: info.code,
            exited_at: MessageField::some(timestamp(info.at)),
            ..Default::default()
        })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        no_exec(&req.exec_id)?;
        let containers = self.inner.containers.lock().await;
        let container = containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let exited = container.exited();
        Ok(StateResponse {
            id: req.id.clone(),
            bundle: container.bundle.to_string_lossy().into_owned(),
            pid: container.pid,
            status: container.status().into(),
            stdin: container.io.stdin.clone(),
            stdout: container.io.stdout.clone(),
            stderr: container.io.stderr.clone(),
            terminal: container.io.terminal,
            exit_status: exited.map(|e| e.code).unwrap_or_default(),
            exited_at: exited.map(|e| timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        let containers = self.inner.containers.lock().await;
        let container = containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let processes = if container.exited().is_none() {
            vec![ProcessInfo {
                pid: container.pid,
                ..Default::default()
            }]
        } else {
            Vec::new()
        };
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
        let containers = self.inner.containers.lock().await;
        let task_pid = containers.get(&req.id).map(|c| c.pid).unwrap_or_default();
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let mut containers = self.inner.containers.lock().await;
        let container = containers
            .get_mut(&req.id)
            .ok_or_else(|| not_found(&req.id))?;
        let stats = container
            .cgroup
            .get()
            .await
            .map_err(|e| error(Code::FAILED_PRECONDITION, e))?
            .metrics()
            .map_err(|e| error(Code::INTERNAL, e))?;
        Ok(StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        self.set_frozen(&req.id, true).await?;
        self.inner
            .publish(TaskPaused {
                container_id: req.id,
                ..Default::default()
            })
            .await;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        self.set_frozen(&req.id, false).await?;
        self.inner
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
        let mut containers = self.inner.containers.lock().await;
        let container = containers
            .get_mut(&req.id)
            .ok_or_else(|| not_found(&req.id))?;
        container
            .cgroup
            .get()
            .await
            .map_err(|e| error(Code::FAILED_PRECONDITION, e))?
            .update(&resources)
            .map_err(|e| error(Code::INTERNAL, e))?;
        Ok(Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        Err(error(
            Code::UNIMPLEMENTED,
            "checkpoint is not supported for wasm containers",
        ))
    }

    async fn close_io(&self, _ctx: &TtrpcContext, _req: CloseIORequest) -> ttrpc::Result<Empty> {
        // stdin is copied by a thread that ends when the client closes its
        // side of the fifo, which is what CloseIO announces.
        Ok(Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        _req: ResizePtyRequest,
    ) -> ttrpc::Result<Empty> {
        Err(error(
            Code::FAILED_PRECONDITION,
            "the container has no terminal: wasmbox does not support -t yet",
        ))
    }

    async fn exec(&self, _ctx: &TtrpcContext, _req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        Err(error(
            Code::UNIMPLEMENTED,
            "exec is not supported for wasm containers",
        ))
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        if self.inner.containers.lock().await.is_empty() {
            log::info!("last container gone: shutting down");
            self.inner.exit_signal.signal();
        }
        Ok(Empty::new())
    }
}
