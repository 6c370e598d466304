//! A kubelet-like CRI client (the `k8s-cri` crate over tonic) for the
//! private containerd's CRI plugin: the calls the kubelet makes for a pod,
//! each blocking on its own single-threaded runtime, returning tonic's
//! status on failure so tests can assert on errors too.

use std::path::Path;

use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Request, Status};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;

/// The runtime handler pods name in their RuntimeClass.
pub const HANDLER: &str = "wasmbox";

pub struct Cri {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
}

impl Cri {
    /// Connects to the CRI endpoint (containerd's own socket).
    pub fn connect(address: &Path) -> Self {
        let (runtime, channel) = crate::grpc_channel(address);
        Self { runtime, channel }
    }

    fn runtime_service(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// The pod's config, as the kubelet builds it for a pod named `name`,
    /// with its container logs under `log_directory`.
    pub fn pod_config(name: &str, log_directory: &Path) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_string(),
                uid: format!("uid-{name}"),
                namespace: "default".to_string(),
                attempt: 0,
            }),
            hostname: name.to_string(),
            log_directory: log_directory.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The config of a container `name` of `image`, running `command`,
    /// logging to `<name>.log` in the pod's log directory.
    pub fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            command: command.iter().map(|c| c.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, Status> {
        self.run_pod_sandbox_with(config, HANDLER)
    }

    /// RunPodSandbox under runtime `handler` (a RuntimeClass's).
    pub fn run_pod_sandbox_with(
        &self,
        config: &PodSandboxConfig,
        handler: &str,
    ) -> Result<String, Status> {
        self.runtime.block_on(async {
            Ok(self
                .runtime_service()
                .run_pod_sandbox(Request::new(RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: handler.to_string(),
                }))
                .await?
                .into_inner()
                .pod_sandbox_id)
        })
    }

    pub fn pod_ip(&self, pod: &str) -> Result<String, Status> {
        self.runtime.block_on(async {
            let status = self
                .runtime_service()
                .pod_sandbox_status(Request::new(PodSandboxStatusRequest {
                    pod_sandbox_id: pod.to_string(),
                    verbose: false,
                }))
                .await?
                .into_inner()
                .status
                .ok_or_else(|| Status::not_found("no sandbox status"))?;
            Ok(status.network.map(|n| n.ip).unwrap_or_default())
        })
    }

    /// The pid of a pod's sandbox process, from PodSandboxStatus's verbose
    /// info (what `crictl inspectp` shows).
    pub fn sandbox_pid(&self, pod: &str) -> Result<u32, Status> {
        self.runtime.block_on(async {
            let info = self
                .runtime_service()
                .pod_sandbox_status(Request::new(PodSandboxStatusRequest {
                    pod_sandbox_id: pod.to_string(),
                    verbose: true,
                }))
                .await?
                .into_inner()
                .info;
            pid_in_info(&info)
        })
    }

    /// The pid of a container's task, from ContainerStatus's verbose info.
    pub fn container_pid(&self, id: &str) -> Result<u32, Status> {
        self.runtime.block_on(async {
            let info = self
                .runtime_service()
                .container_status(Request::new(ContainerStatusRequest {
                    container_id: id.to_string(),
                    verbose: true,
                }))
                .await?
                .into_inner()
                .info;
            pid_in_info(&info)
        })
    }

    pub fn create_container(
        &self,
        pod: &str,
        config: ContainerConfig,
        pod_config: &PodSandboxConfig,
    ) -> Result<String, Status> {
        self.runtime.block_on(async {
            Ok(self
                .runtime_service()
                .create_container(Request::new(CreateContainerRequest {
                    pod_sandbox_id: pod.to_string(),
                    config: Some(config),
                    sandbox_config: Some(pod_config.clone()),
                }))
                .await?
                .into_inner()
                .container_id)
        })
    }

    /// ExecSync, as an exec probe or `kubectl exec` without a terminal
    /// makes it: (exit code, stdout, stderr).
    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> Result<(i32, String, String), Status> {
        self.runtime.block_on(async {
            let response = self
                .runtime_service()
                .exec_sync(Request::new(ExecSyncRequest {
                    container_id: id.to_string(),
                    cmd: cmd.iter().map(|c| c.to_string()).collect(),
                    timeout: 30,
                }))
                .await?
                .into_inner();
            Ok((
                response.exit_code,
                String::from_utf8_lossy(&response.stdout).into_owned(),
                String::from_utf8_lossy(&response.stderr).into_owned(),
            ))
        })
    }

    /// UpdateContainerResources, as the kubelet sends it for an in-place
    /// resize.
    pub fn update_container_resources(
        &self,
        id: &str,
        resources: LinuxContainerResources,
    ) -> Result<(), Status> {
        self.runtime.block_on(async {
            self.runtime_service()
                .update_container_resources(Request::new(UpdateContainerResourcesRequest {
                    container_id: id.to_string(),
                    linux: Some(resources),
                    ..Default::default()
                }))
                .await?;
            Ok(())
        })
    }

    /// Waits (at most 30 s) for container `id` to exit; its status.
    pub fn wait_for_exit(&self, id: &str) -> ContainerStatus {
        let mut status = None;
        crate::wait_until(
            &format!("container {id} to exit"),
            std::time::Duration::from_secs(30),
            || {
                let s = self.container_status(id).expect("container status");
                let exited = s.state == ContainerState::ContainerExited as i32;
                status = Some(s);
                exited
            },
        );
        status.expect("a status")
    }

    pub fn start_container(&self, id: &str) -> Result<(), Status> {
        self.start_container_within(id, None)
    }

    /// StartContainer with a deadline, as the kubelet sets one (its
    /// `--runtime-request-timeout`, 2 minutes by default): the call is
    /// cancelled when it passes.
    pub fn start_container_within(
        &self,
        id: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), Status> {
        let mut request = Request::new(StartContainerRequest {
            container_id: id.to_string(),
        });
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        self.runtime.block_on(async {
            self.runtime_service().start_container(request).await?;
            Ok(())
        })
    }

    pub fn container_status(&self, id: &str) -> Result<ContainerStatus, Status> {
        self.runtime.block_on(async {
            self.runtime_service()
                .container_status(Request::new(ContainerStatusRequest {
                    container_id: id.to_string(),
                    verbose: false,
                }))
                .await?
                .into_inner()
                .status
                .ok_or_else(|| Status::not_found("no container status"))
        })
    }

    pub fn container_stats(&self, id: &str) -> Result<ContainerStats, Status> {
        self.runtime.block_on(async {
            self.runtime_service()
                .container_stats(Request::new(ContainerStatsRequest {
                    container_id: id.to_string(),
                }))
                .await?
                .into_inner()
                .stats
                .ok_or_else(|| Status::not_found("no container stats"))
        })
    }

    pub fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<(), Status> {
        self.runtime.block_on(async {
            self.runtime_service()
                .stop_container(Request::new(StopContainerRequest {
                    container_id: id.to_string(),
                    timeout: timeout_seconds,
                }))
                .await?;
            Ok(())
        })
    }

    pub fn remove_container(&self, id: &str) -> Result<(), Status> {
        self.runtime.block_on(async {
            self.runtime_service()
                .remove_container(Request::new(RemoveContainerRequest {
                    container_id: id.to_string(),
                }))
                .await?;
            Ok(())
        })
    }

    pub fn stop_pod_sandbox(&self, pod: &str) -> Result<(), Status> {
        self.runtime.block_on(async {
            self.runtime_service()
                .stop_pod_sandbox(Request::new(StopPodSandboxRequest {
                    pod_sandbox_id: pod.to_string(),
                }))
                .await?;
            Ok(())
        })
    }

    pub fn remove_pod_sandbox(&self, pod: &str) -> Result<(), Status> {
        self.runtime.block_on(async {
            self.runtime_service()
                .remove_pod_sandbox(Request::new(RemovePodSandboxRequest {
                    pod_sandbox_id: pod.to_string(),
                }))
                .await?;
            Ok(())
        })
    }

    /// The images CRI sees, by tag.
    pub fn image_tags(&self) -> Result<Vec<String>, Status> {
        self.runtime.block_on(async {
            Ok(ImageServiceClient::new(self.channel.clone())
                .list_images(Request::new(ListImagesRequest { filter: None }))
                .await?
                .into_inner()
                .images
                .into_iter()
                .flat_map(|i| i.repo_tags)
                .collect())
        })
    }
}

/// The `pid` field of the JSON in a verbose status's `info` entry.
fn pid_in_info(info: &std::collections::HashMap<String, String>) -> Result<u32, Status> {
    let json: serde_json::Value = info
        .get("info")
        .and_then(|i| serde_json::from_str(i).ok())
        .ok_or_else(|| Status::not_found("no verbose info"))?;
    json["pid"]
        .as_u64()
        .map(|p| p as u32)
        .ok_or_else(|| Status::not_found("no pid in the verbose info"))
}

/// The lines of a CRI log file (`<time> <stream> <tag> <line>`), as
/// (stream, line) pairs, the way `kubectl logs` reads them.
pub fn read_cri_log(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let _time = parts.next()?;
            let stream = parts.next()?;
            let _tag = parts.next()?;
            Some((stream.to_string(), parts.next().unwrap_or("").to_string()))
        })
        .collect()
}

/// Imports sample images (`target/images/<app>.tar`) into CRI's
/// namespace, `k8s.io`.
pub fn import_for_cri(cd: &crate::Containerd, apps: &[&str]) {
    for app in apps {
        let tar = crate::repo_root().join(format!("target/images/{app}.tar"));
        import_tar_for_cri(cd, &tar, &format!("import {app} for CRI"));
    }
}

/// Packs `bytes` as image `name` and imports it for CRI.
pub fn import_module(cd: &crate::Containerd, file: &str, bytes: &[u8], name: &str) {
    let wasm = cd.dir().join(file);
    std::fs::write(&wasm, bytes).expect("write module");
    let tar = crate::pack_image(cd.dir(), &wasm, name, &[]);
    import_tar_for_cri(cd, &tar, &format!("import {name}"));
}

/// `ctr -n k8s.io images import --all-platforms TAR`, which must succeed.
pub fn import_tar_for_cri(cd: &crate::Containerd, tar: &Path, what: &str) {
    let out = cd.ctr(&[
        "-n",
        "k8s.io",
        "images",
        "import",
        "--all-platforms",
        tar.to_str().expect("utf-8"),
    ]);
    crate::assert_success(&out, what);
}

/// Waits (at most `timeout`) until the CRI log at `path` has a line that
/// `matches` (stream, line); returns all its lines.
pub fn wait_for_log(
    path: &Path,
    timeout: std::time::Duration,
    matches: impl Fn(&str, &str) -> bool,
) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let lines = read_cri_log(path);
        if lines.iter().any(|(stream, line)| matches(stream, line)) {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no awaited line in {} within {timeout:?}; it has {lines:#?}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
