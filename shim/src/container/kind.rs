//! The one place that decides what kind of container a spec is: a pod
//! sandbox and a `.wasm` entrypoint (in the rootfs, or the wasm layer of
//! an OCI artifact) are wasm containers; an ELF or a `#!` script, named by
//! path or found on the container's `PATH` as runc would find it, is a
//! native one, unless the operator refuses native containers (the
//! `wasmbox.io/native: refuse` annotation, or `native = "refuse"` in the
//! runtime's options, see [`super::options`]). Anything else is refused
//! with what it is.

use std::path::Path;

use oci_spec::runtime::Spec;
use wasmbox_oci::{native_entrypoint, NativeEntrypoint, PlanError, RunPlan, SandboxPlan};

use super::options::{NativePolicy, RuntimeOptions};
use super::{ContainerError, CreateRequest, Result, Shared};
use crate::artifact::ContainerdApi;
use crate::runner::RunnerMode;

/// The annotation that refuses native containers (`refuse`) or allows them
/// (`run`, the default) for one container.
pub const NATIVE_ANNOTATION: &str = "wasmbox.io/native";

/// The annotation CRI puts on a container to say what it is.
const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";

/// What a container is.
pub enum Kind {
    /// A wasm guest or a pod sandbox, for a runner.
    Wasm(RunnerMode),
    /// A native program, for runc; what it is, for the log.
    Native(NativeEntrypoint),
}

fn annotation<'a>(spec: &'a Spec, name: &str) -> Option<&'a str> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(name))
        .map(String::as_str)
}

/// Whether `spec` is a pod's sandbox (CRI's pause container), whose binary
/// wasmbox never runs: the runner holds the pod's namespaces instead.
pub fn is_sandbox(spec: &Spec) -> bool {
    annotation(spec, CONTAINER_TYPE_ANNOTATION) == Some("sandbox")
}

/// The policy for this container: its annotation, else the runtime's.
fn policy(spec: &Spec, options: &RuntimeOptions) -> Result<NativePolicy> {
    match annotation(spec, NATIVE_ANNOTATION) {
        None => Ok(options.native),
        Some(value) => value.parse().map_err(|e| {
            ContainerError::InvalidArgument(format!("annotation {NATIVE_ANNOTATION}: {e}"))
        }),
    }
}

/// Decides, and for a wasm container makes its runner's plan.
pub async fn decide(
    shared: &Shared,
    request: &CreateRequest<'_>,
    options: &RuntimeOptions,
) -> Result<Kind> {
    let (spec, bundle, id) = (request.spec, request.bundle, &request.req.id);
    let invalid = |e: String| ContainerError::InvalidArgument(e);
    if is_sandbox(spec) {
        let plan = SandboxPlan::from_spec(spec).map_err(|e| invalid(e.to_string()))?;
        return Ok(Kind::Wasm(RunnerMode::Sandbox(Box::new(plan))));
    }
    let native = |refusal: String, what: NativeEntrypoint| -> Result<Kind> {
        match policy(spec, options)? {
            NativePolicy::Refuse => Err(invalid(refusal)),
            NativePolicy::Run => {
                log::debug!("container {id}: runs through runc: {what}");
                Ok(Kind::Native(what))
            }
        }
    };
    match wasmbox_oci::plan_from_spec(spec, bundle) {
        Ok(plan) => Ok(Kind::Wasm(RunnerMode::Guest(Box::new(plan)))),
        Err(e) => {
            if let Some(what) = e.not_wasm_path().and_then(native_entrypoint) {
                return native(e.to_string(), what);
            }
            if !e.entrypoint_not_in_rootfs() {
                return Err(invalid(e.to_string()));
            }
            if let Some(what) = on_path(spec, bundle) {
                return native(e.to_string(), what);
            }
            let plan = plan_for_wasm_layer(shared, id, spec, bundle, e)
                .await
                .map_err(invalid)?;
            Ok(Kind::Wasm(RunnerMode::Guest(Box::new(plan))))
        }
    }
}

/// `process.args[0]` as a bare command name that runc finds on the
/// container's `PATH` in its rootfs, if it is a native program.
fn on_path(spec: &Spec, bundle: &Path) -> Option<NativeEntrypoint> {
    let process = spec.process().as_ref()?;
    let command = process.args().as_ref()?.first()?;
    if command.contains('/') || command.is_empty() {
        return None;
    }
    let root = spec.root().as_ref()?.path();
    let rootfs = if root.is_absolute() {
        root.to_path_buf()
    } else {
        bundle.join(root)
    };
    let path = process
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .find_map(|dir| {
            let host = wasmbox_oci::rootfs::resolve_in_rootfs(&rootfs, &format!("{dir}/{command}"))
                .ok()?;
            native_entrypoint(&host)
        })
}

/// The plan for a container whose entrypoint is not in its rootfs: its
/// image may be a wasm OCI artifact. If it has no wasm layer either, the
/// error is the rootfs one, `not_in_rootfs`.
async fn plan_for_wasm_layer(
    shared: &Shared,
    id: &str,
    spec: &Spec,
    bundle: &Path,
    not_in_rootfs: PlanError,
) -> std::result::Result<RunPlan, String> {
    let api = ContainerdApi::connect(&shared.containerd_address, &shared.namespace)
        .await
        .map_err(|e| format!("{not_in_rootfs} (and its image cannot be read: {e})"))?;
    // The layer is what the container runs: keep it in the node cache
    // only if no one but root can write there, else in the bundle.
    let cache = wasmbox_oci::cache_dir();
    let store = match wasmbox_oci::trust::ensure_dir(&cache) {
        Ok(()) => cache,
        Err(reason) => {
            log::warn!(
                "container {id}: not keeping its wasm layer in {}: {reason}; using the bundle",
                cache.display()
            );
            bundle.to_path_buf()
        }
    };
    let layer = api
        .wasm_layer(id, &store, bundle)
        .await
        .map_err(|e| format!("{not_in_rootfs} (and its image cannot be used: {e})"))?
        .ok_or_else(|| not_in_rootfs.to_string())?;
    log::info!(
        "container {id}: runs wasm layer {} of image {}",
        layer.digest,
        layer.image
    );
    wasmbox_oci::plan_for_layer(
        spec,
        bundle,
        wasmbox_oci::LayerModule {
            host_path: &layer.path,
            image: &layer.image,
        },
    )
    .map_err(|e| e.to_string())
}
