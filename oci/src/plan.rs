//! The OCI runtime spec mapped onto a [`RunPlan`].
//!
//! `process.args[0]` names the `.wasm` file inside the rootfs, optionally
//! followed by `#function` to call that export instead of `_start`; the rest
//! of the args, `process.env` and `process.cwd` become the WASI args, env and
//! working directory; the rootfs is preopened as `/`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use wasmbox_idmap::IdMappings;

use crate::compile::{tiered_compile, TieredCompile};
use crate::confine::{confinement_from_spec, Confinement};
use crate::http::{http_settings, HttpSettings};
use crate::rootfs::{resolve_in_rootfs, ResolveError};
use crate::userns::mount_mappings;
use crate::wasm::{detect_wasm, WasmKind};
use crate::PlanError;

/// The function a WASI command exports as its entry point.
pub const DEFAULT_ENTRY: &str = "_start";

/// A host directory the guest sees at `guest_path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preopen {
    pub host_path: PathBuf,
    pub guest_path: String,
    pub read_only: bool,
    /// The mount's `uidMappings`/`gidMappings`: the runner binds it
    /// id-mapped.
    #[serde(default)]
    pub id_mappings: Option<IdMappings>,
}

/// Everything the runner needs to run one container, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPlan {
    /// The entrypoint as the container names it, e.g. `/app.wasm`.
    pub module_guest_path: String,
    /// The entrypoint's path on the host, inside the rootfs.
    pub module_host_path: PathBuf,
    /// Module or component, from the file's bytes.
    pub kind: WasmKind,
    /// The exported function to call.
    pub entry: String,
    /// WASI argv, argv[0] being the entrypoint's container path.
    pub args: Vec<String>,
    /// WASI environment, in spec order.
    pub env: Vec<(String, String)>,
    /// The container's working directory.
    pub cwd: String,
    /// Directories the guest can reach; the rootfs is the first, at `/`,
    /// then one per bind mount, at its destination.
    pub preopens: Vec<Preopen>,
    /// Mounts of the spec that mean nothing to a WASI guest, with why.
    pub skipped_mounts: Vec<SkippedMount>,
    /// `linux.resources.memory.limit`: no linear memory may grow past it.
    pub memory_limit: Option<u64>,
    /// `process.user`: who the guest runs as.
    pub user: UserPlan,
    /// `process.rlimits`, e.g. `RLIMIT_NOFILE`.
    pub rlimits: Vec<RlimitPlan>,
    /// How to serve the guest if it is a wasi:http component.
    pub http: HttpSettings,
    /// Whether a first start of a core module may run baseline code.
    #[serde(default)]
    pub tiered_compile: TieredCompile,
    /// What the runner drops before the guest runs, from the spec.
    pub confinement: Confinement,
}

/// What a pod sandbox's runner needs: who to hold the namespaces as, and
/// the spec's confinement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPlan {
    pub user: UserPlan,
    pub rlimits: Vec<RlimitPlan>,
    pub confinement: Confinement,
}

impl SandboxPlan {
    /// The sandbox's user, rlimits and confinement from its spec.
    pub fn from_spec(spec: &Spec) -> Result<Self, PlanError> {
        let process = spec.process().as_ref();
        Ok(Self {
            user: process.map(user_plan).unwrap_or_default(),
            rlimits: process.map(rlimit_plans).unwrap_or_default(),
            confinement: confinement_from_spec(spec)?,
        })
    }
}

fn user_plan(process: &oci_spec::runtime::Process) -> UserPlan {
    UserPlan {
        uid: process.user().uid(),
        gid: process.user().gid(),
        additional_gids: process.user().additional_gids().clone().unwrap_or_default(),
    }
}

fn rlimit_plans(process: &oci_spec::runtime::Process) -> Vec<RlimitPlan> {
    process
        .rlimits()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|r| RlimitPlan {
            name: r.typ().to_string(),
            soft: r.soft(),
            hard: r.hard(),
        })
        .collect()
}

/// The uid, gid and supplementary gids the runner switches to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPlan {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// One resource limit, named as in the spec (`RLIMIT_NOFILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RlimitPlan {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// A mount of the spec that was left out on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedMount {
    pub destination: String,
    pub kind: String,
    pub reason: String,
}

/// Reads `<bundle>/config.json`.
pub fn load_spec(bundle: &Path) -> Result<Spec, PlanError> {
    let path = bundle.join("config.json");
    Spec::load(&path).map_err(|source| PlanError::ReadSpec { path, source })
}

/// Reads `<bundle>/config.json` and maps it onto a plan.
pub fn plan_from_bundle(bundle: &Path) -> Result<RunPlan, PlanError> {
    plan_from_spec(&load_spec(bundle)?, bundle)
}

/// Maps a spec onto a plan. `bundle` anchors a relative `root.path`.
///
/// This checks that the entrypoint exists inside the rootfs and is
/// WebAssembly; whether it is a *valid* module with the wanted export is for
/// the runner to say, since only wasmtime can tell.
pub fn plan_from_spec(spec: &Spec, bundle: &Path) -> Result<RunPlan, PlanError> {
    plan(spec, bundle, None)
}

/// The wasm of a container whose image carries it as a layer (a wasm OCI
/// artifact) rather than as a file of its rootfs.
#[derive(Debug, Clone, Copy)]
pub struct LayerModule<'a> {
    /// Where the layer's bytes are on the node.
    pub host_path: &'a Path,
    /// The image's name, which names the module in messages.
    pub image: &'a str,
}

/// Maps a spec onto a plan that runs `layer`. `process.args` are the
/// guest's whole argv (the image's name when there are none).
pub fn plan_for_layer(
    spec: &Spec,
    bundle: &Path,
    layer: LayerModule<'_>,
) -> Result<RunPlan, PlanError> {
    plan(spec, bundle, Some(layer))
}

fn plan(spec: &Spec, bundle: &Path, layer: Option<LayerModule<'_>>) -> Result<RunPlan, PlanError> {
    let process = spec.process().as_ref().ok_or(PlanError::NoProcess)?;
    let args = process.args().as_deref().unwrap_or_default();
    let root = spec.root().as_ref().ok_or(PlanError::NoRoot)?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };

    let (module_guest_path, module_host_path, entry, wasi_args) = match layer {
        None => {
            let first = args.first().ok_or(PlanError::NoArgs)?;
            let (guest_path, entry) = split_entry(first)?;
            let host_path = locate_entrypoint(&rootfs, &guest_path)?;
            let mut wasi_args = Vec::with_capacity(args.len());
            wasi_args.push(guest_path.clone());
            wasi_args.extend(args[1..].iter().cloned());
            (guest_path, host_path, entry, wasi_args)
        }
        Some(layer) => {
            let wasi_args = if args.is_empty() {
                vec![layer.image.to_string()]
            } else {
                args.to_vec()
            };
            (
                layer.image.to_string(),
                layer.host_path.to_path_buf(),
                DEFAULT_ENTRY.to_string(),
                wasi_args,
            )
        }
    };
    let kind = match detect_wasm(&module_host_path) {
        Ok(Ok(kind)) => kind,
        Ok(Err(what)) => {
            return Err(PlanError::NotWasm {
                guest_path: module_guest_path,
                host_path: module_host_path,
                what,
            })
        }
        Err(source) => {
            return Err(PlanError::ReadEntrypoint {
                guest_path: module_guest_path,
                host_path: module_host_path,
                source,
            })
        }
    };
    // After the entrypoint is known to be wasm: a native one may have a
    // terminal (runc gives it one).
    if process.terminal().unwrap_or(false) {
        return Err(PlanError::TerminalUnsupported);
    }

    if kind == WasmKind::Component && entry != DEFAULT_ENTRY {
        return Err(PlanError::EntryOnComponent {
            arg: args.first().cloned().unwrap_or_default(),
            entry,
        });
    }

    let env = process
        .env()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
            _ => Err(PlanError::BadEnv {
                entry: entry.clone(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let cwd = process.cwd().to_string_lossy().into_owned();
    let cwd = if cwd.is_empty() { "/".to_string() } else { cwd };
    if !cwd.starts_with('/') {
        return Err(PlanError::RelativeCwd { cwd });
    }

    let mut preopens = vec![Preopen {
        host_path: rootfs,
        guest_path: "/".to_string(),
        read_only: root.readonly().unwrap_or(false),
        id_mappings: None,
    }];
    let mut skipped_mounts = Vec::new();
    for mount in spec.mounts().as_deref().unwrap_or_default() {
        match map_mount(mount)? {
            MountMapping::Preopen(preopen) => preopens.push(preopen),
            MountMapping::Skipped(skipped) => skipped_mounts.push(skipped),
        }
    }

    let http = http_settings(spec, &env)?;
    let tiered_compile = tiered_compile(spec, &env)?;
    Ok(RunPlan {
        module_guest_path,
        module_host_path,
        kind,
        entry,
        args: wasi_args,
        env,
        cwd,
        preopens,
        skipped_mounts,
        memory_limit: memory_limit(spec),
        user: user_plan(process),
        rlimits: rlimit_plans(process),
        http,
        tiered_compile,
        confinement: confinement_from_spec(spec)?,
    })
}

/// The spec's memory limit, if it sets a positive one.
fn memory_limit(spec: &Spec) -> Option<u64> {
    let limit = spec
        .linux()
        .as_ref()?
        .resources()
        .as_ref()?
        .memory()
        .as_ref()?
        .limit()?;
    u64::try_from(limit).ok().filter(|l| *l > 0)
}

enum MountMapping {
    Preopen(Preopen),
    Skipped(SkippedMount),
}

/// Kernel filesystems that have no WASI meaning: a guest cannot see
/// processes, devices, sysfs or message queues.
const KERNEL_FILESYSTEMS: &[&str] = &["proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"];

/// A bind mount becomes a preopen at its destination, read-only if its
/// options say `ro`; kernel filesystems and tmpfs are skipped with a reason.
fn map_mount(mount: &oci_spec::runtime::Mount) -> Result<MountMapping, PlanError> {
    let destination = mount.destination().to_string_lossy().into_owned();
    let options = mount.options().as_deref().unwrap_or_default();
    let kind = mount.typ().as_deref().unwrap_or("").to_string();
    let is_bind = kind == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
    if !is_bind {
        let reason = if KERNEL_FILESYSTEMS.contains(&kind.as_str()) {
            format!("{kind} has no meaning to a WASI guest")
        } else if kind == "tmpfs" {
            "tmpfs mounts are not given to WASI guests (bind a directory instead)".to_string()
        } else {
            format!("{kind:?} mounts are not supported for WASI guests, only bind mounts")
        };
        return Ok(MountMapping::Skipped(SkippedMount {
            destination,
            kind,
            reason,
        }));
    }
    if !destination.starts_with('/') {
        return Err(PlanError::Mount {
            destination,
            reason: "the destination must be an absolute path".to_string(),
        });
    }
    let source = mount.source().as_ref().ok_or_else(|| PlanError::Mount {
        destination: destination.clone(),
        reason: "a bind mount needs a source".to_string(),
    })?;
    match std::fs::metadata(source) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            // CRI binds /etc/hosts, /etc/resolv.conf and the like as files;
            // WASI preopens are directories, so these are left out.
            return Ok(MountMapping::Skipped(SkippedMount {
                destination,
                kind,
                reason: format!(
                    "its source {} is a file, and WASI preopens are directories",
                    source.display()
                ),
            }));
        }
        Err(e) => {
            return Err(PlanError::Mount {
                destination,
                reason: format!("its source {}: {e}", source.display()),
            })
        }
    }
    let id_mappings = mount_mappings(mount, &destination)?;
    Ok(MountMapping::Preopen(Preopen {
        host_path: source.clone(),
        guest_path: destination,
        read_only: options.iter().any(|o| o == "ro"),
        id_mappings,
    }))
}

/// Splits `"/app.wasm#run"` into the path and the export to call.
fn split_entry(arg: &str) -> Result<(String, String), PlanError> {
    match arg.rsplit_once('#') {
        Some((_, "")) => Err(PlanError::EmptyEntryName {
            arg: arg.to_string(),
        }),
        Some((path, name)) => Ok((absolute(path), name.to_string())),
        None => Ok((absolute(arg), DEFAULT_ENTRY.to_string())),
    }
}

/// The container resolves a relative args[0] against `/`, as runc does for
/// an executable given with a path.
fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

fn locate_entrypoint(rootfs: &Path, guest_path: &str) -> Result<PathBuf, PlanError> {
    match resolve_in_rootfs(rootfs, guest_path) {
        Ok(path) => Ok(path),
        Err(ResolveError::NotFound(host_path)) => Err(PlanError::EntrypointMissing {
            guest_path: guest_path.to_string(),
            host_path,
        }),
        Err(ResolveError::TooManyLinks) => Err(PlanError::EntrypointUnresolvable {
            guest_path: guest_path.to_string(),
            reason: "too many levels of symbolic links".to_string(),
        }),
        Err(ResolveError::Io(reason)) => Err(PlanError::EntrypointUnresolvable {
            guest_path: guest_path.to_string(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle_with(config: serde_json::Value, files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join("rootfs").join(name), bytes).unwrap();
        }
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        dir
    }

    fn config(args: &[&str]) -> serde_json::Value {
        json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs", "readonly": true},
            "process": {
                "args": args,
                "env": ["PATH=/bin", "GREETING=a=b"],
                "cwd": "/work",
                "user": {"uid": 0, "gid": 0}
            }
        })
    }

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn args_env_cwd_and_rootfs_are_mapped() {
        let dir = bundle_with(config(&["/app.wasm", "a", "b"]), &[("app.wasm", MODULE)]);
        let plan = plan_from_bundle(dir.path()).unwrap();
        assert_eq!(plan.module_guest_path, "/app.wasm");
        assert_eq!(plan.module_host_path, dir.path().join("rootfs/app.wasm"));
        assert_eq!(plan.kind, WasmKind::Module);
        assert_eq!(plan.entry, "_start");
        assert_eq!(plan.args, ["/app.wasm", "a", "b"]);
        assert_eq!(
            plan.env,
            [
                ("PATH".into(), "/bin".into()),
                ("GREETING".into(), "a=b".into())
            ]
        );
        assert_eq!(plan.cwd, "/work");
        assert_eq!(
            plan.preopens,
            [Preopen {
                host_path: dir.path().join("rootfs"),
                guest_path: "/".into(),
                read_only: true,
                id_mappings: None,
            }]
        );
    }

    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_component_has_no_export_to_pick() {
        let dir = bundle_with(config(&["/app.wasm#serve"]), &[("app.wasm", COMPONENT)]);
        let msg = plan_from_bundle(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("'#serve' picks an export of a core module"),
            "{msg}"
        );
    }

    #[test]
    fn hash_names_the_export_to_call() {
        let dir = bundle_with(config(&["app.wasm#serve"]), &[("app.wasm", MODULE)]);
        let plan = plan_from_bundle(dir.path()).unwrap();
        assert_eq!(plan.module_guest_path, "/app.wasm");
        assert_eq!(plan.entry, "serve");
        assert_eq!(plan.args[0], "/app.wasm");
    }

    #[test]
    fn refusals_name_the_file_and_the_reason() {
        let dir = bundle_with(
            config(&["/bin/true"]),
            &[("true", b"\x7fELF\x02\x01\x01\0\0\0")],
        );
        std::fs::create_dir(dir.path().join("rootfs/bin")).unwrap();
        std::fs::rename(
            dir.path().join("rootfs/true"),
            dir.path().join("rootfs/bin/true"),
        )
        .unwrap();
        let msg = plan_from_bundle(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("/bin/true") && msg.contains("is not a WebAssembly module"),
            "{msg}"
        );
        assert!(msg.contains("ELF"), "{msg}");

        let dir = bundle_with(config(&["/missing.wasm"]), &[]);
        let msg = plan_from_bundle(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("/missing.wasm") && msg.contains("no such file"),
            "{msg}"
        );

        let dir = bundle_with(config(&["/app.wasm#"]), &[("app.wasm", MODULE)]);
        let msg = plan_from_bundle(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("empty function name"), "{msg}");

        let mut bad_env = config(&["/app.wasm"]);
        bad_env["process"]["env"] = json!(["NOEQUALS"]);
        let dir = bundle_with(bad_env, &[("app.wasm", MODULE)]);
        let msg = plan_from_bundle(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("process.env") && msg.contains("NOEQUALS"),
            "{msg}"
        );

        let dir = tempfile::tempdir().unwrap();
        let msg = plan_from_bundle(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("config.json"), "{msg}");
    }
}
