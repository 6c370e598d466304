//! The containerd API as a kubelet-like client uses it, with no `ctr` in
//! between: importing an OCI image tarball into the content store, and
//! running a container of an image through containers, snapshots and
//! tasks. Tests use it where `ctr` cannot go (wasm OCI artifacts with the
//! CNCF config, which `ctr run` refuses) and to show the shim works for any
//! client, not just `ctr`.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateImageRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteTaskRequest, Image, StartRequest, WaitRequest, WriteAction,
    WriteContentRequest,
};
use containerd_client::services::v1::{
    CreateRequest as LeaseRequest, DeleteRequest as LeaseDeleteRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;
use containerd_client::types::Descriptor;

const NAMESPACE: &str = "default";

fn request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "containerd-namespace",
        NAMESPACE.parse().expect("a valid namespace"),
    );
    request
}

/// A request made under `lease`: what it writes is kept from the garbage
/// collector until the lease goes, even before anything refers to it.
fn leased<T>(lease: &str, message: T) -> Request<T> {
    let mut request = request(message);
    request
        .metadata_mut()
        .insert("containerd-lease", lease.parse().expect("a valid lease id"));
    request
}

/// A client of one containerd, with its own single-threaded runtime.
pub struct Api {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
}

/// How a container run through [`Api::run`] ended.
pub struct ApiRun {
    pub exit_status: u32,
    pub stdout: String,
    pub stderr: String,
}

impl Api {
    pub fn connect(address: &Path) -> Self {
        let (runtime, channel) = crate::grpc_channel(address);
        Self { runtime, channel }
    }

    /// Imports an OCI layout tarball (what `wasmbox-image` writes) through
    /// the content and image services, as a registry pull would store it:
    /// every blob written and committed with the garbage-collection labels
    /// that tie index → manifests → config and layers, then the image
    /// record, named after the manifest's `io.containerd.image.name`,
    /// pointing at the index.
    pub fn import(&self, tar: &Path) -> String {
        let mut blobs: HashMap<String, Vec<u8>> = HashMap::new();
        let mut index = None;
        let mut archive = tar::Archive::new(std::fs::File::open(tar).expect("open image tar"));
        for entry in archive.entries().expect("read image tar") {
            let mut entry = entry.expect("tar entry");
            let path = entry
                .path()
                .expect("tar path")
                .to_string_lossy()
                .into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read tar entry");
            if path == "index.json" {
                index = Some(bytes);
            } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                blobs.insert(format!("sha256:{hex}"), bytes);
            }
        }
        let index_bytes = index.expect("index.json in the tarball");
        let index: serde_json::Value = serde_json::from_slice(&index_bytes).expect("index json");
        let manifest_desc = &index["manifests"][0];
        let name = manifest_desc["annotations"]["io.containerd.image.name"]
            .as_str()
            .expect("image name annotation")
            .to_string();
        let manifest_digest = manifest_desc["digest"]
            .as_str()
            .expect("digest")
            .to_string();
        let manifest: serde_json::Value =
            serde_json::from_slice(&blobs[&manifest_digest]).expect("manifest json");

        self.runtime.block_on(async {
            let lease = self.create_lease("import").await;
            let write = |digest, bytes, labels| self.write_blob(&lease, digest, bytes, labels);
            let config = manifest["config"]["digest"]
                .as_str()
                .expect("config")
                .to_string();
            let mut manifest_labels = HashMap::from([(
                "containerd.io/gc.ref.content.config".to_string(),
                config.clone(),
            )]);
            for (i, layer) in manifest["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .enumerate()
            {
                let digest = layer["digest"].as_str().expect("layer digest").to_string();
                write(digest.clone(), blobs[&digest].clone(), HashMap::new()).await;
                manifest_labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), digest);
            }
            write(config.clone(), blobs[&config].clone(), HashMap::new()).await;
            write(
                manifest_digest.clone(),
                blobs[&manifest_digest].clone(),
                manifest_labels,
            )
            .await;
            let index_digest = format!("sha256:{}", crate::sha256_hex(&index_bytes));
            let index_labels = HashMap::from([(
                "containerd.io/gc.ref.content.m.0".to_string(),
                manifest_digest.clone(),
            )]);
            write(index_digest.clone(), index_bytes.clone(), index_labels).await;
            ImagesClient::new(self.channel.clone())
                .create(leased(
                    &lease,
                    CreateImageRequest {
                        image: Some(Image {
                            name: name.clone(),
                            target: Some(Descriptor {
                                media_type: "application/vnd.oci.image.index.v1+json".to_string(),
                                digest: index_digest,
                                size: index_bytes.len() as i64,
                                annotations: HashMap::new(),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ))
                .await
                .expect("create image");
            // The image refers to everything now.
            self.delete_lease(lease).await;
        });
        name
    }

    /// A lease: what is made under it is kept from the garbage collector
    /// until [`Self::delete_lease`], even before anything refers to it.
    async fn create_lease(&self, what: &str) -> String {
        LeasesClient::new(self.channel.clone())
            .create(request(LeaseRequest {
                id: format!("wasmbox-test-{what}-{}", std::process::id()),
                labels: HashMap::new(),
            }))
            .await
            .expect("create a lease")
            .into_inner()
            .lease
            .expect("a lease")
            .id
    }

    async fn delete_lease(&self, lease: String) {
        LeasesClient::new(self.channel.clone())
            .delete(request(LeaseDeleteRequest {
                id: lease,
                sync: false,
            }))
            .await
            .expect("delete the lease");
    }

    /// Writes and commits one blob, with `labels`.
    async fn write_blob(
        &self,
        lease: &str,
        digest: String,
        bytes: Vec<u8>,
        labels: HashMap<String, String>,
    ) {
        let message = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: format!("wasmbox-test-{digest}"),
            total: bytes.len() as i64,
            expected: digest.clone(),
            offset: 0,
            data: bytes,
            labels,
        };
        let stream = containerd_client::tonic::codegen::tokio_stream::iter(vec![message]);
        let mut responses = match ContentClient::new(self.channel.clone())
            .write(leased(lease, stream))
            .await
        {
            Ok(responses) => responses.into_inner(),
            // Another image has the same blob: nothing to write.
            Err(e) if e.code() == containerd_client::tonic::Code::AlreadyExists => return,
            Err(e) => panic!("write {digest}: {e}"),
        };
        while responses
            .message()
            .await
            .unwrap_or_else(|e| panic!("commit {digest}: {e}"))
            .is_some()
        {}
    }

    /// Deletes the task of container `id`, as a client does once it has
    /// exited: its exit status and when it exited, as the shim reports them.
    pub fn delete_task(&self, id: &str) -> (u32, std::time::SystemTime) {
        self.runtime.block_on(async {
            let deleted = TasksClient::new(self.channel.clone())
                .delete(request(DeleteTaskRequest {
                    container_id: id.to_string(),
                }))
                .await
                .unwrap_or_else(|e| panic!("delete task {id}: {e}"))
                .into_inner();
            let at = deleted.exited_at.expect("exited_at");
            let at = std::time::UNIX_EPOCH
                + std::time::Duration::new(at.seconds as u64, at.nanos as u32);
            (deleted.exit_status, at)
        })
    }

    /// Runs container `id` of `image` with `args` under `runtime`, as a
    /// kubelet's containerd would: an empty snapshot (a wasm artifact has
    /// no rootfs layers), a container record with the spec `ctr oci spec`
    /// gives, a task with its stdout and stderr in files under `dir`; waits
    /// for the exit and removes everything again.
    pub fn run(
        &self,
        runtime: &str,
        default_spec: &serde_json::Value,
        image: &str,
        id: &str,
        args: &[&str],
        dir: &Path,
    ) -> Result<ApiRun, String> {
        let mut spec = default_spec.clone();
        spec["process"]["args"] = serde_json::json!(args);
        spec["process"]["terminal"] = serde_json::json!(false);
        // `ctr oci spec` puts every container in the cgroup /default; tests
        // of other containerds run at the same time, so give each its own.
        spec["linux"]["cgroupsPath"] =
            serde_json::json!(format!("/wasmbox-api-{}-{id}", std::process::id()));
        let stdout = dir.join(format!("{id}.stdout"));
        let stderr = dir.join(format!("{id}.stderr"));
        std::fs::write(&stdout, "").expect("stdout file");
        std::fs::write(&stderr, "").expect("stderr file");
        self.runtime
            .block_on(async {
                // As ctr and CRI do: the snapshot is made under a lease, or the
                // collector may take it before the container refers to it.
                let lease = self.create_lease(id).await;
                let mut snapshots = SnapshotsClient::new(self.channel.clone());
                let mounts = snapshots
                    .prepare(leased(
                        &lease,
                        PrepareSnapshotRequest {
                            snapshotter: "overlayfs".to_string(),
                            key: id.to_string(),
                            parent: String::new(),
                            labels: HashMap::new(),
                        },
                    ))
                    .await
                    .expect("prepare snapshot")
                    .into_inner()
                    .mounts;
                let mut containers = ContainersClient::new(self.channel.clone());
                containers
                    .create(leased(
                        &lease,
                        CreateContainerRequest {
                            container: Some(Container {
                                id: id.to_string(),
                                image: image.to_string(),
                                runtime: Some(Runtime {
                                    name: runtime.to_string(),
                                    options: None,
                                }),
                                spec: Some(prost_types::Any {
                                    type_url:
                                        "types.containerd.io/opencontainers/runtime-spec/1/Spec"
                                            .to_string(),
                                    value: serde_json::to_vec(&spec).expect("spec json"),
                                }),
                                snapshotter: "overlayfs".to_string(),
                                snapshot_key: id.to_string(),
                                ..Default::default()
                            }),
                        },
                    ))
                    .await
                    .expect("create container");
                let mut tasks = TasksClient::new(self.channel.clone());
                let created = tasks
                    .create(request(CreateTaskRequest {
                        container_id: id.to_string(),
                        rootfs: mounts,
                        stdout: format!("file://{}", stdout.display()),
                        stderr: format!("file://{}", stderr.display()),
                        ..Default::default()
                    }))
                    .await;
                let result = match created {
                    Err(status) => Err(status.message().to_string()),
                    Ok(_) => {
                        tasks
                            .start(request(StartRequest {
                                container_id: id.to_string(),
                                ..Default::default()
                            }))
                            .await
                            .expect("start task");
                        let exit_status = tasks
                            .wait(request(WaitRequest {
                                container_id: id.to_string(),
                                ..Default::default()
                            }))
                            .await
                            .expect("wait for the task")
                            .into_inner()
                            .exit_status;
                        tasks
                            .delete(request(DeleteTaskRequest {
                                container_id: id.to_string(),
                            }))
                            .await
                            .expect("delete task");
                        Ok(exit_status)
                    }
                };
                containers
                    .delete(request(DeleteContainerRequest { id: id.to_string() }))
                    .await
                    .expect("delete container");
                let removed = snapshots
                    .remove(request(RemoveSnapshotRequest {
                        snapshotter: "overlayfs".to_string(),
                        key: id.to_string(),
                    }))
                    .await;
                // Once the container is gone the collector may have taken
                // the snapshot already; that is the same end.
                if let Err(e) = removed {
                    assert_eq!(
                        e.code(),
                        containerd_client::tonic::Code::NotFound,
                        "remove snapshot: {e}"
                    );
                }
                self.delete_lease(lease).await;
                result
            })
            .map(|exit_status| ApiRun {
                exit_status,
                stdout: std::fs::read_to_string(&stdout).unwrap_or_default(),
                stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
            })
    }
}
