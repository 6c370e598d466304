//! Making a user namespace with given mappings, and joining one.
//!
//! A process cannot give its own new user namespace arbitrary mappings:
//! the kernel wants the writer of `uid_map` to hold CAP_SETUID in the
//! parent namespace, which a process gives up by entering the child. So,
//! as runc and crun do for id-mapped mounts, a helper is forked; it
//! unshares a user namespace and waits; the caller, still root outside,
//! writes the helper's `uid_map` and `gid_map`, opens its `ns/user` and
//! lets it go. The descriptor keeps the namespace alive with no process
//! in it, for setns(2) and for MOUNT_ATTR_IDMAP.
//!
//! The caller may be in a PID namespace of its own that /proc (the host's)
//! does not number its processes in: the helper's files are found by the
//! pid /proc gives it, read from a pidfd's fdinfo.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::libc;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use crate::mapping::show;
use crate::{IdMapping, IdMappings, IdmapError};

fn step_error(step: &str, e: impl std::fmt::Display) -> IdmapError {
    IdmapError::Namespace {
        step: step.to_string(),
        reason: e.to_string(),
    }
}

/// Makes a user namespace with `maps` and returns its descriptor. `owner`
/// is where the spec has the mappings (`linux`, or `mount /data`): the
/// errors of the map writes name `<owner>.uidMappings` or
/// `<owner>.gidMappings` with the kernel's reason.
///
/// Forks: call it while the process has one thread, or accept that the
/// helper, which only makes async-signal-safe calls, is a copy of one
/// thread of a threaded process.
pub fn user_namespace(maps: &IdMappings, owner: &str) -> Result<OwnedFd, IdmapError> {
    if maps.uids.is_empty() || maps.gids.is_empty() {
        return Err(IdmapError::Parse {
            field: format!("{owner}.uidMappings and {owner}.gidMappings"),
            reason: "a new user namespace needs both".into(),
        });
    }
    let (ready_read, ready_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| step_error("pipe", e))?;
    let (hold_read, hold_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| step_error("pipe", e))?;
    // SAFETY: the child only makes async-signal-safe calls (unshare,
    // write, read, close, _exit) on descriptors it owns, then exits.
    match unsafe { fork() }.map_err(|e| step_error("fork", e))? {
        ForkResult::Child => {
            // SAFETY: as above; nothing here allocates or takes a lock.
            unsafe {
                libc::close(hold_write.as_raw_fd());
                libc::close(ready_read.as_raw_fd());
                let errno: i32 = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                    0
                } else {
                    *libc::__errno_location()
                };
                let bytes = errno.to_ne_bytes();
                libc::write(ready_write.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                let mut byte = 0u8;
                // Returns at end of file: the parent is done with us.
                libc::read(hold_read.as_raw_fd(), (&raw mut byte).cast(), 1);
                libc::_exit(0)
            }
        }
        ForkResult::Parent { child } => {
            drop(ready_write);
            drop(hold_read);
            let helper = Helper {
                pid: child,
                hold: Some(hold_write),
            };
            let mut errno = [0u8; 4];
            nix::unistd::read(&ready_read, &mut errno)
                .ok()
                .filter(|n| *n == errno.len())
                .ok_or_else(|| step_error("the helper", "it died before it unshared"))?;
            let errno = i32::from_ne_bytes(errno);
            if errno != 0 {
                return Err(step_error(
                    "unshare(CLONE_NEWUSER)",
                    std::io::Error::from_raw_os_error(errno),
                ));
            }
            let seen = proc_pid(child)?;
            write_map(seen, "uid_map", format!("{owner}.uidMappings"), &maps.uids)?;
            write_map(seen, "gid_map", format!("{owner}.gidMappings"), &maps.gids)?;
            let namespace = File::open(format!("/proc/{seen}/ns/user"))
                .map_err(|e| step_error("open the helper's ns/user", e))?;
            drop(helper);
            Ok(OwnedFd::from(namespace))
        }
    }
}

/// The pid /proc gives `child`, which this process's PID namespace
/// numbers `child`: the same unless this process is in a PID namespace
/// that /proc was not mounted for (PID 1 of a container's, say).
fn proc_pid(child: Pid) -> Result<i32, IdmapError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new
    // descriptor, owned from here on.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
    if fd < 0 {
        return Err(step_error(
            "pidfd_open the helper",
            std::io::Error::last_os_error(),
        ));
    }
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))
        .map_err(|e| step_error("read the helper's pidfd fdinfo", e))?;
    info.lines()
        .find_map(|line| line.strip_prefix("Pid:")?.trim().parse().ok())
        .filter(|pid: &i32| *pid > 0)
        .ok_or_else(|| step_error("the helper's pidfd fdinfo", "it names no pid"))
}

fn write_map(
    pid: i32,
    file: &str,
    field: String,
    mappings: &[IdMapping],
) -> Result<(), IdmapError> {
    let refused = |e: std::io::Error| IdmapError::Refused {
        field,
        mapping: show(mappings),
        reason: e.to_string(),
    };
    // One write: the kernel takes a map file's whole text at once.
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/{file}"))
        .and_then(|mut f| f.write_all(IdMappings::map_file(mappings).as_bytes()))
        .map_err(refused)
}

/// The helper process: released and reaped when dropped, on every path.
struct Helper {
    pid: Pid,
    hold: Option<OwnedFd>,
}

impl Drop for Helper {
    fn drop(&mut self) {
        // End of file on its pipe: it exits by itself.
        self.hold.take();
        let _ = waitpid(self.pid, None);
    }
}

/// Joins the user namespace `namespace` (setns(2)). The process then holds
/// every capability there, and none outside: drop what it must not keep
/// next. It must have one thread.
pub fn join(namespace: BorrowedFd<'_>) -> Result<(), IdmapError> {
    nix::sched::setns(namespace.as_fd(), nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| IdmapError::Join(e.to_string()))
}
