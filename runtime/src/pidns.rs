//! Entering a PID namespace: the runner forks once, after reading its plan.
//!
//! setns(2) and unshare(2) with CLONE_NEWPID (done by the shim before it
//! execs the runner) apply to the runner's children, not to the runner. So
//! the runner forks: the child — PID 1 of a new namespace, or a member of
//! the pod's — runs the guest; the parent stays the task's process. It
//! forwards the signals containerd sends, and exits as the child did (by
//! the same signal, or with the same code), so exit codes are unchanged.
//! The child dies with the parent (PR_SET_PDEATHSIG), so SIGKILL to the
//! task still ends the guest.
//!
//! A PID 1 ignores signals it has no handler for, which is why a busy guest
//! of runwasi never stops on SIGTERM. The child therefore handles SIGTERM,
//! SIGINT and SIGHUP by exiting as the default action would have: 128 +
//! the signal.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// The child's pid, for the parent's signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Signals the parent passes on to the child.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

extern "C" fn forward(sig: libc::c_int) {
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(child, sig) };
    }
}

extern "C" fn exit_as_killed(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) };
}

/// Forks. Returns in the child, inside the PID namespace; the parent
/// never returns: it supervises the child and exits as it did.
/// `parent_closes` are the descriptors only the child may hold (the
/// shim's pipes, the container's stdio); `in_parent` runs in the parent,
/// with the child's pid, before it starts supervising (to tell the shim the
/// child's pid, and to take on the container's identity, so the task's
/// process is not root when the guest is not).
///
/// Must be called while the process has one thread.
pub fn fork_into_namespace(
    parent_closes: &[RawFd],
    in_parent: impl FnOnce(Pid),
) -> std::io::Result<ParentWatch> {
    // The child cannot ask for its parent's pid (the parent is outside its
    // namespace, so getppid() is 0): a pipe whose write end only the parent
    // holds tells it whether the parent is still alive.
    let (alive_read, alive_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    // SAFETY: the runner calls this before it starts any thread (before the
    // engine exists), so the child is a whole copy of a single-threaded
    // process and may do anything.
    match unsafe { fork() }.map_err(std::io::Error::from)? {
        ForkResult::Child => {
            drop(alive_write);
            let watch = ParentWatch { alive: alive_read };
            watch.arm();
            if nix::unistd::getpid().as_raw() == 1 {
                for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
                    // SAFETY: the handler only calls _exit.
                    unsafe { signal::signal(sig, SigHandler::Handler(exit_as_killed)) }
                        .map_err(std::io::Error::from)?;
                }
            }
            Ok(watch)
        }
        ForkResult::Parent { child } => {
            drop(alive_read);
            // Held, never written, until the parent exits.
            std::mem::forget(alive_write);
            in_parent(child);
            supervise(child, parent_closes)
        }
    }
}

/// The child's tie to its parent: it dies with it.
pub struct ParentWatch {
    alive: std::os::fd::OwnedFd,
}

impl ParentWatch {
    /// Asks for SIGKILL when the parent dies, and exits now if it already
    /// has. Call again after a change of credentials, which clears it.
    pub fn arm(&self) {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes only integers.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let mut byte = [0u8; 1];
        if let Ok(0) = nix::unistd::read(&self.alive, &mut byte) {
            // End of file: the parent died before the prctl took hold.
            std::process::exit(137);
        }
    }
}

fn supervise(child: Pid, parent_closes: &[RawFd]) -> ! {
    CHILD.store(child.as_raw(), Ordering::SeqCst);
    for fd in parent_closes {
        // SAFETY: these descriptors belong to the child from now on; the
        // parent never uses them again.
        unsafe { libc::close(*fd) };
    }
    for sig in FORWARDED {
        // SAFETY: the handler only calls kill.
        let _ = unsafe { signal::signal(sig, SigHandler::Handler(forward)) };
    }
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                // Die the same way, so the shim reports 128 + the signal.
                // SAFETY: restoring the default action of a signal.
                let _ = unsafe { signal::signal(sig, SigHandler::SigDfl) };
                let _ = signal::raise(sig);
                std::process::exit(128 + sig as i32);
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => std::process::exit(125),
        }
    }
}
