//! Who the guest runs as: `process.rlimits` and `process.user`.
//!
//! The runner loads the module and opens the preopens as root (the compiled
//! cache is root's), then sets the limits and switches to the container's
//! uid, gid and supplementary groups before it reports ready. Every file
//! the guest opens afterwards is checked against that user.

use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
use wasmbox_oci::{RlimitPlan, UserPlan};

use crate::RuntimeError;

fn resource(name: &str) -> Option<Resource> {
    Some(match name {
        "RLIMIT_AS" => Resource::RLIMIT_AS,
        "RLIMIT_CORE" => Resource::RLIMIT_CORE,
        "RLIMIT_CPU" => Resource::RLIMIT_CPU,
        "RLIMIT_DATA" => Resource::RLIMIT_DATA,
        "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => Resource::RLIMIT_NICE,
        "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
        "RLIMIT_RSS" => Resource::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => Resource::RLIMIT_STACK,
        _ => return None,
    })
}

/// Applies `process.rlimits`. An unknown name is an error that names it.
pub fn apply_rlimits(rlimits: &[RlimitPlan]) -> Result<(), RuntimeError> {
    for limit in rlimits {
        let res = resource(&limit.name).ok_or_else(|| {
            RuntimeError::Identity(format!(
                "process.rlimits: unknown resource {:?}",
                limit.name
            ))
        })?;
        setrlimit(res, limit.soft, limit.hard).map_err(|e| {
            RuntimeError::Identity(format!(
                "process.rlimits: cannot set {} to {}:{}: {e}",
                limit.name, limit.soft, limit.hard
            ))
        })?;
    }
    Ok(())
}

/// What the kernel's EINVAL means for an id: in a user namespace, an id
/// outside its mappings.
fn id_error(e: nix::errno::Errno) -> String {
    if e == nix::errno::Errno::EINVAL {
        format!("{e}: not mapped in the user namespace (linux.uidMappings/gidMappings)")
    } else {
        e.to_string()
    }
}

/// Switches to `process.user`: groups first, then gid, then uid.
pub fn switch_user(user: &UserPlan) -> Result<(), RuntimeError> {
    let gids: Vec<Gid> = user
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    setgroups(&gids).map_err(|e| {
        RuntimeError::Identity(format!(
            "process.user.additionalGids {:?}: {}",
            user.additional_gids,
            id_error(e)
        ))
    })?;
    setgid(Gid::from_raw(user.gid)).map_err(|e| {
        RuntimeError::Identity(format!("process.user.gid {}: {}", user.gid, id_error(e)))
    })?;
    setuid(Uid::from_raw(user.uid)).map_err(|e| {
        RuntimeError::Identity(format!("process.user.uid {}: {}", user.uid, id_error(e)))
    })?;
    Ok(())
}
