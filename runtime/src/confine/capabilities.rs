//! Capabilities: the spec's five sets, cut down to what a WASI host needs.
//!
//! The sets are those the guest would hold after runc's exec of a binary
//! without file capabilities: root keeps the spec's effective set, any
//! other user only the ambient one (for a non-root exec the kernel derives
//! nothing else), so a guest running as uid 1000 has no capability unless
//! the spec raises it as ambient.
//!
//! A wasm guest reaches the kernel only through the runner's WASI calls,
//! and of every capability only these change what those calls may do:
//! reading and writing files its user does not own (`CAP_DAC_OVERRIDE`,
//! `CAP_DAC_READ_SEARCH`), setting times on them (`CAP_FOWNER`), and
//! binding ports below 1024 (`CAP_NET_BIND_SERVICE`). Each set is the
//! spec's, intersected with those four, so a runner never holds more than
//! runc would give the same spec, and usually far less: the default ctr
//! spec gives runc fourteen, the runner three.

use caps::{CapSet, Capability, CapsHashSet};
use wasmbox_oci::{CapabilitySets, UserPlan};

use super::ConfineError;
use crate::identity::switch_user;

/// The only capabilities a runner may keep.
pub const WASI_HOST_CAPABILITIES: [Capability; 4] = [
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
    Capability::CAP_NET_BIND_SERVICE,
];

fn kept(field: &str, names: &[String]) -> Result<CapsHashSet, ConfineError> {
    let mut set = CapsHashSet::new();
    for name in names {
        let cap: Capability = name.parse().map_err(|_| ConfineError::Capability {
            field: format!("process.capabilities.{field}"),
            reason: format!("unknown capability {name:?}"),
        })?;
        if WASI_HOST_CAPABILITIES.contains(&cap) {
            set.insert(cap);
        }
    }
    Ok(set)
}

fn caps_error(what: &str, e: caps::errors::CapsError) -> ConfineError {
    ConfineError::Capability {
        field: what.to_string(),
        reason: e.to_string(),
    }
}

/// Drops the bounding set to the kept part of the spec's, switches to
/// `user` keeping the permitted set across the switch (as runc does with
/// PR_SET_KEEPCAPS), then sets permitted, effective, inheritable and
/// ambient. `None` drops everything, for the optimized compile.
pub fn drop_to(sets: Option<&CapabilitySets>, user: &UserPlan) -> Result<String, ConfineError> {
    let empty = CapabilitySets::default();
    let sets = sets.unwrap_or(&empty);
    let bounding = kept("bounding", &sets.bounding)?;
    let inheritable: CapsHashSet = kept("inheritable", &sets.inheritable)?
        .intersection(&bounding)
        .copied()
        .collect();
    let ambient: CapsHashSet = kept("ambient", &sets.ambient)?
        .intersection(&kept("permitted", &sets.permitted)?)
        .filter(|cap| inheritable.contains(cap))
        .copied()
        .collect();
    // What the process would hold after runc's exec of a binary without
    // file capabilities: root keeps its effective set, any other user
    // only its ambient one (the kernel gives a non-root exec nothing else).
    let permitted: CapsHashSet = if user.uid == 0 {
        kept("permitted", &sets.permitted)?
            .intersection(&bounding)
            .copied()
            .collect()
    } else {
        ambient.clone()
    };
    let effective: CapsHashSet = kept("effective", &sets.effective)?
        .intersection(&permitted)
        .copied()
        .chain(ambient.iter().copied())
        .collect();

    for cap in caps::runtime::thread_all_supported() {
        if !bounding.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| caps_error("process.capabilities.bounding", e))?;
        }
    }
    set_keep_caps(true)?;
    let switched = switch_user(user).map_err(|e| ConfineError::User(e.to_string()));
    set_keep_caps(false)?;
    switched?;
    caps::set(None, CapSet::Inheritable, &inheritable)
        .map_err(|e| caps_error("process.capabilities.inheritable", e))?;
    caps::set(None, CapSet::Effective, &effective)
        .map_err(|e| caps_error("process.capabilities.effective", e))?;
    caps::set(None, CapSet::Permitted, &permitted)
        .map_err(|e| caps_error("process.capabilities.permitted", e))?;
    if !ambient.is_empty() {
        caps::set(None, CapSet::Ambient, &ambient)
            .map_err(|e| caps_error("process.capabilities.ambient", e))?;
    } else {
        let _ = caps::clear(None, CapSet::Ambient);
    }
    let mut names: Vec<String> = effective.iter().map(|c| c.to_string()).collect();
    names.sort();
    Ok(if names.is_empty() {
        "none".to_string()
    } else {
        names.join(",")
    })
}

fn set_keep_caps(on: bool) -> Result<(), ConfineError> {
    nix::sys::prctl::set_keepcaps(on).map_err(|e| ConfineError::Capability {
        field: "PR_SET_KEEPCAPS".into(),
        reason: e.to_string(),
    })
}
