//! One process of a native container, its init or an exec: its pid, its
//! stdio as runc gets it, its terminal, and its exit as the shim's
//! reaper reports it.

use containerd_shim::asynchronous::io::{IoTasks, Pty};
use containerd_shim::protos::events::task::TaskIO;
use containerd_shim::protos::types::task::Status;
use std::time::SystemTime;

use tokio::sync::watch;

use super::runc::{ConsoleSocket, PassThrough};
use super::{ContainerError, Result, Shared};
use crate::exits::{ExitInfo, ExitOwner, ExitReceiver};
use crate::stdio;

/// One process of the container: its init, or an exec.
pub struct Process {
    /// 0 until it runs (an exec before Start).
    pub pid: u32,
    pub io: TaskIO,
    pub started: bool,
    /// Fed from the exit registry once the process runs.
    pub exit: (watch::Sender<Option<ExitInfo>>, ExitReceiver),
    /// The terminal's master, when it has one.
    pub pty: Option<Pty>,
    /// The copies between the terminal and the fifos.
    pub copies: IoTasks,
}

impl Process {
    pub fn new(io: TaskIO) -> Self {
        Self {
            pid: 0,
            io,
            started: false,
            exit: watch::channel(None),
            pty: None,
            copies: IoTasks::default(),
        }
    }

    pub fn exited(&self) -> Option<ExitInfo> {
        *self.exit.1.borrow()
    }

    /// Forwards the registry's news of `pid`, a process started at
    /// `since` or later, to this process's watchers.
    pub fn watch(&mut self, shared: &Shared, pid: u32, owner: ExitOwner, since: SystemTime) {
        self.pid = pid;
        let mut from = shared.exits.watch(pid, owner, since);
        let to = self.exit.0.clone();
        tokio::spawn(async move {
            if let Ok(exit) = from.wait_for(|e| e.is_some()).await {
                let _ = to.send(*exit);
            }
        });
    }

    /// The process's stdio for runc: pass-through files, or a console
    /// socket for a terminal.
    pub fn stdio(&self) -> Result<(PassThrough, Option<ConsoleSocket>)> {
        if self.io.terminal {
            return Ok((PassThrough::default(), Some(ConsoleSocket::new()?)));
        }
        let failed =
            |e: std::io::Error| ContainerError::Internal(format!("cannot open the stdio: {e}"));
        Ok((
            PassThrough {
                stdin: stdio::input_pipe(&self.io.stdin).map_err(failed)?,
                stdout: stdio::output_file(&self.io.stdout).map_err(failed)?,
                stderr: stdio::output_file(&self.io.stderr).map_err(failed)?,
            },
            None,
        ))
    }

    /// Copies between the terminal's `master` and the fifos.
    pub fn attach(&mut self, master: std::fs::File) -> Result<()> {
        let failed = |e: containerd_shim::Error| ContainerError::Internal(e.to_string());
        let pty = Pty::new(master).map_err(failed)?;
        if !self.io.stdin.is_empty() {
            self.copies
                .copy_from_fifo(&self.io.stdin, pty.clone())
                .map_err(failed)?;
        }
        if !self.io.stdout.is_empty() {
            self.copies
                .copy_to_fifo(pty.clone(), &self.io.stdout)
                .map_err(failed)?;
        }
        self.pty = Some(pty);
        Ok(())
    }

    pub fn status(&self, paused: bool) -> Status {
        match (self.exited(), self.started, paused) {
            (Some(_), _, _) => Status::STOPPED,
            (None, true, true) => Status::PAUSED,
            (None, true, false) => Status::RUNNING,
            (None, false, _) => Status::CREATED,
        }
    }
}
