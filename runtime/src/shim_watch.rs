//! A runner ends when its shim does.
//!
//! A container whose shim died can be neither watched nor stopped: nothing
//! holds its exit, and containerd 2.x, which reaches a pod's containers on
//! the sandbox's shim, runs the shim binary's `delete` for the sandbox
//! alone when that shim dies, and removes the other containers' bundles
//! itself (see the shim's `cleanup`). So once started, a runner keeps its
//! control pipe open and a thread waits on it: the shim holds the pipe's
//! other end for the container's whole life and writes nothing more after
//! the start byte, so the pipe hangs up only when the shim exits, even
//! SIGKILLed; then the runner exits too, with 137, as if SIGKILLed. As PID
//! 1 of its namespace it takes the namespace with it.
//!
//! A thread blocked in `poll`, rather than SIGIO on the pipe: it needs no
//! signal handler, which a PID 1 would need for any default action, and
//! it cannot be set off by anything but the hang-up.

use std::fs::File;
use std::os::fd::AsRawFd;

use nix::libc;

/// The exit code of a runner whose shim is gone: as if SIGKILLed.
const SHIM_GONE_EXIT: i32 = 128 + libc::SIGKILL;

/// What the runner says on its stderr (the container's log) as it ends.
const SHIM_GONE_LINE: &[u8] = b"wasmbox-runner: the shim is gone; ending the container\n";

/// Ends this process (exit code 137) once the shim's end of `control`
/// hangs up. Call it after the start byte, the last thing the shim writes.
pub fn end_with_the_shim(control: File) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("shim-watch".into())
        // The thread only polls and exits: a small stack (it is address
        // space; only what it touches is memory).
        .stack_size(64 * 1024)
        .spawn(move || {
            let fd = control.as_raw_fd();
            loop {
                let mut watched = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll on one pollfd on this stack, for a
                // descriptor this closure owns.
                if unsafe { libc::poll(&mut watched, 1, -1) } < 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                if watched.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    break;
                }
                // Data the shim should not have sent: read it, so that
                // poll blocks again; end of file is the hang-up too.
                let mut bytes = [0u8; 16];
                // SAFETY: read into a buffer on this stack, from our fd.
                if unsafe { libc::read(fd, bytes.as_mut_ptr().cast(), bytes.len()) } == 0 {
                    break;
                }
            }
            // SAFETY: write and _exit are async-signal-safe; the process
            // ends here whatever its other threads do.
            unsafe {
                libc::write(2, SHIM_GONE_LINE.as_ptr().cast(), SHIM_GONE_LINE.len());
                libc::_exit(SHIM_GONE_EXIT);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    /// In a child process (the watcher ends the process it is in): the
    /// child ends with 137 when the pipe's other end closes, and not
    /// before.
    #[test]
    fn a_runner_ends_when_the_other_end_of_its_control_pipe_closes() {
        let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
        // SAFETY: the child makes one thread and pauses; nothing in it
        // needs a lock another thread of the test process held at fork.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                drop(write);
                if end_with_the_shim(File::from(read)).is_err() {
                    unsafe { libc::_exit(2) };
                }
                loop {
                    nix::unistd::pause();
                }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(read);
                // The child is still there a moment after it set up.
                std::thread::sleep(std::time::Duration::from_millis(200));
                assert_eq!(
                    nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
                        .expect("waitpid"),
                    nix::sys::wait::WaitStatus::StillAlive
                );
                drop(write);
                assert_eq!(
                    nix::sys::wait::waitpid(child, None).expect("waitpid"),
                    nix::sys::wait::WaitStatus::Exited(child, SHIM_GONE_EXIT)
                );
            }
        }
    }
}
