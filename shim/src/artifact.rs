//! Wasm OCI artifacts: images whose layer *is* the `.wasm`, with no rootfs
//! tar at all.
//!
//! The layer media types are `application/vnd.wasm.content.layer.v1+wasm`
//! (the CNCF wasm OCI artifact format, whose config is
//! `application/vnd.wasm.config.v0+json`),
//! `application/vnd.bytecodealliance.wasm.component.layer.v0+wasm` and
//! `application/wasm`. containerd does not unpack such layers, so the
//! container's rootfs is empty; the shim asks containerd (its gRPC API:
//! container → image → index → manifest → layer) for the wasm and keeps it
//! in the node cache as `<sha256>.wasm`, where the next start of the same
//! image finds it without reading the content store again. The runner then
//! compiles it, or maps it from the compiled cache, like any module.
//!
//! This is only asked when the container's entrypoint is not a file of its
//! rootfs, so classic images never pay for the round trips.

use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{
    GetContainerRequest, GetImageRequest, ReadContentRequest, ReadContentResponse,
};
use containerd_client::tonic::metadata::{Ascii, MetadataValue};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;
use oci_spec::image::{ImageIndex, ImageManifest};
use sha2::{Digest, Sha256};
use wasmbox_oci::artifact::{is_index, pick_manifest, wasm_layer};

/// Indexes and manifests larger than this are refused as corrupt.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// The wasm layer of a container's image, stored on the node.
pub struct WasmLayer {
    /// The image's name, e.g. `docker.io/library/app:1`.
    pub image: String,
    /// The layer's digest, `sha256:…`.
    pub digest: String,
    /// Where the layer's bytes are.
    pub path: PathBuf,
}

/// A connection to containerd's API, in one namespace.
pub struct ContainerdApi {
    channel: Channel,
    namespace: MetadataValue<Ascii>,
}

impl ContainerdApi {
    pub async fn connect(address: &str, namespace: &str) -> Result<Self, String> {
        let namespace = namespace
            .parse()
            .map_err(|e| format!("namespace {namespace:?} is not valid in a request: {e}"))?;
        let channel = containerd_client::connect(address)
            .await
            .map_err(|e| format!("cannot connect to containerd at {address}: {e}"))?;
        Ok(Self { channel, namespace })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        request
    }

    /// The wasm layer of container `id`'s image, fetched into `store` if it
    /// is not there yet (into `fallback`, the bundle, if `store` cannot
    /// take it); `None` if the image has no wasm layer.
    pub async fn wasm_layer(
        &self,
        id: &str,
        store: &Path,
        fallback: &Path,
    ) -> Result<Option<WasmLayer>, String> {
        let container = ContainersClient::new(self.channel.clone())
            .get(self.request(GetContainerRequest { id: id.to_string() }))
            .await
            .map_err(|e| format!("cannot look up container {id}: {}", e.message()))?
            .into_inner()
            .container
            .ok_or_else(|| format!("containerd returned no container {id}"))?;
        if container.image.is_empty() {
            return Ok(None);
        }
        let image = container.image;
        let target = ImagesClient::new(self.channel.clone())
            .get(self.request(GetImageRequest {
                name: image.clone(),
            }))
            .await
            .map_err(|e| format!("cannot look up image {image}: {}", e.message()))?
            .into_inner()
            .image
            .and_then(|i| i.target)
            .ok_or_else(|| format!("image {image} has no target"))?;

        let manifest_digest = if is_index(&target.media_type) {
            let index: ImageIndex = self.read_json(&target.digest, &image).await?;
            pick_manifest(index.manifests())
                .ok_or_else(|| format!("image {image}: its index lists no manifest"))?
                .digest()
                .to_string()
        } else {
            target.digest.clone()
        };
        let manifest: ImageManifest = self.read_json(&manifest_digest, &image).await?;
        let Some(layer) = wasm_layer(&manifest).map_err(|e| format!("image {image}: {e}"))? else {
            return Ok(None);
        };
        let digest = layer.digest().to_string();
        let hex = layer.digest().digest().to_string();
        let mut path = wasmbox_oci::layer_path(store, &hex);
        if wasmbox_oci::trust::check_file(&path).is_ok() {
            wasmbox_oci::mark_used(&path);
        } else {
            let cannot_fetch =
                |e: String| format!("image {image}: cannot fetch wasm layer {digest}: {e}");
            match self.fetch_layer(&digest, &hex, store, &path).await {
                Ok(()) => {}
                // A full or read-only cache: the container still runs,
                // from a copy of its own.
                Err(FetchError::Store(e)) if store != fallback => {
                    log::warn!(
                        "container {id}: cannot keep its wasm layer in {}: {e}; keeping it in the bundle",
                        store.display()
                    );
                    path = wasmbox_oci::layer_path(fallback, &hex);
                    self.fetch_layer(&digest, &hex, fallback, &path)
                        .await
                        .map_err(|e| cannot_fetch(e.to_string()))?;
                }
                Err(e) => return Err(cannot_fetch(e.to_string())),
            }
        }
        Ok(Some(WasmLayer {
            image,
            digest,
            path,
        }))
    }

    /// A stream of blob `digest`'s bytes from the content store.
    async fn read_content(
        &self,
        digest: &str,
    ) -> Result<containerd_client::tonic::Streaming<ReadContentResponse>, String> {
        Ok(ContentClient::new(self.channel.clone())
            .read(self.request(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(|e| e.message().to_string())?
            .into_inner())
    }

    /// Reads a small JSON blob (index or manifest) from the content store.
    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        digest: &str,
        image: &str,
    ) -> Result<T, String> {
        let mut bytes = Vec::new();
        let mut stream = self
            .read_content(digest)
            .await
            .map_err(|e| format!("image {image}: cannot read {digest}: {e}"))?;
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|e| format!("image {image}: cannot read {digest}: {}", e.message()))?
        {
            bytes.extend_from_slice(&chunk.data);
            if bytes.len() > MAX_MANIFEST_BYTES {
                return Err(format!(
                    "image {image}: {digest} is too large for a manifest"
                ));
            }
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("image {image}: {digest}: {e}"))
    }

    /// Streams a layer into `path` (through a temporary file, renamed when
    /// whole), checking that its bytes match its digest.
    async fn fetch_layer(
        &self,
        digest: &str,
        hex: &str,
        store: &Path,
        path: &Path,
    ) -> Result<(), FetchError> {
        use FetchError::{Content, Store};
        // tokio::fs: the writes and the fsync must not stall the shim's
        // event loop, which serves every container of the pod.
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(store)
            .await
            .map_err(|e| Store(format!("cannot create {}: {e}", store.display())))?;
        let tmp = store.join(format!("{hex}.wasm.tmp.{}", std::process::id()));
        let result = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)
                .await
                .map_err(|e| Store(format!("cannot create {}: {e}", tmp.display())))?;
            let mut hasher = Sha256::new();
            let mut received = 0u64;
            let mut stream = self.read_content(digest).await.map_err(Content)?;
            while let Some(chunk) = stream
                .message()
                .await
                .map_err(|e| Content(e.message().to_string()))?
            {
                hasher.update(&chunk.data);
                received += chunk.data.len() as u64;
                file.write_all(&chunk.data)
                    .await
                    .map_err(|e| Store(format!("cannot write {}: {e}", tmp.display())))?;
            }
            let actual: String = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if actual != hex {
                return Err(Content(format!("its content hashes to sha256:{actual}")));
            }
            // tokio's File reports a failed write at the next operation:
            // flush it out, then check that every byte is on disk, so that
            // a full disk never leaves a short layer in the cache.
            let cannot_write =
                |e: std::io::Error| Store(format!("cannot write {}: {e}", tmp.display()));
            file.flush().await.map_err(cannot_write)?;
            file.sync_all().await.map_err(cannot_write)?;
            let written = file.metadata().await.map_err(cannot_write)?.len();
            if written != received {
                return Err(Store(format!(
                    "cannot write {}: {written} of {received} bytes reached the disk",
                    tmp.display()
                )));
            }
            tokio::fs::rename(&tmp, path)
                .await
                .map_err(|e| Store(format!("cannot store {}: {e}", path.display())))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

/// Why a layer could not be fetched: where it was to be kept failed it
/// (full, read-only), or its content did.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Content(String),
}
