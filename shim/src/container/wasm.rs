//! A wasm container: a `wasmbox-runner` process that runs the guest (or
//! holds a pod sandbox's namespaces), in the container's cgroup and
//! namespaces. No exec, no terminal: a WASI guest has neither.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use containerd_shim::api::{ExecProcessRequest, StateResponse};
use containerd_shim::protos::events::task::TaskIO;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::types::task::{ProcessInfo, Status};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use wasmbox_oci::protocol::{parse_log, OOM_NOTICE, OPTIMIZE_NOTICE};

use super::options::RuntimeOptions;
use super::{timestamp, Container, ContainerError, CreateRequest, Deleted, Result, Shared};
use crate::cgroup::{CgroupSlot, ContainerCgroup};
use crate::exits::{ExitInfo, ExitReceiver, RunnerNotices};
use crate::namespaces::NamespacePlan;
use crate::runner::{self, RunnerMode, RunnerStdio};
use crate::{rootfs, stdio};

/// How long Delete waits for a created-but-never-started runner to die.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub struct WasmContainer {
    id: String,
    shared: Arc<Shared>,
    bundle: PathBuf,
    /// The task's pid: the runner, which runs the guest.
    pid: u32,
    io: TaskIO,
    started: bool,
    exit: ExitReceiver,
    /// The runner's control pipe: the start byte goes there, and its
    /// closing, when the shim goes, ends the runner.
    control: File,
    /// Where the shim mounted the rootfs, to unmount at delete.
    mounted_rootfs: Option<PathBuf>,
    cgroup: CgroupSlot,
    paused: bool,
    /// A pod sandbox: the runner holds the pod's namespaces and runs no
    /// guest code.
    holds_sandbox: bool,
}

fn invalid(e: impl ToString) -> ContainerError {
    ContainerError::InvalidArgument(e.to_string())
}

fn no_exec(exec_id: &str) -> Result<()> {
    if exec_id.is_empty() {
        Ok(())
    } else {
        Err(ContainerError::NotFound(format!(
            "exec {exec_id} not found: wasm containers have no exec processes"
        )))
    }
}

impl WasmContainer {
    /// Starts the runner for `mode` and waits until it has loaded its guest
    /// (or failed, which is the error). The caller unmounts the rootfs on
    /// failure.
    pub async fn create(
        shared: &Arc<Shared>,
        request: CreateRequest<'_>,
        mode: RunnerMode,
        options: &RuntimeOptions,
    ) -> Result<Self> {
        let create_started = Instant::now();
        let (req, spec, bundle) = (request.req, request.spec, request.bundle);
        let id = req.id.clone();
        if req.terminal {
            return Err(invalid(
                "wasmbox does not support a terminal for wasm containers: run without -t/--tty",
            ));
        }
        if let RunnerMode::Guest(plan) = &mode {
            for skipped in &plan.skipped_mounts {
                log::info!(
                    "container {id}: mount at {} ({}) skipped on purpose: {}",
                    skipped.destination,
                    skipped.kind,
                    skipped.reason
                );
            }
        }
        let stdio = (|| -> std::io::Result<RunnerStdio> {
            Ok(RunnerStdio {
                stdin: stdio::open_input(&req.stdin)?,
                stdout: stdio::open_output(&req.stdout)?,
                stderr: stdio::open_output(&req.stderr)?,
            })
        })()
        .map_err(|e| ContainerError::Internal(format!("cannot open the container's stdio: {e}")))?;

        let linux = spec.linux().as_ref();
        let cgroups_path = crate::cgroup::runner_cgroups_path(spec, &id);
        let resources = linux.and_then(|l| l.resources().clone());
        let systemd = options.systemd_cgroup;
        // Off the event loop: with systemd, this opens a D-Bus connection.
        let cgroup_path = cgroups_path.clone();
        let cgroup = tokio::task::spawn_blocking(move || {
            ContainerCgroup::create(&cgroup_path, systemd, resources.as_ref())
        })
        .await
        .map_err(|e| ContainerError::Internal(e.to_string()))?
        .map_err(invalid)?;
        let namespaces = NamespacePlan::from_spec(
            &id,
            linux
                .and_then(|l| l.namespaces().as_deref())
                .unwrap_or_default(),
        );
        let namespaces = match namespaces {
            Ok(namespaces) => namespaces,
            Err(e) => return Err(invalid(e)),
        };
        let spawn_at = Instant::now();
        let runs = mode.describe().to_string();
        let holds_sandbox = matches!(mode, RunnerMode::Sandbox(_));
        let module_host_path = match &mode {
            RunnerMode::Guest(plan) => Some(plan.module_host_path.clone()),
            RunnerMode::Sandbox(_) => None,
        };
        let mut cgroup = cgroup;
        let spawned = runner::spawn(&id, mode, stdio, &shared.exits, &namespaces).map_err(|e| {
            cgroup.destroy();
            invalid(e)
        })?;
        // The move into the cgroup waits on the kernel; the runner loads its
        // module meanwhile, and Start waits for the move (see CgroupSlot).
        let mut cgroup = CgroupSlot::confine(cgroup, spawned.pid, holds_sandbox);
        let prepared = match spawned.ready(&shared.exits).await {
            Ok(prepared) => prepared,
            Err(e) => {
                cgroup.destroy().await;
                return Err(invalid(e));
            }
        };
        let pid = prepared.pid;
        shared.exits.set_task(pid, pid, Some(cgroups_path));
        log::info!("container {id}: runner {pid} ready for {runs}");
        log::debug!(
            "container {id}: create path: set-up {:.2} ms, runner spawn to ready {:.2} ms, total {:.2} ms; runner: {}",
            (spawn_at - create_started).as_secs_f64() * 1000.0,
            spawn_at.elapsed().as_secs_f64() * 1000.0,
            create_started.elapsed().as_secs_f64() * 1000.0,
            prepared.details
        );
        let notices = watch_notices(shared, &id, module_host_path, prepared.notices);
        shared.exits.set_notices(pid, notices);
        if let Err(e) = std::fs::write(bundle.join("runner.pid"), pid.to_string()) {
            log::warn!(
                "cannot record the runner's pid in {}: {e}",
                bundle.display()
            );
        }
        Ok(Self {
            id,
            shared: shared.clone(),
            bundle: bundle.to_path_buf(),
            pid,
            io: TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            },
            started: false,
            exit: prepared.exit,
            control: prepared.control,
            mounted_rootfs: request.mounted_rootfs,
            cgroup,
            paused: false,
            holds_sandbox,
        })
    }

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

    async fn cgroup(&mut self) -> Result<&mut ContainerCgroup> {
        self.cgroup
            .get()
            .await
            .map_err(ContainerError::FailedPrecondition)
    }

    async fn set_frozen(&mut self, frozen: bool) -> Result<()> {
        let cgroup = self.cgroup().await?;
        let result = if frozen {
            cgroup.freeze().await
        } else {
            cgroup.thaw()
        };
        result.map_err(ContainerError::Internal)?;
        self.paused = frozen;
        Ok(())
    }
}

/// Reads the runner's notices until it exits: log lines go to containerd's
/// log; a guest on baseline code gets its `module`'s optimized compile
/// started; whether its guest stopped for memory goes to the exit watcher (at
/// the OOM notice, or `false` at the end), which publishes TaskOOM (CRI's
/// reason OOMKilled) before the TaskExit of the same exit.
///
/// A task on the shim's event loop, not a thread per runner: an idle pod
/// would otherwise keep a blocked thread (its stack, and its malloc arena)
/// for each of its runners.
fn watch_notices(
    shared: &Arc<Shared>,
    id: &str,
    module: Option<PathBuf>,
    notices: std::io::BufReader<File>,
) -> RunnerNotices {
    let shared = shared.clone();
    let id = id.to_string();
    let (ended, end) = tokio::sync::watch::channel(None);
    // What the readiness read buffered past its line comes first.
    let buffered = notices.buffer().to_vec();
    let pipe = match tokio::net::unix::pipe::Receiver::from_file(notices.into_inner()) {
        Ok(pipe) => pipe,
        Err(e) => {
            log::warn!("container {id}: cannot watch the runner's notices: {e}");
            let _ = ended.send(Some(false));
            return end;
        }
    };
    let mut lines = tokio::io::BufReader::new(std::io::Cursor::new(buffered).chain(pipe)).lines();
    tokio::spawn(async move {
        let mut out_of_memory = false;
        while let Ok(Some(notice)) = lines.next_line().await {
            if let Some((level, message)) = parse_log(&notice) {
                crate::runner::log_runner_line(&id, level, message);
            } else if let Some(module) = module.as_ref().filter(|_| notice == OPTIMIZE_NOTICE) {
                // On the event loop's thread, which lives as long as the
                // shim: the compile's parent-death signal follows the
                // thread that spawned it.
                shared.optimizer.start(&shared.exits, &id, module);
            } else if notice == OOM_NOTICE {
                log::info!("container {id}: guest stopped for memory");
                out_of_memory = true;
                let _ = ended.send(Some(true));
            }
        }
        if !out_of_memory {
            let _ = ended.send(Some(false));
        }
    });
    end
}

#[async_trait]
impl Container for WasmContainer {
    fn pid(&self) -> u32 {
        self.pid
    }

    async fn start(&mut self, exec_id: &str) -> Result<u32> {
        no_exec(exec_id)?;
        let id = self.id.clone();
        // A guest's first instruction runs inside its cgroup. A sandbox
        // runs none, so its Start (RunPodSandbox's last step) does not wait
        // for its move (on cgroup v1, an RCU grace period: 8 ms of a 50 ms
        // RunPodSandbox here); Stats, Update, Pause and Delete still do,
        // and a sandbox whose move fails is killed (see CgroupSlot).
        if !self.holds_sandbox {
            let waited = Instant::now();
            self.cgroup.get().await.map_err(|e| {
                ContainerError::FailedPrecondition(format!("container {id} cannot start: {e}"))
            })?;
            log::debug!(
                "container {id}: start waited {:.2} ms for the cgroup",
                waited.elapsed().as_secs_f64() * 1000.0
            );
        }
        // The control pipe stays open after the start byte: the runner
        // ends when it closes, when the shim goes (see the runner's
        // shim_watch), so nothing more is written to it.
        if self.started {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {id} was already started"
            )));
        }
        self.control
            .write_all(&[wasmbox_oci::protocol::START])
            .map_err(|e| {
                ContainerError::FailedPrecondition(format!(
                    "container {id} ended before it started: {e}"
                ))
            })?;
        self.started = true;
        Ok(self.pid)
    }

    fn exit(&self, exec_id: &str) -> Result<ExitReceiver> {
        no_exec(exec_id)?;
        Ok(self.exit.clone())
    }

    async fn kill(&mut self, exec_id: &str, signal: Signal, _all: bool) -> Result<()> {
        no_exec(exec_id)?;
        if self.exited().is_some() {
            return Err(ContainerError::NotFound(format!(
                "container {}: process already finished",
                self.id
            )));
        }
        kill(Pid::from_raw(self.pid as i32), signal).map_err(|e| {
            ContainerError::Internal(format!("cannot signal runner {}: {e}", self.pid))
        })
    }

    async fn delete(&mut self, exec_id: &str) -> Result<Deleted> {
        no_exec(exec_id)?;
        if self.started && self.exited().is_none() {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is running: kill it before deleting it",
                self.id
            )));
        }
        if !self.started && self.exited().is_none() {
            // Created, never started: the runner waits for its start byte.
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
        let mut exit = self.exit.clone();
        let info = tokio::time::timeout(KILL_WAIT, exit.wait_for(|e| e.is_some()))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|e| *e));
        if let Some(target) = &self.mounted_rootfs {
            rootfs::unmount(target);
        }
        self.cgroup.destroy().await;
        let _ = std::fs::remove_file(self.bundle.join("runner.pid"));
        self.shared.exits.forget(self.pid as i32);
        Ok(Deleted {
            pid: self.pid,
            exit: info.unwrap_or(ExitInfo {
                code: 128 + Signal::SIGKILL as u32,
                at: SystemTime::now(),
            }),
        })
    }

    fn state(&self, exec_id: &str) -> Result<StateResponse> {
        no_exec(exec_id)?;
        let exited = self.exited();
        Ok(StateResponse {
            id: self.id.clone(),
            bundle: self.bundle.to_string_lossy().into_owned(),
            pid: self.pid,
            status: self.status().into(),
            stdin: self.io.stdin.clone(),
            stdout: self.io.stdout.clone(),
            stderr: self.io.stderr.clone(),
            terminal: self.io.terminal,
            exit_status: exited.map(|e| e.code).unwrap_or_default(),
            exited_at: exited.map(|e| timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    async fn pids(&self) -> Result<Vec<ProcessInfo>> {
        Ok(if self.exited().is_none() {
            vec![ProcessInfo {
                pid: self.pid,
                ..Default::default()
            }]
        } else {
            Vec::new()
        })
    }

    async fn stats(&mut self) -> Result<Any> {
        self.cgroup()
            .await?
            .metrics()
            .map_err(ContainerError::Internal)
    }

    async fn pause(&mut self) -> Result<()> {
        self.set_frozen(true).await
    }

    async fn resume(&mut self) -> Result<()> {
        self.set_frozen(false).await
    }

    async fn update(&mut self, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        self.cgroup()
            .await?
            .update(resources)
            .map_err(ContainerError::Internal)
    }

    async fn exec(&mut self, _req: &ExecProcessRequest) -> Result<()> {
        Err(ContainerError::Unimplemented(
            "exec is not supported for wasm containers: a WASI guest has no second process".into(),
        ))
    }

    async fn resize_pty(&mut self, _exec_id: &str, _width: u32, _height: u32) -> Result<()> {
        Err(ContainerError::FailedPrecondition(
            "the container has no terminal: wasm containers run without -t".into(),
        ))
    }

    async fn close_io(&mut self, _exec_id: &str) -> Result<()> {
        // stdin is copied by a thread that ends when the client closes its
        // side of the fifo, which is what CloseIO announces.
        Ok(())
    }
}
