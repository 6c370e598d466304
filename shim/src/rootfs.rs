//! Mounting the rootfs containerd hands over in Create, and unmounting it.
//!
//! For an image-based container, containerd passes the snapshot's mounts
//! (usually one overlay) and expects the shim to mount them at
//! `<bundle>/rootfs`, as the runc shim does; `ctr run --rootfs DIR` passes
//! none, and the spec's `root.path` already points at DIR.

use std::path::{Path, PathBuf};

use containerd_shim::mount::umount_recursive;
use containerd_shim::protos::types::mount::Mount;

/// Mounts `mounts` at `<bundle>/rootfs`. On failure, whatever was mounted is
/// unmounted again. Returns the mount point, or `None` if there was nothing
/// to mount.
pub async fn mount(bundle: &Path, mounts: &[Mount]) -> Result<Option<PathBuf>, String> {
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
        if let Err(e) = containerd_shim::util::mount_rootfs(m, &target).await {
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

/// Unmounts everything at and below `target`; logs what fails.
pub fn unmount(target: &Path) {
    let Some(path) = target.to_str() else { return };
    if let Err(e) = umount_recursive(Some(path), nix::libc::MNT_DETACH) {
        log::warn!("cannot unmount {path}: {e}");
    }
}
