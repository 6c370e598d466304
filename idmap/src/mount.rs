//! Id-mapped bind mounts: a directory seen through a user namespace's
//! mappings (Linux 5.12 and later, on filesystems that allow it), so that a
//! file the host's uid 0 owns shows as owned by the container's root, and
//! what the container's root writes is stored as the host's uid 0.
//!
//! The new mount API does it in three calls, which no crate of the field
//! wraps yet: open_tree(2) clones the source, mount_setattr(2) sets the
//! mapping (and the read-only and no-exec bits with it), move_mount(2)
//! attaches it at the target.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;

use crate::IdmapError;

/// The mount flags set together with the mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountAttributes {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl MountAttributes {
    fn bits(self) -> u64 {
        let mut bits = libc::MOUNT_ATTR_IDMAP;
        for (on, bit) in [
            (self.read_only, libc::MOUNT_ATTR_RDONLY),
            (self.nosuid, libc::MOUNT_ATTR_NOSUID),
            (self.nodev, libc::MOUNT_ATTR_NODEV),
            (self.noexec, libc::MOUNT_ATTR_NOEXEC),
        ] {
            if on {
                bits |= bit;
            }
        }
        bits
    }
}

fn c_path(path: &Path) -> Result<CString, IdmapError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| IdmapError::Mount {
        path: path.display().to_string(),
        step: "path",
        reason: "it holds a NUL byte".into(),
    })
}

/// Binds `source` at `target` (which must exist), seen through the
/// mappings of the user namespace `userns`, with `attributes`. With
/// `recursive`, the mounts beneath `source` come along and are mapped too.
pub fn bind_idmapped(
    source: &Path,
    target: &Path,
    userns: BorrowedFd<'_>,
    attributes: MountAttributes,
    recursive: bool,
) -> Result<(), IdmapError> {
    let failed = |step: &'static str| {
        let reason = std::io::Error::last_os_error().to_string();
        IdmapError::Mount {
            path: source.display().to_string(),
            step,
            reason,
        }
    };
    let source_c = c_path(source)?;
    let target_c = c_path(target)?;
    let recursive_flag = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: open_tree takes a NUL-terminated path and flags, and returns
    // a new descriptor that is owned here.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source_c.as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint
                | recursive_flag as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(failed("open_tree"));
    }
    // SAFETY: `tree` is a descriptor the kernel just returned.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    let attr = libc::mount_attr {
        attr_set: attributes.bits(),
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr`, of the size given, for the
    // detached tree behind `tree`.
    let set = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | recursive_flag) as libc::c_uint,
            &raw const attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if set < 0 {
        return Err(failed("mount_setattr(MOUNT_ATTR_IDMAP)"));
    }
    // SAFETY: move_mount attaches the detached tree at a NUL-terminated
    // path.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if moved < 0 {
        return Err(failed("move_mount"));
    }
    Ok(())
}
