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
use wasmbox_oci::protocol::{read_status, write_plan};
use wasmbox_oci::RunPlan;

use crate::exits::{ExitReceiver, ExitRegistry};
use crate::namespaces::NamespacePlan;

/// Environment variable that points at another runner binary.
const RUNNER_ENV: &str = "WASMBOX_RUNNER";
/// Passed through to the runner: where the compiled-module cache lives.
const PASSED_ENV: &[&str] = &["WASMBOX_CACHE_DIR"];

/// The runner binary: `$WASMBOX_RUNNER`, or `wasmbox-runner` next to the shim.
fn runner_path() -> std::io::Result<PathBuf> {
    if let Some(path) = std::env::var_os(RUNNER_ENV) {
        return Ok(PathBuf::from(path));
    }
    Ok(std::env::current_exe()?.with_file_name("wasmbox-runner"))
}

/// A runner that has loaded its guest and waits to be started.
pub struct PreparedRunner {
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

/// Starts a runner for `plan` and waits until it is ready or has failed.
/// `confine` runs on the new runner's pid before it reads its plan (to put
/// it in the container's cgroup before it allocates anything).
///
/// On failure the runner is gone (it exits by itself after reporting, or is
/// killed here) and the error is the message for the user.
pub async fn prepare(
    id: &str,
    plan: &RunPlan,
    stdio: RunnerStdio,
    exits: &ExitRegistry,
    namespaces: &NamespacePlan,
    confine: impl FnOnce(u32) -> Result<(), String>,
) -> Result<PreparedRunner, String> {
    let runner = runner_path().map_err(|e| format!("cannot locate wasmbox-runner: {e}"))?;
    let (control_read, control_write) = pipe()?;
    let (status_read, status_write) = pipe()?;

    let mut command = Command::new(&runner);
    command
        .arg("--id")
        .arg(id)
        .arg("--control-fd")
        .arg(control_read.as_raw_fd().to_string())
        .arg("--status-fd")
        .arg(status_write.as_raw_fd().to_string())
        .args(namespaces.has_pid_namespace().then_some("--pid-namespace"))
        .env_clear()
        .envs(
            PASSED_ENV
                .iter()
                .filter_map(|name| Some((name, std::env::var_os(name)?))),
        )
        .current_dir("/")
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
    let (child, exit) = exits
        .spawn(id, &mut command)
        .map_err(|e| format!("cannot start {}: {e}", runner.display()))?;
    drop(command);
    drop(control_read);
    drop(status_write);
    let pid = child.id();

    let plan = plan.clone();
    let confined = confine(pid);
    let ready = async move {
        confined?;
        tokio::task::spawn_blocking(move || {
            let mut control = File::from(control_write);
            write_plan(&mut control, &plan)
                .map_err(|e| format!("cannot hand the run plan to the runner: {e}"))?;
            let mut notices = BufReader::new(File::from(status_read));
            let status = read_status(&mut notices)
                .map_err(|e| format!("cannot read the runner's status: {e}"))?;
            status.map(|details| (control, notices, details))
        })
        .await
        .map_err(|e| format!("runner set-up task failed: {e}"))
        .and_then(|r| r)
    }
    .await;

    match ready {
        Ok((control, notices, details)) => Ok(PreparedRunner {
            pid,
            exit,
            control,
            notices,
            details,
        }),
        Err(message) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let mut exit = exit;
            let _ = exit.wait_for(|e| e.is_some()).await;
            exits.forget(pid as i32);
            Err(message)
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot create a pipe: {e}"))
}
