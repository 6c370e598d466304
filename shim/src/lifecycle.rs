//! The shim's own life cycle: `start` (launch or reuse a shim server, see
//! [`crate::socket`]),
//! `delete` (clean up after a shim that died), serving, and exiting when the
//! last container is gone.
//!
//! Containers of one Kubernetes pod share one shim process: the shim
//! socket is keyed by the `io.kubernetes.cri.sandbox-id` annotation when the
//! bundle has one, as the runc shim does. The bootstrap protocol of each
//! containerd version is handled by the `containerd-shim` crate, so it can
//! follow containerd 2.3 in one place.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_shim::api::DeleteResponse;
use containerd_shim::asynchronous::{spawn, ExitSignal, Shim};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::write_str_to_file;
use containerd_shim::{Config, Flags, StartOpts};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::events::EventPublisher;
use crate::task::TaskService;

/// The annotation CRI puts on every container of a pod.
const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

pub struct WasmboxShim {
    namespace: String,
    /// containerd's gRPC address, for the wasm layers of OCI artifacts.
    containerd_address: String,
    exit_signal: Arc<ExitSignal>,
}

#[async_trait]
impl Shim for WasmboxShim {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Self {
            namespace: args.namespace.clone(),
            containerd_address: args.address.clone(),
            exit_signal: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // containerd runs `start` in the bundle directory.
        let grouping = sandbox_id(Path::new("config.json")).unwrap_or_else(|| opts.id.clone());
        let legacy = opts.containerd_version.is_empty();
        let address = opts.socket_address(&grouping);
        let claim = crate::socket::claim(&address)
            .map_err(|e| containerd_shim::Error::Other(format!("shim socket {address}: {e}")))?;
        if claim == crate::socket::Claim::Free {
            spawn(opts, &grouping, Vec::new()).await?;
        }
        write_str_to_file("address", &address).await?;
        if legacy {
            // containerd before 2.3 takes a bare address as "task API v2",
            // which 1.6, 1.7 and 2.0-2.2 all speak, and which `serve`
            // provides. (The crate would answer JSON with version 3, which
            // 1.6 and 1.7 refuse.) 2.3's bootstrap protocol gets the crate's
            // answer, for task API v3.
            use std::io::Write;
            let mut stdout = std::io::stdout();
            let _ = stdout
                .write_all(address.as_bytes())
                .and_then(|()| stdout.flush());
            std::process::exit(0);
        }
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // The shim server died; containerd asks us to clean its bundle up.
        let bundle =
            std::env::current_dir().map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
        kill_leftover_runner(&bundle);
        crate::socket::remove_stale(&bundle).await;
        crate::container::native::force_delete(&bundle);
        crate::rootfs::unmount(&bundle.join("rootfs"));
        remove_leftover_cgroup(&bundle);
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(DeleteResponse {
            exit_status: 128 + Signal::SIGKILL as u32,
            exited_at: MessageField::some(Timestamp {
                seconds: since.as_secs() as i64,
                nanos: since.subsec_nanos() as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit_signal.wait().await;
    }

    fn runtime_info(
        runtime_id: &str,
        _options: Option<&containerd_shim::protos::protobuf::well_known_types::any::Any>,
    ) -> containerd_shim::Result<containerd_shim::protos::types::introspection::RuntimeInfo> {
        Ok(crate::features::runtime_info(runtime_id))
    }

    /// The crate's publisher is used only for its address: events go
    /// through [`EventPublisher`], which survives a containerd restart.
    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        self.task_service(EventPublisher::new(&publisher.address))
            .await
    }
}

impl WasmboxShim {
    /// The Task service of this shim, publishing through `publisher`.
    pub async fn task_service(&self, publisher: EventPublisher) -> TaskService {
        TaskService::new(
            &self.namespace,
            &self.containerd_address,
            publisher,
            self.exit_signal.clone(),
        )
        .await
    }
}

/// The pod's sandbox id, from the bundle's spec, if it has one.
fn sandbox_id(config: &Path) -> Option<String> {
    let spec = oci_spec::runtime::Spec::load(config).ok()?;
    spec.annotations()
        .as_ref()?
        .get(SANDBOX_ID_ANNOTATION)
        .cloned()
}

/// `delete` runs without the shim's log pipe. What it warns of (a runc
/// container or a cgroup it could not remove) goes to stderr, which
/// containerd logs as the cleanup's warnings.
pub fn log_warnings_to_stderr() {
    use std::os::fd::AsFd;
    let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return;
    };
    let logger = containerd_shim::logger::FifoLogger::with_file(std::fs::File::from(stderr));
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// Removes the cgroup a wasm container's runner was in, as the bundle's
/// spec names it, and a native container's when `runc delete --force`
/// left it: runc removes it at once after its SIGKILL, and fails while the
/// killed process is still exiting. The process was just killed: its exit
/// takes a moment, and `rmdir` fails until it is out of the cgroup, so
/// this waits for that, briefly.
fn remove_leftover_cgroup(bundle: &Path) {
    let (Ok(spec), Some(id)) = (
        wasmbox_oci::load_spec(bundle),
        bundle.file_name().and_then(|n| n.to_str()),
    ) else {
        return;
    };
    let path = if bundle.join("runc").is_dir() {
        match crate::cgroup::spec_cgroups_path(&spec) {
            Some(path) => path,
            None => return,
        }
    } else {
        crate::cgroup::runner_cgroups_path(&spec, id)
    };
    match crate::cgroup::ContainerCgroup::create(&path, false, None) {
        Ok(mut cgroup) => {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !cgroup.is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            cgroup.destroy();
        }
        Err(e) => log::warn!("cannot remove the cgroup of {}: {e}", bundle.display()),
    }
}

/// Kills the runner recorded in `<bundle>/runner.pid`, if that pid is still
/// a wasmbox runner (pids are reused).
fn kill_leftover_runner(bundle: &Path) {
    let Ok(text) = std::fs::read_to_string(bundle.join("runner.pid")) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains("wasmbox-runner") {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}
