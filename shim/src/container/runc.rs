//! Driving runc for native containers, with the `runc` crate of
//! containerd's rust-extensions.
//!
//! - Every runc invocation is spawned through the shim's [`ExitRegistry`]
//!   ([`RegistrySpawner`]): the shim is a subreaper and the
//!   `containerd-shim` crate reaps every child, so runc's exit has to be
//!   learnt from that reaper, as rust-extensions' runc shim does.
//! - runc gets the container's stdio itself ([`PassThrough`]): the
//!   container's process inherits the fifos, with no copy in the shim.
//!   runc's own errors go to its JSON log in the bundle, whose last error
//!   is what the user sees ([`last_error`]), as under runc's shim.
//! - A terminal comes over a console socket ([`ConsoleSocket`]): runc
//!   sends the pty's master, which the shim then copies to and from the
//!   fifos.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;

use async_trait::async_trait;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use runc::options::GlobalOpts;
use runc::{Command, Io, Runc, Spawner};
use tokio::net::UnixListener;

use super::{ContainerError, Result, Shared};
use crate::exits::ExitOwner;

/// Runs runc invocations as children the shim's reaper reports.
pub struct RegistrySpawner {
    pub shared: Arc<Shared>,
    pub container: String,
}

impl std::fmt::Debug for RegistrySpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistrySpawner({})", self.container)
    }
}

#[async_trait]
impl Spawner for RegistrySpawner {
    async fn execute(&self, cmd: Command) -> runc::Result<(ExitStatus, u32, String, String)> {
        let mut cmd = cmd.into_std();
        let owner = ExitOwner::helper(&self.container);
        let (mut child, mut exit) = self
            .shared
            .exits
            .spawn(owner, &mut cmd)
            .map_err(runc::error::Error::ProcessSpawnFailed)?;
        drop(cmd);
        let pid = child.id();
        let out = read_all(child.stdout.take());
        let err = read_all(child.stderr.take());
        let code = exit
            .wait_for(|e| e.is_some())
            .await
            .ok()
            .and_then(|e| *e)
            .map(|e| e.code)
            .unwrap_or(255);
        self.shared.exits.forget(pid as i32);
        let (out, err) = (out.await.unwrap_or_default(), err.await.unwrap_or_default());
        // The reaper reports 128 + n for a death by signal n.
        let status = if code > 128 && code < 160 {
            ExitStatus::from_raw((code - 128) as i32)
        } else {
            ExitStatus::from_raw((code as i32) << 8)
        };
        Ok((status, pid, out, err))
    }
}

/// Reads a child's pipe to its end, off the event loop.
fn read_all(pipe: Option<impl std::io::Read + Send + 'static>) -> tokio::task::JoinHandle<String> {
    tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// A runc client for one container: `binary` (or `runc` on PATH, which is
/// containerd's), its state under `root`, its log in `log`.
pub fn client(
    shared: &Arc<Shared>,
    container: &str,
    binary: Option<&Path>,
    root: &Path,
    log: &Path,
    systemd_cgroup: bool,
) -> Result<Runc> {
    let command = binary
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("runc"));
    let mut opts = GlobalOpts::new()
        .command(&command)
        .root(root)
        .log(log)
        .log_json()
        .systemd_cgroup(systemd_cgroup);
    opts.custom_spawner(Arc::new(RegistrySpawner {
        shared: shared.clone(),
        container: container.to_string(),
    }));
    opts.build().map_err(|e| match e {
        runc::error::Error::NotFound => ContainerError::FailedPrecondition(format!(
            "native containers run through runc, and {} was not found{}: install runc, or set BinaryName in the runtime's options",
            command.display(),
            if command.is_absolute() { "" } else { " on PATH" }
        )),
        other => ContainerError::Internal(format!("runc: {other}")),
    })
}

/// The last error runc wrote to its JSON log, or the command's own output.
pub fn last_error(log: &Path, error: &runc::error::Error) -> String {
    let logged = std::fs::read_to_string(log).ok().and_then(|text| {
        text.lines().rev().find_map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).ok()?;
            (entry["level"] == "error")
                .then(|| entry["msg"].as_str().map(str::to_string))
                .flatten()
        })
    });
    match (logged, error) {
        (Some(message), _) if message.starts_with("runc") => message,
        (Some(message), _) => format!("runc: {message}"),
        (
            None,
            runc::error::Error::CommandFailed {
                stdout,
                stderr,
                status,
            },
        ) => {
            format!("runc failed ({status}): {}{}", stdout.trim(), stderr.trim())
        }
        (None, other) => format!("runc: {other}"),
    }
}

/// The container's stdio, opened by the shim and inherited by runc and,
/// through it, by the container's process.
#[derive(Debug, Default)]
pub struct PassThrough {
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

#[async_trait]
impl Io for PassThrough {
    async fn set(&self, cmd: &mut Command) -> std::io::Result<()> {
        let stdio = |file: &Option<File>| -> std::io::Result<std::process::Stdio> {
            Ok(match file {
                Some(file) => file.try_clone()?.into(),
                None => std::process::Stdio::null(),
            })
        };
        cmd.stdin(stdio(&self.stdin)?)
            .stdout(stdio(&self.stdout)?)
            .stderr(stdio(&self.stderr)?);
        Ok(())
    }

    async fn close_after_start(&self) {}
}

/// Where runc sends a container's (or an exec's) terminal.
pub struct ConsoleSocket {
    dir: tempfile::TempDir,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// A socket in a new directory under /tmp (a socket path must be short).
    pub fn new() -> Result<Self> {
        let failed = |e: std::io::Error| {
            ContainerError::Internal(format!("cannot make a console socket: {e}"))
        };
        let dir = tempfile::Builder::new()
            .prefix("wasmbox-pty")
            .tempdir()
            .map_err(failed)?;
        let listener = UnixListener::bind(dir.path().join("pty.sock")).map_err(failed)?;
        Ok(Self { dir, listener })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("pty.sock")
    }

    /// Receives the pty master runc sends; call while runc runs.
    pub async fn receive(&self) -> Result<File> {
        let failed = |what: String| ContainerError::Internal(format!("console socket: {what}"));
        let (stream, _) = self
            .listener
            .accept()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let stream = stream.into_std().map_err(|e| failed(e.to_string()))?;
        stream
            .set_nonblocking(false)
            .map_err(|e| failed(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            use std::os::fd::AsRawFd;
            let mut name = [0u8; 4096];
            let mut iov = [std::io::IoSliceMut::new(&mut name)];
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let message = recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(|e| failed(e.to_string()))?;
            for cmsg in message.cmsgs().map_err(|e| failed(e.to_string()))? {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    if let Some(fd) = fds.first() {
                        // SAFETY: the kernel just gave this process the
                        // descriptor; nothing else owns it.
                        return Ok(File::from(unsafe { OwnedFd::from_raw_fd(*fd) }));
                    }
                }
            }
            Err(failed("runc sent no terminal".into()))
        })
        .await
        .map_err(|e| failed(e.to_string()))?
    }
}

/// Sets a terminal's size (TIOCSWINSZ on its master).
pub fn resize(master: &impl std::os::fd::AsRawFd, width: u32, height: u32) -> Result<()> {
    let size = nix::libc::winsize {
        ws_row: height as u16,
        ws_col: width as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize, which lives across the call.
    if unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size) } != 0 {
        return Err(ContainerError::Internal(format!(
            "cannot resize the terminal: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}
