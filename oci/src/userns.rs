//! The spec's user namespace: a `user` entry of `linux.namespaces`, with
//! `linux.uidMappings` and `linux.gidMappings`; and a mount's own
//! `uidMappings`/`gidMappings`, which make it an id-mapped mount.
//!
//! As under runc: a new user namespace needs both mappings; mappings
//! without a user namespace are refused; a namespace given by path (CRI's
//! pod namespace) is joined as it is. The kernel checks the mappings
//! themselves when the runner writes them.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Mount, Spec};
use serde::{Deserialize, Serialize};
use wasmbox_idmap::{IdMapping, IdMappings};

use crate::PlanError;

/// The user namespace the runner's guest runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespacePlan {
    /// Join this namespace (`/proc/<pid>/ns/user`, a pinned file); `None`
    /// makes a new one with `mappings`.
    pub path: Option<PathBuf>,
    /// `linux.uidMappings` and `linux.gidMappings`.
    pub mappings: IdMappings,
}

fn convert(mappings: &Option<Vec<LinuxIdMapping>>) -> Vec<IdMapping> {
    mappings
        .iter()
        .flatten()
        .map(|m| IdMapping {
            container_id: m.container_id(),
            host_id: m.host_id(),
            size: m.size(),
        })
        .collect()
}

fn refused(field: &str, reason: &str) -> PlanError {
    PlanError::UserNamespace {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// The spec's user namespace, if it asks for one.
pub fn user_namespace_from_spec(spec: &Spec) -> Result<Option<UserNamespacePlan>, PlanError> {
    let Some(linux) = spec.linux() else {
        return Ok(None);
    };
    let mappings = IdMappings {
        uids: convert(linux.uid_mappings()),
        gids: convert(linux.gid_mappings()),
    };
    let entry = linux
        .namespaces()
        .iter()
        .flatten()
        .find(|ns| ns.typ() == LinuxNamespaceType::User);
    let Some(entry) = entry else {
        if mappings.uids.is_empty() && mappings.gids.is_empty() {
            return Ok(None);
        }
        return Err(refused(
            "linux.uidMappings",
            "id mappings are set, but linux.namespaces has no user namespace",
        ));
    };
    let path = entry.path().clone();
    if path.is_none() && (mappings.uids.is_empty() || mappings.gids.is_empty()) {
        return Err(refused(
            "linux.uidMappings",
            "a new user namespace needs both linux.uidMappings and linux.gidMappings",
        ));
    }
    Ok(Some(UserNamespacePlan { path, mappings }))
}

/// A mount's own mappings, which make it an id-mapped bind mount.
pub fn mount_mappings(mount: &Mount, destination: &str) -> Result<Option<IdMappings>, PlanError> {
    let mappings = IdMappings {
        uids: convert(mount.uid_mappings()),
        gids: convert(mount.gid_mappings()),
    };
    match (mappings.uids.is_empty(), mappings.gids.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some(mappings)),
        _ => Err(PlanError::Mount {
            destination: destination.to_string(),
            reason: "an id-mapped mount needs both uidMappings and gidMappings".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(linux: serde_json::Value) -> Spec {
        serde_json::from_value(json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/app.wasm"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": linux
        }))
        .unwrap()
    }

    #[test]
    fn a_new_namespace_has_its_mappings_and_a_joined_one_its_path() {
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        let new = spec(json!({
            "namespaces": [{"type": "pid"}, {"type": "user"}],
            "uidMappings": map, "gidMappings": map
        }));
        let plan = user_namespace_from_spec(&new).unwrap().unwrap();
        assert_eq!(plan.path, None);
        assert_eq!(plan.mappings.host_uid(1000), Some(101000));

        let joined = spec(json!({
            "namespaces": [{"type": "user", "path": "/proc/42/ns/user"}],
            "uidMappings": map, "gidMappings": map
        }));
        let plan = user_namespace_from_spec(&joined).unwrap().unwrap();
        assert_eq!(plan.path, Some(PathBuf::from("/proc/42/ns/user")));

        assert_eq!(user_namespace_from_spec(&spec(json!({}))).unwrap(), None);
    }

    #[test]
    fn mappings_without_a_namespace_and_a_namespace_without_them_are_refused() {
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        let orphan = spec(json!({"uidMappings": map, "gidMappings": map}));
        let msg = user_namespace_from_spec(&orphan).unwrap_err().to_string();
        assert!(
            msg.contains("linux.uidMappings") && msg.contains("no user namespace"),
            "{msg}"
        );

        let bare = spec(json!({"namespaces": [{"type": "user"}], "uidMappings": map}));
        let msg = user_namespace_from_spec(&bare).unwrap_err().to_string();
        assert!(msg.contains("linux.gidMappings"), "{msg}");
    }
}
