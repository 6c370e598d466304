//! Routing child exits to the containers (and their exec processes) they
//! belong to.
//!
//! The `containerd-shim` crate reaps every child on SIGCHLD (the shim is a
//! subreaper, so a runc container's init, orphaned by `runc create`, is
//! one too) and broadcasts `(pid, exit code)`; signal deaths arrive as
//! 128 plus the signal, so SIGTERM gives 143 and SIGKILL 137. A process can exit
//! before it is registered (it fails right after start, or runc's init is
//! quicker than its pid file), so exits nobody claimed yet are kept until
//! claimed — but only for a while, and never handed to a process that
//! started after them: pids are reused, and an exit of an orphan nobody
//! watched must not make a later process with its pid look exited.
//!
//! A watched exit reaches its waiters (the Wait call, Delete) only once its
//! events are queued ([`Exit::deliver`]): containerd is told TaskOOM, then
//! TaskExit, then, after a Wait returned, TaskDelete, never the other way
//! round.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// How and when a process ended.
#[derive(Debug, Clone, Copy)]
pub struct ExitInfo {
    pub code: u32,
    pub at: SystemTime,
}

/// The receiving side: `None` while the process lives.
pub type ExitReceiver = watch::Receiver<Option<ExitInfo>>;

/// Whose exit a watched pid is, for the TaskExit event.
#[derive(Debug, Clone, Default)]
pub struct ExitOwner {
    pub container: String,
    /// The exec id; empty for the container's own process.
    pub exec: String,
    /// The pid the event names (a wasm runner's guest, say); 0 means the
    /// watched pid itself.
    pub task_pid: u32,
    /// A helper of the shim's own (a runc invocation): no TaskExit.
    pub silent: bool,
    /// The container's `linux.cgroupsPath`, whose OOM kills are reported
    /// (as TaskOOM) when its process exits.
    pub cgroup: Option<String>,
    /// A wasm runner's notices, read to their end: whether it said its
    /// guest stopped for memory. Its exit waits for this (see
    /// [`RunnerNotices`]), so that TaskOOM comes before TaskExit.
    pub notices: Option<RunnerNotices>,
}

/// Whether a runner said its guest ran out of memory: `None` while its
/// notices are still being read, `Some(oom)` once they ended (the runner
/// closed them as it exited).
pub type RunnerNotices = watch::Receiver<Option<bool>>;

impl ExitOwner {
    /// The container's own process.
    pub fn container(id: &str) -> Self {
        Self {
            container: id.to_string(),
            ..Default::default()
        }
    }

    /// An exec process of the container.
    pub fn exec(id: &str, exec: &str) -> Self {
        Self {
            container: id.to_string(),
            exec: exec.to_string(),
            ..Default::default()
        }
    }

    /// A helper the shim runs for the container, whose exit is no event.
    pub fn helper(id: &str) -> Self {
        Self {
            container: id.to_string(),
            silent: true,
            ..Default::default()
        }
    }
}

/// How long an exit nobody claimed is kept for its process's watcher.
const UNCLAIMED_FOR: Duration = Duration::from_secs(60);

/// Exits that were claimed only after they happened, for the TaskExit
/// events nobody published yet.
pub type LateExits = tokio::sync::mpsc::UnboundedReceiver<Exit>;

/// A watched process's exit, to report: whose it was and how it ended.
/// Its waiters see it once it is delivered.
pub struct Exit {
    pub owner: ExitOwner,
    pub info: ExitInfo,
    waiters: watch::Sender<Option<ExitInfo>>,
}

impl Exit {
    /// Tells the process's waiters; call it once its events are queued.
    pub fn deliver(self) {
        let _ = self.waiters.send(Some(self.info));
    }
}

#[derive(Default)]
pub struct ExitRegistry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    watchers: HashMap<i32, (ExitOwner, watch::Sender<Option<ExitInfo>>)>,
    unclaimed: HashMap<i32, ExitInfo>,
    late: Option<tokio::sync::mpsc::UnboundedSender<Exit>>,
}

impl Inner {
    /// Watches `pid`, whose process started at `since` or later: an
    /// unclaimed exit from before then was another process's.
    fn watch(&mut self, pid: i32, owner: ExitOwner, since: SystemTime) -> ExitReceiver {
        let (tx, rx) = watch::channel(None);
        let claimed = self.unclaimed.remove(&pid).filter(|exit| exit.at >= since);
        if let Some(info) = claimed {
            let mut exit = Exit {
                owner,
                info,
                waiters: tx,
            };
            if exit.owner.task_pid == 0 {
                exit.owner.task_pid = pid as u32;
            }
            // Delivered after its TaskExit by whoever takes the late
            // exits, at once when there is no event. The process is gone:
            // nothing is left to watch, and its pid may already be another
            // process's.
            match &self.late {
                Some(late) if !exit.owner.silent => {
                    if let Err(unsent) = late.send(exit) {
                        unsent.0.deliver();
                    }
                }
                _ => exit.deliver(),
            }
            return rx;
        }
        self.watchers.insert(pid, (owner, tx));
        rx
    }
}

impl ExitRegistry {
    /// The exits claimed after they happened; taken once, by the event
    /// publisher.
    pub fn late_exits(&self) -> LateExits {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).late = Some(tx);
        rx
    }

    /// Spawns `command` for `owner` and registers its exit.
    pub fn spawn(
        &self,
        owner: ExitOwner,
        command: &mut Command,
    ) -> std::io::Result<(Child, ExitReceiver)> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let child = command.spawn()?;
        // The reaper cannot report this child before the lock is let go:
        // an exit already kept for its pid is an older process's.
        let rx = inner.watch(child.id() as i32, owner, SystemTime::now());
        Ok((child, rx))
    }

    /// Watches a process the shim did not spawn itself but reaps as the
    /// subreaper (a runc container's init or exec process), whose pid it
    /// learnt from a pid file, and which was started at `since` or later.
    /// An exit that came first is delivered at once.
    pub fn watch(&self, pid: u32, owner: ExitOwner, since: SystemTime) -> ExitReceiver {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.watch(pid as i32, owner, since)
    }

    /// Sets the pid a watched process's TaskExit names, and the cgroup
    /// whose OOM kills its exit reports.
    pub fn set_task(&self, pid: u32, task_pid: u32, cgroup: Option<String>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((owner, _)) = inner.watchers.get_mut(&(pid as i32)) {
            owner.task_pid = task_pid;
            owner.cgroup = cgroup;
        }
    }

    /// Gives a watched runner's exit the end of its notices to wait for.
    pub fn set_notices(&self, pid: u32, notices: RunnerNotices) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((owner, _)) = inner.watchers.get_mut(&(pid as i32)) {
            owner.notices = Some(notices);
        }
    }

    /// Records an exit; returns whose it was, if anyone's, for its events
    /// and then [`Exit::deliver`].
    pub fn notify(&self, pid: i32, code: i32) -> Option<Exit> {
        let info = ExitInfo {
            code: code as u32,
            at: SystemTime::now(),
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // A pid exits once: its watcher goes with the exit (the receivers
        // keep the value), so that a later process given the same pid is
        // never reported as this one, and a long-lived shim keeps nothing
        // per process it ran.
        match inner.watchers.remove(&pid) {
            Some((mut owner, waiters)) => {
                if owner.task_pid == 0 {
                    owner.task_pid = pid as u32;
                }
                Some(Exit {
                    owner,
                    info,
                    waiters,
                })
            }
            None => {
                let now = info.at;
                inner.unclaimed.retain(|_, kept| {
                    now.duration_since(kept.at).unwrap_or_default() < UNCLAIMED_FOR
                });
                inner.unclaimed.insert(pid, info);
                None
            }
        }
    }

    /// Forgets a pid once its process is deleted.
    pub fn forget(&self, pid: i32) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.watchers.remove(&pid);
        inner.unclaimed.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_nobody_claimed_is_not_a_later_process_s() {
        let registry = ExitRegistry::default();
        // An orphan nobody watched exits with 9...
        assert!(registry.notify(4242, 9).is_none());
        // ...and a process started afterwards gets its pid.
        let started = SystemTime::now();
        let exit = registry.watch(4242, ExitOwner::container("later"), started);
        assert!(exit.borrow().is_none(), "a stale exit was delivered");
        // Its own exit is, once delivered.
        let own = registry.notify(4242, 0).expect("watched");
        assert_eq!((own.owner.container.as_str(), own.info.code), ("later", 0));
        own.deliver();
        assert_eq!(exit.borrow().map(|e| e.code), Some(0));
    }

    #[test]
    fn an_exit_reaches_its_waiters_only_once_delivered() {
        let registry = ExitRegistry::default();
        let exit = registry.watch(4545, ExitOwner::container("c"), SystemTime::now());
        let reported = registry.notify(4545, 137).expect("watched");
        // Its events are not queued yet: a Wait must not return.
        assert!(exit.borrow().is_none());
        reported.deliver();
        assert_eq!(exit.borrow().map(|e| e.code), Some(137));
    }

    #[test]
    fn an_exit_before_the_watch_of_its_own_process_is_delivered_after_its_event() {
        let registry = ExitRegistry::default();
        let started = SystemTime::now() - Duration::from_millis(5);
        let mut late = registry.late_exits();
        assert!(registry.notify(4343, 3).is_none());
        let exit = registry.watch(4343, ExitOwner::exec("c", "e1"), started);
        assert!(exit.borrow().is_none(), "delivered before its TaskExit");
        let reported = late.try_recv().expect("a TaskExit to publish");
        assert_eq!(
            (
                reported.owner.exec.as_str(),
                reported.owner.task_pid,
                reported.info.code
            ),
            ("e1", 4343, 3)
        );
        reported.deliver();
        assert_eq!(exit.borrow().map(|e| e.code), Some(3));
    }

    #[test]
    fn a_watched_exit_is_not_kept_after_it_happened() {
        let registry = ExitRegistry::default();
        let exit = registry.watch(4444, ExitOwner::container("old"), SystemTime::now());
        let reported = registry.notify(4444, 0).expect("watched");
        assert_eq!(reported.owner.container, "old");
        reported.deliver();
        // The receiver still has the exit...
        assert_eq!(exit.borrow().map(|e| e.code), Some(0));
        assert!(registry.inner.lock().unwrap().watchers.is_empty());
        // ...and an orphan given the pid later is nobody's, not "old"'s.
        assert!(registry.notify(4444, 9).is_none());
        // A watch that claims an exit at once keeps nothing either (with no
        // one to publish events, it is delivered at once).
        let claimed = registry.watch(4444, ExitOwner::exec("c", "e"), SystemTime::UNIX_EPOCH);
        assert_eq!(claimed.borrow().map(|e| e.code), Some(9));
        assert!(registry.inner.lock().unwrap().watchers.is_empty());
    }

    #[test]
    fn unclaimed_exits_are_not_kept_forever() {
        let registry = ExitRegistry::default();
        registry.notify(1, 0);
        {
            let mut inner = registry.inner.lock().unwrap();
            let kept = inner.unclaimed.get_mut(&1).unwrap();
            kept.at -= UNCLAIMED_FOR * 2;
        }
        registry.notify(2, 0);
        let inner = registry.inner.lock().unwrap();
        assert!(!inner.unclaimed.contains_key(&1));
        assert!(inner.unclaimed.contains_key(&2));
    }
}
