//! What a runner must drop before its guest's first instruction, from the
//! spec: `process.capabilities`, `process.noNewPrivileges`,
//! `linux.seccomp`, `process.oomScoreAdj`, `process.apparmorProfile`, and
//! the user namespace (see [`crate::userns`]).
//!
//! This is the spec's half of the runner's confinement, checked here so a
//! profile wasmbox cannot honour fails Create with a message naming the
//! field. The runner (`wasmbox_runtime::confine`) applies it, and on top of
//! it always adds wasmbox's own limits, whatever the spec says: an empty
//! root, its own seccomp allow-list, Landlock, and no capability a WASI
//! host does not need.

use oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction, Spec};
use serde::{Deserialize, Serialize};

use crate::userns::{user_namespace_from_spec, UserNamespacePlan};
use crate::PlanError;

/// The five capability sets of `process.capabilities`, by name
/// (`CAP_NET_BIND_SERVICE`). A set the spec leaves out is empty, as under
/// runc.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilitySets {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
    pub inheritable: Vec<String>,
    pub ambient: Vec<String>,
}

/// The spec's part of a runner's confinement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    pub capabilities: CapabilitySets,
    /// `process.noNewPrivileges`. The runner sets the bit anyway: it never
    /// execs, so the bit costs nothing and closes setuid binaries for good.
    pub no_new_privileges: bool,
    /// `linux.seccomp`, checked: no notify action, no listener.
    pub seccomp: Option<LinuxSeccomp>,
    /// `process.oomScoreAdj`.
    pub oom_score_adj: Option<i32>,
    /// `process.apparmorProfile`.
    pub apparmor_profile: Option<String>,
    /// The user namespace, with `linux.uidMappings`/`gidMappings`.
    pub user_namespace: Option<UserNamespacePlan>,
}

/// Reads the confinement fields of `spec`.
pub fn confinement_from_spec(spec: &Spec) -> Result<Confinement, PlanError> {
    let process = spec.process().as_ref();
    let capabilities = process
        .and_then(|p| p.capabilities().as_ref())
        .map(capability_sets)
        .unwrap_or_default();
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    if let Some(seccomp) = &seccomp {
        check_seccomp(seccomp)?;
    }
    Ok(Confinement {
        capabilities,
        no_new_privileges: process.and_then(|p| p.no_new_privileges()).unwrap_or(false),
        seccomp,
        oom_score_adj: process.and_then(|p| p.oom_score_adj()),
        apparmor_profile: process
            .and_then(|p| p.apparmor_profile().clone())
            .filter(|p| !p.is_empty()),
        user_namespace: user_namespace_from_spec(spec)?,
    })
}

fn capability_sets(caps: &LinuxCapabilities) -> CapabilitySets {
    let names = |set: &Option<oci_spec::runtime::Capabilities>| -> Vec<String> {
        let mut names: Vec<String> = set
            .iter()
            .flatten()
            .map(|cap| format!("CAP_{cap}"))
            .collect();
        names.sort();
        names
    };
    CapabilitySets {
        bounding: names(caps.bounding()),
        effective: names(caps.effective()),
        permitted: names(caps.permitted()),
        inheritable: names(caps.inheritable()),
        ambient: names(caps.ambient()),
    }
}

/// Refuses what a runner cannot honour: a notify action needs a seccomp
/// agent at `listenerPath`, which wasmbox does not run. Nothing is dropped
/// silently, so a profile is applied whole or Create fails.
fn check_seccomp(seccomp: &LinuxSeccomp) -> Result<(), PlanError> {
    if seccomp.listener_path().is_some() {
        return Err(PlanError::Seccomp {
            field: "linux.seccomp.listenerPath".to_string(),
            reason: "seccomp agents (SCMP_ACT_NOTIFY) are not supported".to_string(),
        });
    }
    if seccomp.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(PlanError::Seccomp {
            field: "linux.seccomp.defaultAction".to_string(),
            reason: "SCMP_ACT_NOTIFY needs a seccomp agent, which wasmbox does not support"
                .to_string(),
        });
    }
    for (index, syscall) in seccomp.syscalls().iter().flatten().enumerate() {
        if syscall.action() == LinuxSeccompAction::ScmpActNotify {
            return Err(PlanError::Seccomp {
                field: format!(
                    "linux.seccomp.syscalls[{index}] ({})",
                    syscall.names().join(",")
                ),
                reason: "SCMP_ACT_NOTIFY needs a seccomp agent, which wasmbox does not support"
                    .to_string(),
            });
        }
        if syscall.names().is_empty() {
            return Err(PlanError::Seccomp {
                field: format!("linux.seccomp.syscalls[{index}]"),
                reason: "names is empty".to_string(),
            });
        }
        for arg in syscall.args().iter().flatten() {
            if arg.index() > 5 {
                return Err(PlanError::Seccomp {
                    field: format!("linux.seccomp.syscalls[{index}].args"),
                    reason: format!(
                        "index {} is out of range: a system call has 6 arguments",
                        arg.index()
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> Spec {
        let mut base = json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/app.wasm"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {}
        });
        for (key, value) in extra.as_object().unwrap() {
            base[key.as_str()]
                .as_object_mut()
                .unwrap()
                .extend(value.as_object().unwrap().clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn capabilities_seccomp_and_the_rest_are_read() {
        let spec = spec(json!({
            "process": {
                "capabilities": {
                    "bounding": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
                    "effective": ["CAP_CHOWN"]
                },
                "noNewPrivileges": true,
                "oomScoreAdj": 500,
                "apparmorProfile": "cri-containerd.apparmor.d"
            },
            "linux": {"seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
            }}
        }));
        let confinement = confinement_from_spec(&spec).unwrap();
        assert_eq!(
            confinement.capabilities.bounding,
            ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]
        );
        assert_eq!(confinement.capabilities.effective, ["CAP_CHOWN"]);
        assert!(confinement.capabilities.ambient.is_empty());
        assert!(confinement.no_new_privileges);
        assert_eq!(confinement.oom_score_adj, Some(500));
        assert_eq!(
            confinement.apparmor_profile.as_deref(),
            Some("cri-containerd.apparmor.d")
        );
        assert!(confinement.seccomp.is_some());
    }

    #[test]
    fn a_profile_that_cannot_be_honoured_is_refused_by_field() {
        let notify = spec(json!({"linux": {"seccomp": {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}
            ]
        }}}));
        let msg = confinement_from_spec(&notify).unwrap_err().to_string();
        assert!(
            msg.contains("linux.seccomp.syscalls[1] (mkdir)") && msg.contains("SCMP_ACT_NOTIFY"),
            "{msg}"
        );

        let bad_index = spec(json!({"linux": {"seccomp": {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]
        }}}));
        let msg = confinement_from_spec(&bad_index).unwrap_err().to_string();
        assert!(
            msg.contains("linux.seccomp.syscalls[0].args") && msg.contains("index 9"),
            "{msg}"
        );
    }
}
