//! `containerd-shim-wasmbox-v1`: the containerd shim (runtime type
//! `io.containerd.wasmbox.v1`) that runs WebAssembly containers.
//!
//! containerd runs this binary with `start` to launch a shim server,
//! `delete` to clean up after a dead one, and with no action to serve the
//! Task API over ttrpc. The `containerd-shim` crate does the bootstrap
//! (every containerd protocol from 1.6 to 2.3); [`lifecycle`] plugs our
//! shim into it, [`task`] serves the Task API, and [`runner`] starts the
//! per-container `wasmbox-runner` processes that actually run wasm.

mod exits;
mod lifecycle;
mod rootfs;
mod runner;
mod stdio;
mod task;

/// The runtime type containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.wasmbox.v1";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    containerd_shim::asynchronous::run::<lifecycle::WasmboxShim>(RUNTIME_ID, None).await;
}
