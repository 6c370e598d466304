//! The shim's own life cycle: `start` (launch or reuse a shim server, see
//! [`crate::socket`] and [`crate::launch`]),
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

use async_trait::async_trait;
use containerd_shim::api::DeleteResponse;
use containerd_shim::asynchronous::{ExitSignal, Shim};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::write_str_to_file;
use containerd_shim::{Config, Flags, StartOpts};

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
            // Returns once the server is started, not once it serves: see
            // crate::launch.
            crate::launch::launch_server(&opts, &address)
                .map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
        }
        write_str_to_file("address", &address).await?;
        if legacy {
            // containerd before 2.3 reads a bare address as task API v2,
            // and JSON as the version it names, which 1.6 and 1.7 refuse
            // above 2; so it is asked its version (see crate::bootstrap).
            // 2.3's bootstrap protocol gets the crate's answer, for task
            // API v3.
            let sockets = Path::new(address.trim_start_matches("unix://"))
                .parent()
                .unwrap_or(Path::new("/"));
            let task_api = crate::bootstrap::task_api_of_parent(&opts.address, sockets).await;
            use std::io::Write;
            let mut stdout = std::io::stdout();
            let _ = stdout
                .write_all(crate::bootstrap::start_reply(&address, task_api).as_bytes())
                .and_then(|()| stdout.flush());
            std::process::exit(0);
        }
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // The shim server died; containerd asks us to clean its bundle up
        // (and, for a pod's sandbox, what its pod left: see crate::cleanup).
        let bundle =
            std::env::current_dir().map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
        crate::cleanup::clean_bundle(&bundle).await;
        crate::cleanup::clean_pod_members(&bundle);
        Ok(DeleteResponse {
            exit_status: crate::cleanup::KILLED_STATUS,
            exited_at: MessageField::some(
                crate::container::timestamp(std::time::SystemTime::now()),
            ),
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
