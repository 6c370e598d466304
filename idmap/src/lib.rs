//! Id mappings (`linux.uidMappings`, a mount's `uidMappings`, containerd's
//! `uidmap=` mount option), the user namespaces made from them, and the
//! id-mapped bind mounts made with those.
//!
//! The runner uses all three to put a guest in a user namespace and to
//! give its volumes the ownership the container sees; the shim uses the
//! mounts for an id-mapped rootfs. Everything here is a system call or a
//! write to /proc: it needs root in the caller's user namespace.

mod mapping;
mod mount;
mod namespace;

pub use mapping::{IdMapping, IdMappings};
pub use mount::{bind_idmapped, MountAttributes};
pub use namespace::{join, user_namespace};

/// Why a user namespace or an id-mapped mount could not be made. Each
/// message names the field or the path, and the kernel's reason.
#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    #[error("{field}: {reason}")]
    Parse { field: String, reason: String },
    #[error("cannot make a user namespace: {step}: {reason}")]
    Namespace { step: String, reason: String },
    #[error("{field} {mapping}: the kernel refused the mapping: {reason}")]
    Refused {
        field: String,
        mapping: String,
        reason: String,
    },
    #[error("cannot join the user namespace: {0}")]
    Join(String),
    #[error("cannot make an id-mapped mount of {path}: {step}: {reason}")]
    Mount {
        path: String,
        step: &'static str,
        reason: String,
    },
}
