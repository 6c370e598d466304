//! `containerd-shim-wasmbox-v1`: the containerd shim (runtime type
//! `io.containerd.wasmbox.v1`) that runs WebAssembly containers.
//!
//! containerd runs this binary with `start` to launch a shim server,
//! `delete` to clean up after a dead one, and with no action to serve the
//! Task API over ttrpc. [`lifecycle`] answers `start` and `delete` through
//! the `containerd-shim` crate, [`serve`] runs the server, [`task`] serves
//! the Task API, and [`runner`] starts the per-container `wasmbox-runner`
//! processes that actually run wasm.

mod artifact;
mod bootstrap;
mod cgroup;
mod cleanup;
mod container;
mod events;
mod exits;
mod features;
mod heap;
mod launch;
mod lifecycle;
mod namespaces;
mod oom;
mod optimize;
mod rootfs;
mod runner;
mod serve;
mod socket;
mod stdio;
mod task;

/// The runtime type containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.wasmbox.v1";

/// Keeps the serving shim's heap in one glibc arena. Its event loop is one
/// thread, and tokio's blocking threads come and go (cgroup moves, file
/// work); each new thread would otherwise get an arena of its own that
/// outlives it, part used, in every idle shim of a node (36-44 KiB each,
/// two or three per shim, seen in /proc/PID/smaps). Nothing here allocates
/// from many threads at once, so the one arena's lock costs nothing.
fn one_malloc_arena() {
    // SAFETY: mallopt only changes allocator settings; it is called before
    // any thread other than this one exists.
    unsafe { nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1) };
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: {e}");
            std::process::exit(2);
        }
    };
    if flags.action.is_empty() && !flags.info && !flags.version {
        one_malloc_arena();
        if let Err(e) = serve::serve(flags).await {
            eprintln!("{RUNTIME_ID}: {e:#}");
            log::error!("{e:#}");
            std::process::exit(1);
        }
        return;
    }
    if flags.action == "delete" {
        lifecycle::log_warnings_to_stderr();
    }
    // start, delete, -info and -v are the crate's, with our start_shim.
    containerd_shim::asynchronous::run::<lifecycle::WasmboxShim>(RUNTIME_ID, None).await;
}
