//! Mounting the rootfs containerd hands over in Create, and unmounting it.
//!
//! For an image-based container, containerd passes the snapshot's mounts
//! (usually one overlay) and expects the shim to mount them at
//! `<bundle>/rootfs`, as the runc shim does; `ctr run --rootfs DIR` passes
//! none, and the spec's `root.path` already points at DIR.
//!
//! For a pod with its own user namespace (`hostUsers: false`) containerd
//! 2.x's overlay snapshotter adds `uidmap=`/`gidmap=` options, which the
//! kernel's overlayfs does not take: as containerd's own mounter does, each
//! lower directory is then bound id-mapped (through the pod's user
//! namespace, which the spec names, or one made for the mappings), the
//! overlay is mounted over those, and the id-mapped binds are detached
//! again (overlayfs keeps its own reference to each layer).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use containerd_shim::mount::umount_recursive;
use containerd_shim::protos::types::mount::Mount;
use wasmbox_oci::{IdMappings, UserNamespacePlan};

/// Mounts `mounts` at `<bundle>/rootfs`. On failure, whatever was mounted is
/// unmounted again. Returns the mount point, or `None` if there was nothing
/// to mount. `userns` is the spec's user namespace, for an id-mapped
/// overlay.
pub async fn mount(
    bundle: &Path,
    mounts: &[Mount],
    userns: Option<&UserNamespacePlan>,
) -> Result<Option<PathBuf>, String> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|e| {
        format!(
            "cannot create the rootfs mount point {}: {e}",
            target.display()
        )
    })?;
    for m in mounts {
        let mounted = match id_mapped(m) {
            Ok(None) => containerd_shim::util::mount_rootfs(m, &target)
                .await
                .map_err(|e| e.to_string()),
            Ok(Some(mappings)) => {
                let (m, bundle, target) = (m.clone(), bundle.to_owned(), target.clone());
                let userns = userns.cloned();
                tokio::task::spawn_blocking(move || {
                    mount_id_mapped_overlay(&m, &mappings, &bundle, &target, userns.as_ref())
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = mounted {
            unmount(&target);
            return Err(format!(
                "cannot mount the container's rootfs ({} {}) at {}: {e}",
                m.type_,
                m.source,
                target.display()
            ));
        }
    }
    Ok(Some(target))
}

/// The value of option `name=` of `m`.
fn option<'a>(m: &'a Mount, name: &str) -> Option<&'a str> {
    m.options
        .iter()
        .find_map(|o| o.strip_prefix(name)?.strip_prefix('='))
}

/// The mappings of an overlay whose options ask for id-mapped layers.
fn id_mapped(m: &Mount) -> Result<Option<IdMappings>, String> {
    match (option(m, "uidmap"), option(m, "gidmap")) {
        (None, None) => Ok(None),
        (Some(uidmap), Some(gidmap)) if m.type_ == "overlay" => {
            IdMappings::from_mount_options(uidmap, gidmap)
                .map(Some)
                .map_err(|e| e.to_string())
        }
        (Some(_), Some(_)) => Err(format!(
            "uidmap/gidmap options on a {:?} mount: only overlay layers are id-mapped",
            m.type_
        )),
        _ => Err("a mount needs both uidmap and gidmap options, or neither".to_string()),
    }
}

/// The user namespace that maps as `mappings`: the spec's, when it names
/// one with the same mappings (CRI's pod namespace), or a new one.
fn namespace_for(
    mappings: &IdMappings,
    userns: Option<&UserNamespacePlan>,
) -> Result<OwnedFd, String> {
    if let Some(UserNamespacePlan {
        path: Some(path),
        mappings: spec_mappings,
    }) = userns
    {
        if spec_mappings == mappings {
            return File::open(path)
                .map(OwnedFd::from)
                .map_err(|e| format!("linux.namespaces user path {}: {e}", path.display()));
        }
    }
    wasmbox_idmap::user_namespace(mappings, "rootfs mount").map_err(|e| e.to_string())
}

fn mount_id_mapped_overlay(
    m: &Mount,
    mappings: &IdMappings,
    bundle: &Path,
    target: &Path,
    userns: Option<&UserNamespacePlan>,
) -> Result<(), String> {
    let lowers: Vec<&str> = option(m, "lowerdir")
        .ok_or("an id-mapped overlay needs a lowerdir option")?
        .split(':')
        .collect();
    let namespace = namespace_for(mappings, userns)?;
    let layers_dir = bundle.join("idmapped-layers");
    let mut mapped: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for (index, lower) in lowers.iter().enumerate() {
            let dir = layers_dir.join(index.to_string());
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let read_only = wasmbox_idmap::MountAttributes {
                read_only: true,
                ..Default::default()
            };
            wasmbox_idmap::bind_idmapped(
                Path::new(lower),
                &dir,
                namespace.as_fd(),
                read_only,
                false,
            )
            .map_err(|e| e.to_string())?;
            mapped.push(dir);
        }
        let lowerdir = mapped
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let options: Vec<String> = m
            .options
            .iter()
            .filter(|o| !o.starts_with("uidmap=") && !o.starts_with("gidmap="))
            .map(|o| {
                if o.starts_with("lowerdir=") {
                    format!("lowerdir={lowerdir}")
                } else {
                    o.clone()
                }
            })
            .collect();
        containerd_shim::mount::mount_rootfs(Some("overlay"), Some(&m.source), &options, target)
            .map_err(|e| e.to_string())
    })();
    // The overlay holds its own references to the layers.
    for dir in &mapped {
        let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(&layers_dir);
    result
}

/// Unmounts everything at and below `target`; logs what fails.
pub fn unmount(target: &Path) {
    let Some(path) = target.to_str() else { return };
    if let Err(e) = umount_recursive(Some(path), nix::libc::MNT_DETACH) {
        log::warn!("cannot unmount {path}: {e}");
    }
}
