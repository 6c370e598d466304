//! Starting a container's `wasmbox-runner` process and talking to it.
//!
//! See `wasmbox_oci::protocol` for the two pipes. The runner's environment is
//! cleared but for the cache location, so containerd's own environment never
//! leaks into a container.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use std::io::BufReader;
use wasmbox_oci::protocol::{read_status_line, write_plan, StatusLine};
use wasmbox_oci::{RunPlan, SandboxPlan};

use crate::exits::{ExitReceiver, ExitRegistry};
use crate::namespaces::NamespacePlan;

/// Environment variable that points at another runner binary.
const RUNNER_ENV: &str = "WASMBOX_RUNNER";
/// Passed through to the runner: where the compiled-module cache lives,
/// whether its seccomp filters log what they deny, and from what size a
/// module's first start runs baseline code.
const PASSED_ENV: &[&str] = &[
    "WASMBOX_CACHE_DIR",
    "WASMBOX_SECCOMP_LOG",
    "WASMBOX_TIERED_MIN_BYTES",
];

/// The runner binary: `$WASMBOX_RUNNER`, or `wasmbox-runner` next to the shim.
fn runner_path() -> std::io::Result<PathBuf> {
    if let Some(path) = std::env::var_os(RUNNER_ENV) {
        return Ok(PathBuf::from(path));
    }
    Ok(std::env::current_exe()?.with_file_name("wasmbox-runner"))
}

/// A command for the runner binary, with the environment passed on to it
/// and nothing else, in `/`, with no descriptor but its stdio and what the
/// caller makes inheritable. Returns the binary's path too, for errors.
pub fn runner_command() -> Result<(Command, PathBuf), String> {
    let runner = runner_path().map_err(|e| format!("cannot locate wasmbox-runner: {e}"))?;
    let mut command = Command::new(&runner);
    command
        .env_clear()
        .envs(
            PASSED_ENV
                .iter()
                .filter_map(|name| Some((name, std::env::var_os(name)?))),
        )
        .current_dir("/");
    // A runner gets its stdio and what its caller hands over (made
    // inheritable by a later pre_exec), nothing else: whatever the shim
    // holds without close-on-exec (from containerd, or from whoever started
    // containerd) is closed at exec, as runc closes such descriptors before
    // a container's process starts. Kernels before 5.11 lack the flag;
    // there the shim's own descriptors are close-on-exec already.
    // SAFETY: close_range is async-signal-safe and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::libc::close_range(3, u32::MAX, nix::libc::CLOSE_RANGE_CLOEXEC as i32);
            Ok(())
        });
    }
    Ok((command, runner))
}

/// What a runner is started for.
pub enum RunnerMode {
    /// Run this plan's guest.
    Guest(Box<RunPlan>),
    /// A pod sandbox: hold the pod's namespaces, as its plan says.
    Sandbox(Box<SandboxPlan>),
}

impl RunnerMode {
    /// What the runner runs, for the log.
    pub fn describe(&self) -> &str {
        match self {
            RunnerMode::Guest(plan) => &plan.module_guest_path,
            RunnerMode::Sandbox(_) => "the pod sandbox",
        }
    }
}

/// A runner that has loaded its guest and waits to be started.
pub struct PreparedRunner {
    /// The runner process, which runs the guest: the task's pid, as
    /// runc's init is its container's, so `/proc/<pid>/ns/*` are the
    /// container's namespaces.
    pub pid: u32,
    pub exit: ExitReceiver,
    /// The control pipe; the start byte goes here.
    pub control: File,
    /// The status pipe, for notices about the running guest.
    pub notices: BufReader<File>,
    /// What the runner reported with `ok`: cache outcome and timings.
    pub details: String,
}

/// The container's stdio, already opened.
pub struct RunnerStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

/// A runner that was started and has its plan on the way, not yet ready.
pub struct SpawnedRunner {
    id: String,
    pub pid: u32,
    exit: ExitReceiver,
    control: OwnedFd,
    status: OwnedFd,
    /// The plan to hand over, as the runner reads it.
    plan: RunnerMode,
}

/// Starts a runner for `plan`. It loads its guest while the caller puts it
/// in the container's cgroup; [`SpawnedRunner::ready`] waits for it.
pub fn spawn(
    id: &str,
    mode: RunnerMode,
    stdio: RunnerStdio,
    exits: &ExitRegistry,
    namespaces: &NamespacePlan,
) -> Result<SpawnedRunner, String> {
    let (mut command, runner) = runner_command()?;
    let (control_read, control_write) = pipe()?;
    let (status_read, status_write) = pipe()?;
    command
        .arg("--id")
        .arg(id)
        .arg("--control-fd")
        .arg(control_read.as_raw_fd().to_string())
        .arg("--status-fd")
        .arg(status_write.as_raw_fd().to_string())
        .args(matches!(mode, RunnerMode::Sandbox(_)).then_some("--sandbox"))
        .stdin(stdio.stdin)
        .stdout(stdio.stdout)
        .stderr(stdio.stderr);
    let inherited = [control_read.as_raw_fd(), status_write.as_raw_fd()];
    let (join, create) = namespaces.raw();
    // SAFETY: the closure only makes async-signal-safe calls (fcntl, setns,
    // unshare) on descriptors that stay open in the parent until spawn
    // returns, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            for fd in inherited {
                if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            crate::namespaces::enter(&join, create)
        });
    }
    let (child, exit) = namespaces
        .in_pid_namespace(|| exits.spawn(crate::exits::ExitOwner::container(id), &mut command))?
        .map_err(|e| format!("cannot start {}: {e}", runner.display()))?;
    Ok(SpawnedRunner {
        id: id.to_string(),
        pid: child.id(),
        exit,
        control: control_write,
        status: status_read,
        plan: mode,
    })
}

impl SpawnedRunner {
    /// Hands the runner its plan and waits until it is ready or has failed.
    ///
    /// On failure the runner is gone (it exits by itself after reporting,
    /// or is killed here) and the error is the message for the user.
    pub async fn ready(self, exits: &ExitRegistry) -> Result<PreparedRunner, String> {
        let SpawnedRunner {
            id,
            pid,
            exit,
            control,
            status,
            plan,
        } = self;
        let ready = tokio::task::spawn_blocking(move || {
            let mut control = File::from(control);
            match &plan {
                RunnerMode::Guest(plan) => write_plan(&mut control, plan.as_ref()),
                RunnerMode::Sandbox(plan) => write_plan(&mut control, plan.as_ref()),
            }
            .map_err(|e| format!("cannot hand the run plan to the runner: {e}"))?;
            let mut notices = BufReader::new(File::from(status));
            let details = loop {
                match read_status_line(&mut notices)
                    .map_err(|e| format!("cannot read the runner's status: {e}"))?
                {
                    StatusLine::Ready(ready) => break ready,
                    StatusLine::Log(level, message) => log_runner_line(&id, &level, &message),
                    StatusLine::Failed(message) => return Err(message),
                }
            };
            Ok((control, notices, details))
        })
        .await
        .map_err(|e| format!("runner set-up task failed: {e}"))
        .and_then(|r| r);

        match ready {
            Ok((control, notices, details)) => Ok(PreparedRunner {
                pid,
                exit,
                control,
                notices,
                details,
            }),
            Err(message) => {
                stop(pid, exit, exits).await;
                Err(message)
            }
        }
    }
}

/// Writes a line of a runner's own log to the shim's (containerd's) log.
pub fn log_runner_line(id: &str, level: &str, message: &str) {
    let level = match level {
        "error" => log::Level::Error,
        "warn" => log::Level::Warn,
        "info" => log::Level::Info,
        "debug" => log::Level::Debug,
        _ => log::Level::Trace,
    };
    log::log!(level, "container {id}: runner: {message}");
}

/// Kills a runner that will not run its guest, and waits until it is gone.
pub async fn stop(pid: u32, mut exit: ExitReceiver, exits: &ExitRegistry) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = exit.wait_for(|e| e.is_some()).await;
    exits.forget(pid as i32);
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot create a pipe: {e}"))
}
