//! The runner as PID 1 of its container's PID namespace.
//!
//! The shim starts the runner already inside the container's PID
//! namespace (see the shim's `namespaces`): PID 1 of a new one, or a
//! member of the pod's. The runner's pid is then the task's pid, as runc's
//! init is its container's, and there is no second process per container.
//!
//! A PID 1 ignores the signals it has no handler for, even when they come
//! from outside its namespace (only SIGKILL and SIGSTOP are forced), which
//! is why a busy guest of runwasi never stops on SIGTERM. So, as PID 1, the
//! runner handles SIGTERM, SIGINT and SIGHUP by exiting as the default
//! action would have, with 128 + the signal, so that exit codes are the
//! same inside a PID namespace and outside. A wasi:http server replaces the
//! SIGTERM handler with its drain later.

use nix::libc;
use nix::sys::signal::{self, SigHandler, Signal};

/// The signals whose default action ends a process, which a PID 1 must
/// handle to be ended by them.
const ENDING: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

extern "C" fn exit_as_killed(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) };
}

/// When this process is PID 1 of its namespace, makes SIGTERM, SIGINT and
/// SIGHUP end it as they end any other process. Call it first thing.
pub fn end_on_signals_as_init() -> std::io::Result<()> {
    if nix::unistd::getpid().as_raw() != 1 {
        return Ok(());
    }
    for sig in ENDING {
        // SAFETY: the handler only calls _exit.
        unsafe { signal::signal(sig, SigHandler::Handler(exit_as_killed)) }
            .map_err(std::io::Error::from)?;
    }
    Ok(())
}
