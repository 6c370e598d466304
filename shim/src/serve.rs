//! Serving the Task API: the shim server's main loop.
//!
//! containerd-shim's own `run` registers the Task service only under its
//! task API v3 name (`containerd.task.v3.Task`), which containerd 2.x
//! speaks. containerd 1.6 and 1.7 call `containerd.task.v2.Task`, with the
//! same messages. So this module serves one [`TaskService`] under both
//! names, and does the rest of what a shim server does: reap children and
//! route their exits, publish events, log to containerd's fifo, and exit
//! when the last container is gone.
//!
//! Together with [`crate::lifecycle`]'s `start`, this is all the code that
//! depends on containerd's bootstrap protocol; follow containerd here.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use containerd_shim::asynchronous::monitor::monitor_notify_by_pid;
use containerd_shim::asynchronous::Shim;
use containerd_shim::protos::shim_async::create_task;
use containerd_shim::protos::ttrpc::r#async::transport::Listener;
use containerd_shim::protos::ttrpc::r#async::Server;
use containerd_shim::{Config, Flags};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use crate::events::EventPublisher;
use crate::lifecycle::WasmboxShim;

/// How long the shim, told to exit, waits for containerd to take the
/// events still queued.
const EVENT_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The service names containerd calls the Task API by.
const TASK_V3: &str = "containerd.task.v3.Task";
const TASK_V2: &str = "containerd.task.v2.Task";

/// Runs the shim server until the last container is deleted and
/// containerd calls Shutdown.
pub async fn serve(flags: Flags) -> Result<()> {
    if flags.socket.is_empty() {
        bail!("-socket is required to serve");
    }
    let socket_path = flags.socket.trim_start_matches("unix://").to_string();
    // The socket `start` bound (see crate::launch), or, for a server
    // started by hand, one of its own.
    let listener = match crate::launch::inherited_listener(&socket_path) {
        Ok(Some(listener)) => listener,
        Ok(None) => bind(&socket_path)?,
        Err(e) => bail!("{e}"),
    };
    let served = serve_on(listener, &flags, &socket_path).await;
    if served.is_err() {
        // Nothing serves there: a later `start` of the group binds anew.
        let _ = std::fs::remove_file(&socket_path);
    }
    served
}

async fn serve_on(listener: UnixListener, flags: &Flags, socket_path: &str) -> Result<()> {
    // Orphaned grandchildren get reparented to us, not to init.
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a subreaper")?;
    // Watch SIGCHLD before any child exists.
    let mut sigchld = signal(SignalKind::child()).context("cannot watch SIGCHLD")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;

    let mut config = Config::default();
    let mut shim = WasmboxShim::new(crate::RUNTIME_ID, flags, &mut config).await;
    containerd_shim::logger::init(
        flags.debug,
        &config.default_log_level,
        &flags.namespace,
        &flags.id,
    )
    .context("cannot set up logging")?;

    let ttrpc_address = std::env::var("TTRPC_ADDRESS").context("TTRPC_ADDRESS is not set")?;
    let publisher = EventPublisher::new(&ttrpc_address);
    let service = shim.task_service(publisher.clone()).await;
    let shared = service.shared();
    let task: Arc<dyn containerd_shim::Task + Send + Sync> = Arc::new(service);

    let mut services = create_task(task.clone());
    let v2 = create_task(task)
        .remove(TASK_V3)
        .context("the generated Task service has an unexpected name")?;
    services.insert(TASK_V2.to_string(), v2);

    let listener = Listener::try_from(listener).context("cannot make a ttrpc listener")?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(services);
    server
        .start()
        .await
        .context("cannot start the ttrpc server")?;
    log::info!("wasmbox shim serving on {}", flags.socket);

    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = sigchld.recv() => reap_children().await,
                Some(()) = sigterm.recv() => log::debug!("SIGTERM ignored: containerd stops shims with Shutdown"),
                else => break,
            }
        }
    });

    shim.wait().await;
    log::info!("shutting down");
    server.shutdown().await.unwrap_or_default();
    // containerd just called Shutdown, so it is there to take what is
    // still held (a TaskExit from while it was away).
    if !publisher.flush(EVENT_FLUSH_TIMEOUT).await {
        log::warn!(
            "exiting with events containerd did not take within {} s",
            EVENT_FLUSH_TIMEOUT.as_secs()
        );
    }
    let _ = std::fs::remove_file(socket_path);
    // No compile outlives the shim (the socket is gone already: containerd
    // starts a new shim for a new container meanwhile).
    shared
        .optimizer
        .finish(crate::optimize::OPTIMIZE_WITHIN)
        .await;
    Ok(())
}

fn bind(path: &str) -> Result<UnixListener> {
    if let Some(parent) = Path::new(path).parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    UnixListener::bind(path).with_context(|| format!("cannot listen on {path}"))
}

/// Reaps every exited child and reports its exit, 128 + the signal for a
/// child killed by a signal.
async fn reap_children() {
    loop {
        let (pid, code) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code),
            Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, 128 + signal as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                log::warn!("waitpid: {e}");
                return;
            }
        };
        if let Err(e) = monitor_notify_by_pid(pid.as_raw(), code).await {
            log::error!("cannot route the exit of {pid}: {e}");
        }
    }
}
