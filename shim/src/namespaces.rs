//! The Linux namespaces of a container's runner, from `linux.namespaces`.
//!
//! A namespace with a path (a pod's `/proc/<pid>/ns/net`, say) is joined
//! with setns(2); one without a path is created with unshare(2). Both
//! happen in the forked child before it execs the runner, so the runner
//! starts, single-threaded, already inside them, and every socket it opens
//! is in the right network namespace.
//!
//! A PID namespace is the exception: entering one only takes effect for
//! the children of the thread that enters it. So the runner is forked from
//! a thread of its own that entered it first ([`NamespacePlan::in_pid_namespace`]):
//! the runner starts as PID 1 of a new namespace, or as a member of the
//! pod's, and is the task's only process, as runc's init is. That thread
//! ends with the spawn, so no other thread of the shim ever forks into it.
//!
//! A new network namespace gets its loopback interface up, as under runc.
//!
//! A new mount namespace is always made, whatever the spec says: the
//! runner changes its root there (see `wasmbox_runtime::confine::root`).
//!
//! A user namespace is the runner's to make or join, last, once it has
//! set up its root as root of the host (see `wasmbox_runtime::confine`);
//! it is not entered here. A time namespace is left out on purpose: WASI
//! clocks are the host's. That is logged.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::libc;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

/// What the child does before exec: join these, then create those.
pub struct NamespacePlan {
    join: Vec<(OwnedFd, libc::c_int, String)>,
    create: libc::c_int,
}

/// The clone flag of a namespace type, or `None` for the ones left out.
fn clone_flag(kind: LinuxNamespaceType) -> Option<libc::c_int> {
    match kind {
        LinuxNamespaceType::Network => Some(libc::CLONE_NEWNET),
        LinuxNamespaceType::Ipc => Some(libc::CLONE_NEWIPC),
        LinuxNamespaceType::Uts => Some(libc::CLONE_NEWUTS),
        LinuxNamespaceType::Mount => Some(libc::CLONE_NEWNS),
        LinuxNamespaceType::Cgroup => Some(libc::CLONE_NEWCGROUP),
        LinuxNamespaceType::Pid => Some(libc::CLONE_NEWPID),
        LinuxNamespaceType::User | LinuxNamespaceType::Time => None,
    }
}

impl NamespacePlan {
    /// Opens the namespace paths of the spec; the error names the path.
    pub fn from_spec(id: &str, namespaces: &[LinuxNamespace]) -> Result<Self, String> {
        let mut join = Vec::new();
        let mut create = 0;
        for ns in namespaces {
            let kind = ns.typ();
            if kind == LinuxNamespaceType::User {
                // The runner's, from the plan.
                continue;
            }
            let Some(flag) = clone_flag(kind) else {
                log::info!(
                    "container {id}: {kind:?} namespace left out on purpose: a WASI guest cannot observe it"
                );
                continue;
            };
            match ns.path() {
                Some(path) => {
                    let file = File::open(path).map_err(|e| {
                        format!("cannot open the {kind:?} namespace {}: {e}", path.display())
                    })?;
                    join.push((OwnedFd::from(file), flag, path.display().to_string()));
                }
                None => create |= flag,
            }
        }
        // Always a mount namespace of the runner's own, even when the spec
        // has none or names one to join: the runner pivots into an empty
        // root there, which must never change anyone else's view.
        create |= libc::CLONE_NEWNS;
        Ok(Self { join, create })
    }

    /// Runs `spawn` (which forks the runner) so that its child starts in
    /// the container's PID namespace: on a thread of its own that unshared
    /// a new one or joined the pod's first, when the spec has one, and here
    /// otherwise. The error names the namespace.
    pub fn in_pid_namespace<T: Send>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<T> + Send,
    ) -> Result<std::io::Result<T>, String> {
        let joined = self
            .join
            .iter()
            .find(|(_, flag, _)| *flag == libc::CLONE_NEWPID);
        if joined.is_none() && self.create & libc::CLONE_NEWPID == 0 {
            return Ok(spawn());
        }
        std::thread::scope(|scope| {
            let spawner = scope.spawn(|| {
                // SAFETY: setns and unshare on this thread only, with a
                // descriptor the plan keeps open; they change which PID
                // namespace this thread's children start in.
                let entered = match joined {
                    Some((fd, _, path)) => succeeded(
                        unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWPID) },
                        || format!("cannot join the Pid namespace {path}"),
                    ),
                    None => succeeded(unsafe { libc::unshare(libc::CLONE_NEWPID) }, || {
                        "cannot make the Pid namespace".to_string()
                    }),
                };
                entered.map(|()| spawn())
            });
            spawner
                .join()
                .unwrap_or_else(|_| Err("the thread that starts the runner panicked".into()))
        })
    }

    /// The raw pieces for the pre-exec hook: descriptors with their flags,
    /// and the flags to unshare (the PID namespace is entered by
    /// [`Self::in_pid_namespace`] instead). The plan must outlive the spawn.
    pub fn raw(&self) -> (Vec<(RawFd, libc::c_int)>, libc::c_int) {
        let join = self
            .join
            .iter()
            .filter(|(_, flag, _)| *flag != libc::CLONE_NEWPID)
            .map(|(fd, flag, _)| (fd.as_raw_fd(), *flag))
            .collect();
        (join, self.create & !libc::CLONE_NEWPID)
    }
}

/// `Ok` for a system call's 0, else `what` failed, with errno's reason.
fn succeeded(result: libc::c_int, what: impl FnOnce() -> String) -> Result<(), String> {
    if result == 0 {
        Ok(())
    } else {
        let e = std::io::Error::last_os_error();
        Err(format!("{}: {e}", what()))
    }
}

/// Runs in the forked child: joins, then creates. Only async-signal-safe
/// calls (setns, unshare).
pub fn enter(join: &[(RawFd, libc::c_int)], create: libc::c_int) -> std::io::Result<()> {
    for (fd, flag) in join {
        // SAFETY: setns on a descriptor the parent keeps open across fork.
        if unsafe { libc::setns(*fd, *flag) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: unshare takes only flags.
    if create != 0 && unsafe { libc::unshare(create) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if create & libc::CLONE_NEWNET != 0 {
        loopback_up()?;
    }
    Ok(())
}

/// Brings up `lo` in a network namespace just created, as runc does: a new
/// namespace has it down, and a server in the container could not even be
/// reached on 127.0.0.1. Only async-signal-safe calls (socket, ioctl, close).
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain system calls on a socket this function owns, with an
    // `ifreq` that lives on the stack for the duration of each call.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        let mut result = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut request);
        if result == 0 {
            request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            result = libc::ioctl(sock, libc::SIOCSIFFLAGS, &request);
        }
        let error = std::io::Error::last_os_error();
        libc::close(sock);
        if result != 0 {
            return Err(error);
        }
    }
    Ok(())
}
