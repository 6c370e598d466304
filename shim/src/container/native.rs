//! A native container (an ELF or a `#!` script): run through runc from the
//! same bundle, as containerd's runc shim would, so it keeps runc's
//! confinement (capabilities, seccomp, AppArmor, pivot_root, masked paths,
//! devices, its cgroup). Its task pid is the container's init; exec and
//! terminals work as under runc.
//!
//! runc's state is kept in the bundle (`<bundle>/runc`), so it is private
//! to the containerd that made the bundle and goes with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_shim::api::{ExecProcessRequest, StateResponse};
use containerd_shim::protos::events::task::TaskIO;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::types::task::ProcessInfo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use runc::options::{CreateOpts, DeleteOpts, ExecOpts, KillOpts};
use runc::Runc;
use wasmbox_oci::NativeEntrypoint;

use super::options::RuntimeOptions;
use super::process::Process;
use super::runc::{client, last_error, resize, ConsoleSocket};
use super::{timestamp, Container, ContainerError, CreateRequest, Deleted, Result, Shared};
use crate::cgroup::ContainerCgroup;
use crate::exits::{ExitInfo, ExitOwner, ExitReceiver};
use crate::rootfs;

/// Where a native container's bundle records the runc binary it was made
/// with, for [`force_delete`].
const RUNC_BINARY_FILE: &str = "runc-binary";

/// After the shim died (`containerd-shim-wasmbox-v1 delete` in the
/// bundle): `runc delete --force` the bundle's native container, if it has
/// one, which kills its processes and removes its cgroup, as runc's shim
/// does in the same place.
pub fn force_delete(bundle: &Path) {
    let root = bundle.join("runc");
    let Some(id) = bundle.file_name() else { return };
    if !root.is_dir() {
        return;
    }
    let binary = std::fs::read_to_string(bundle.join(RUNC_BINARY_FILE))
        .unwrap_or_else(|_| "runc".to_string());
    let deleted = std::process::Command::new(binary.trim())
        .arg("--root")
        .arg(&root)
        .args(["delete", "--force"])
        .arg(id)
        .output();
    match deleted {
        Ok(out) if out.status.success() => log::info!("deleted runc container {id:?}"),
        Ok(out) => log::warn!(
            "runc delete --force {id:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => log::warn!("runc delete --force {id:?}: {e}"),
    }
}

/// How long Delete waits for a process that `runc delete --force` killed.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub struct NativeContainer {
    id: String,
    shared: Arc<Shared>,
    bundle: PathBuf,
    runc: Runc,
    log: PathBuf,
    init: Process,
    execs: HashMap<String, (Process, oci_spec::runtime::Process)>,
    mounted_rootfs: Option<PathBuf>,
    /// runc's cgroup for the container, read for Stats.
    cgroup: Option<ContainerCgroup>,
    paused: bool,
}

fn read_pid(path: &Path) -> Result<u32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| ContainerError::Internal(format!("runc wrote no pid to {}", path.display())))
}

impl NativeContainer {
    /// `runc create`s the container (its init waits for Start). On
    /// failure runc's own error is the message, and runc's state is gone;
    /// the caller unmounts the rootfs.
    pub async fn create(
        shared: &Arc<Shared>,
        request: CreateRequest<'_>,
        what: NativeEntrypoint,
        options: &RuntimeOptions,
    ) -> Result<Self> {
        let (req, spec, bundle) = (request.req, request.spec, request.bundle);
        let id = req.id.clone();
        let root = bundle.join("runc");
        std::fs::create_dir_all(&root)
            .map_err(|e| ContainerError::Internal(format!("{}: {e}", root.display())))?;
        let log = bundle.join("log.json");
        let binary = options
            .runc_binary
            .clone()
            .unwrap_or_else(|| PathBuf::from("runc"));
        let runc = client(
            shared,
            &id,
            options.runc_binary.as_deref(),
            &root,
            &log,
            options.systemd_cgroup,
        )?;
        // As the runc crate resolves it for the client above.
        let resolved = runc::utils::binary_path(&binary).unwrap_or(binary);
        let _ = std::fs::write(
            bundle.join(RUNC_BINARY_FILE),
            resolved.as_os_str().as_encoded_bytes(),
        );
        let init = Process::new(TaskIO {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            ..Default::default()
        });
        let (io, console) = init.stdio()?;
        let pid_file = bundle.join("init.pid");
        let mut opts = CreateOpts::new().pid_file(&pid_file).io(Arc::new(io));
        if let Some(console) = &console {
            opts = opts.console_socket(console.path());
        }
        let since = SystemTime::now();
        let created = with_console(console, runc.create(&id, bundle, Some(&opts))).await;
        let master = match created {
            Ok(master) => master,
            Err(e) => {
                let message = last_error(&log, &e);
                let _ = runc.delete(&id, Some(&DeleteOpts { force: true })).await;
                return Err(ContainerError::InvalidArgument(message));
            }
        };
        let mut container = Self {
            id: id.clone(),
            shared: shared.clone(),
            bundle: bundle.to_path_buf(),
            runc,
            log,
            init,
            execs: HashMap::new(),
            mounted_rootfs: request.mounted_rootfs,
            cgroup: None,
            paused: false,
        };
        let cgroups_path = crate::cgroup::spec_cgroups_path(spec);
        let ready = (|| {
            let pid = read_pid(&pid_file)?;
            let owner = ExitOwner {
                cgroup: cgroups_path.clone(),
                ..ExitOwner::container(&id)
            };
            container.init.watch(shared, pid, owner, since);
            if let Some(master) = master.transpose()? {
                container.init.attach(master)?;
            }
            Ok::<_, ContainerError>(pid)
        })();
        let pid = match ready {
            Ok(pid) => pid,
            Err(e) => {
                let _ = container
                    .runc
                    .delete(&id, Some(&DeleteOpts { force: true }))
                    .await;
                return Err(e);
            }
        };
        container.cgroup = cgroups_path
            .and_then(|path| ContainerCgroup::create(&path, options.systemd_cgroup, None).ok());
        log::info!("container {id}: runc init {pid} ready for the {what}");
        Ok(container)
    }

    fn process(&self, exec_id: &str) -> Result<&Process> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs
            .get(exec_id)
            .map(|(p, _)| p)
            .ok_or_else(|| ContainerError::NotFound(format!("exec {exec_id} not found")))
    }

    fn process_mut(&mut self, exec_id: &str) -> Result<&mut Process> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .map(|(p, _)| p)
            .ok_or_else(|| ContainerError::NotFound(format!("exec {exec_id} not found")))
    }

    fn runc_error(&self, e: runc::error::Error) -> ContainerError {
        ContainerError::Internal(last_error(&self.log, &e))
    }

    async fn start_exec(&mut self, exec_id: &str) -> Result<u32> {
        let (process, spec) = self
            .execs
            .get(exec_id)
            .ok_or_else(|| ContainerError::NotFound(format!("exec {exec_id} not found")))?;
        if process.started {
            return Err(ContainerError::FailedPrecondition(format!(
                "exec {exec_id} was already started"
            )));
        }
        let (io, console) = process.stdio()?;
        let pid_file = self.bundle.join(format!("exec-{exec_id}.pid"));
        let mut opts = ExecOpts::new()
            .pid_file(&pid_file)
            .detach(true)
            .io(Arc::new(io));
        if let Some(console) = &console {
            opts = opts.console_socket(console.path());
        }
        let spec = spec.clone();
        let since = SystemTime::now();
        let master = with_console(console, self.runc.exec(&self.id, &spec, Some(&opts)))
            .await
            .map_err(|e| ContainerError::FailedPrecondition(last_error(&self.log, &e)))?;
        let pid = read_pid(&pid_file)?;
        let _ = std::fs::remove_file(&pid_file);
        let (shared, id) = (self.shared.clone(), self.id.clone());
        let process = self.process_mut(exec_id)?;
        process.watch(&shared, pid, ExitOwner::exec(&id, exec_id), since);
        process.started = true;
        if let Some(master) = master.transpose()? {
            process.attach(master)?;
        }
        Ok(pid)
    }
}

/// Runs a runc command that may send a terminal to `console`, and returns
/// the terminal's master (if there is a console) once the command is done.
async fn with_console<T>(
    console: Option<ConsoleSocket>,
    command: impl std::future::Future<Output = runc::Result<T>>,
) -> runc::Result<Option<Result<std::fs::File>>> {
    let Some(console) = console else {
        command.await?;
        return Ok(None);
    };
    let receive = async { console.receive().await };
    tokio::pin!(receive);
    tokio::pin!(command);
    // runc sends the terminal before it returns; a command that fails
    // sends none, so its result decides.
    tokio::select! {
        master = &mut receive => {
            command.await?;
            Ok(Some(master))
        }
        done = &mut command => {
            done?;
            let master = tokio::time::timeout(Duration::from_secs(5), receive)
                .await
                .unwrap_or_else(|_| Err(ContainerError::Internal("runc sent no terminal".into())));
            Ok(Some(master))
        }
    }
}

#[async_trait]
impl Container for NativeContainer {
    fn pid(&self) -> u32 {
        self.init.pid
    }

    async fn start(&mut self, exec_id: &str) -> Result<u32> {
        if !exec_id.is_empty() {
            return self.start_exec(exec_id).await;
        }
        if self.init.started {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} was already started",
                self.id
            )));
        }
        self.runc
            .start(&self.id)
            .await
            .map_err(|e| ContainerError::FailedPrecondition(last_error(&self.log, &e)))?;
        self.init.started = true;
        Ok(self.init.pid)
    }

    fn exit(&self, exec_id: &str) -> Result<ExitReceiver> {
        Ok(self.process(exec_id)?.exit.1.clone())
    }

    async fn kill(&mut self, exec_id: &str, signal: Signal, all: bool) -> Result<()> {
        let process = self.process(exec_id)?;
        if process.exited().is_some() || (!exec_id.is_empty() && !process.started) {
            return Err(ContainerError::NotFound(format!(
                "container {}: process already finished",
                self.id
            )));
        }
        if exec_id.is_empty() && all {
            return self
                .runc
                .kill(&self.id, signal as u32, Some(&KillOpts { all: true }))
                .await
                .map_err(|e| self.runc_error(e));
        }
        kill(Pid::from_raw(process.pid as i32), signal)
            .map_err(|e| ContainerError::Internal(format!("cannot signal {}: {e}", process.pid)))
    }

    async fn delete(&mut self, exec_id: &str) -> Result<Deleted> {
        if !exec_id.is_empty() {
            let process = self.process(exec_id)?;
            if process.started && process.exited().is_none() {
                return Err(ContainerError::FailedPrecondition(format!(
                    "exec {exec_id} is running: kill it before deleting it"
                )));
            }
            let (process, _) = self.execs.remove(exec_id).expect("looked up above");
            process.copies.shutdown().await;
            self.shared.exits.forget(process.pid as i32);
            return Ok(Deleted {
                pid: process.pid,
                exit: process.exited().unwrap_or(ExitInfo {
                    code: 0,
                    at: SystemTime::now(),
                }),
            });
        }
        if self.init.started && self.init.exited().is_none() {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is running: kill it before deleting it",
                self.id
            )));
        }
        // Kills a created, never started init; removes runc's cgroup and
        // state.
        if let Err(e) = self
            .runc
            .delete(&self.id, Some(&DeleteOpts { force: true }))
            .await
        {
            log::warn!("container {}: {}", self.id, last_error(&self.log, &e));
        }
        let mut exit = self.init.exit.1.clone();
        let info = tokio::time::timeout(KILL_WAIT, exit.wait_for(|e| e.is_some()))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|e| *e));
        for (_, (process, _)) in self.execs.drain() {
            process.copies.shutdown().await;
            self.shared.exits.forget(process.pid as i32);
        }
        self.init.copies.shutdown().await;
        if let Some(target) = &self.mounted_rootfs {
            rootfs::unmount(target);
        }
        self.shared.exits.forget(self.init.pid as i32);
        let _ = std::fs::remove_dir_all(self.bundle.join("runc"));
        Ok(Deleted {
            pid: self.init.pid,
            exit: info.unwrap_or(ExitInfo {
                code: 128 + Signal::SIGKILL as u32,
                at: SystemTime::now(),
            }),
        })
    }

    fn state(&self, exec_id: &str) -> Result<StateResponse> {
        let process = self.process(exec_id)?;
        let exited = process.exited();
        Ok(StateResponse {
            id: if exec_id.is_empty() {
                self.id.clone()
            } else {
                exec_id.to_string()
            },
            bundle: self.bundle.to_string_lossy().into_owned(),
            pid: process.pid,
            status: process.status(self.paused).into(),
            stdin: process.io.stdin.clone(),
            stdout: process.io.stdout.clone(),
            stderr: process.io.stderr.clone(),
            terminal: process.io.terminal,
            exit_status: exited.map(|e| e.code).unwrap_or_default(),
            exited_at: exited.map(|e| timestamp(e.at)).into(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        })
    }

    async fn pids(&self) -> Result<Vec<ProcessInfo>> {
        if self.init.exited().is_some() {
            return Ok(Vec::new());
        }
        let pids = self
            .runc
            .ps(&self.id)
            .await
            .map_err(|e| self.runc_error(e))?;
        Ok(pids
            .into_iter()
            .map(|pid| ProcessInfo {
                pid: pid as u32,
                ..Default::default()
            })
            .collect())
    }

    async fn stats(&mut self) -> Result<Any> {
        self.cgroup
            .as_ref()
            .ok_or_else(|| {
                ContainerError::FailedPrecondition(format!(
                    "container {} has no cgroup path in its spec",
                    self.id
                ))
            })?
            .metrics()
            .map_err(ContainerError::Internal)
    }

    async fn pause(&mut self) -> Result<()> {
        self.runc
            .pause(&self.id)
            .await
            .map_err(|e| self.runc_error(e))?;
        self.paused = true;
        Ok(())
    }

    async fn resume(&mut self) -> Result<()> {
        self.runc
            .resume(&self.id)
            .await
            .map_err(|e| self.runc_error(e))?;
        self.paused = false;
        Ok(())
    }

    async fn update(&mut self, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        self.runc
            .update(&self.id, resources)
            .await
            .map_err(|e| self.runc_error(e))
    }

    async fn exec(&mut self, req: &ExecProcessRequest) -> Result<()> {
        if self.execs.contains_key(&req.exec_id) {
            return Err(ContainerError::FailedPrecondition(format!(
                "exec {} already exists",
                req.exec_id
            )));
        }
        let spec = req
            .spec
            .as_ref()
            .ok_or_else(|| ContainerError::InvalidArgument("exec without a process spec".into()))?;
        let process: oci_spec::runtime::Process = serde_json::from_slice(&spec.value)
            .map_err(|e| ContainerError::InvalidArgument(format!("exec process spec: {e}")))?;
        let io = TaskIO {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            ..Default::default()
        };
        self.execs
            .insert(req.exec_id.clone(), (Process::new(io), process));
        Ok(())
    }

    async fn resize_pty(&mut self, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let process = self.process(exec_id)?;
        let pty = process.pty.as_ref().ok_or_else(|| {
            ContainerError::FailedPrecondition("the process has no terminal".into())
        })?;
        resize(&std::os::fd::AsFd::as_fd(pty), width, height)
    }

    async fn close_io(&mut self, exec_id: &str) -> Result<()> {
        self.process(exec_id)?.copies.close_input();
        Ok(())
    }
}
