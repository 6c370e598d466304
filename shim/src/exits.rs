//! Routing child exits to the containers they belong to.
//!
//! The `containerd-shim` crate reaps every child on SIGCHLD and broadcasts
//! `(pid, exit code)`; signal deaths arrive as 128 + the signal, so SIGTERM
//! gives 143 and SIGKILL 137. A runner can exit before its container is
//! registered (it fails right after start), so a runner is spawned with the
//! registry locked and exits nobody claimed yet are kept until claimed.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::watch;

/// How and when a runner ended.
#[derive(Debug, Clone, Copy)]
pub struct ExitInfo {
    pub code: u32,
    pub at: SystemTime,
}

/// The receiving side: `None` while the process lives.
pub type ExitReceiver = watch::Receiver<Option<ExitInfo>>;

#[derive(Default)]
pub struct ExitRegistry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    watchers: HashMap<i32, (String, watch::Sender<Option<ExitInfo>>)>,
    unclaimed: HashMap<i32, ExitInfo>,
}

impl ExitRegistry {
    /// Spawns `command` for container `id` and registers its exit.
    pub fn spawn(&self, id: &str, command: &mut Command) -> std::io::Result<(Child, ExitReceiver)> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let child = command.spawn()?;
        let pid = child.id() as i32;
        let (tx, rx) = watch::channel(None);
        if let Some(exit) = inner.unclaimed.remove(&pid) {
            let _ = tx.send(Some(exit));
        }
        inner.watchers.insert(pid, (id.to_string(), tx));
        Ok((child, rx))
    }

    /// Records an exit; returns the container id it belonged to, if any.
    pub fn notify(&self, pid: i32, code: i32) -> Option<(String, ExitInfo)> {
        let exit = ExitInfo {
            code: code as u32,
            at: SystemTime::now(),
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match inner.watchers.get(&pid) {
            Some((id, tx)) => {
                let _ = tx.send(Some(exit));
                Some((id.clone(), exit))
            }
            None => {
                inner.unclaimed.insert(pid, exit);
                None
            }
        }
    }

    /// Forgets a pid once its container is deleted.
    pub fn forget(&self, pid: i32) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.watchers.remove(&pid);
        inner.unclaimed.remove(&pid);
    }
}
