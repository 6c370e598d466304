//! What the shim tells containerd it supports, for `containerd-shim-wasmbox-v1
//! -info`: the runtime's name and version, and the OCI runtime features
//! document (`runc features`), which containerd 2.x checks specs against.
//! containerd refuses id-mapped mounts (CRI volumes of a `hostUsers:
//! false` pod) to a runtime that does not list `mountExtensions.idmap`.

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use oci_spec::runtime::{
    ApparmorBuilder, Arch, FeaturesBuilder, IDMapBuilder, LinuxFeatureBuilder, LinuxNamespaceType,
    LinuxSeccompAction, MountExtensionsBuilder, SeccompBuilder, SelinuxBuilder,
};

/// The type URL containerd registers for the features document (JSON).
const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// The runtime info for `runtime_id`, with the features document.
pub fn runtime_info(runtime_id: &str) -> RuntimeInfo {
    let features = features_json().unwrap_or_else(|e| {
        log::warn!("cannot describe the runtime's features: {e}");
        Vec::new()
    });
    RuntimeInfo {
        name: runtime_id.to_string(),
        version: MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        }),
        features: if features.is_empty() {
            MessageField::none()
        } else {
            MessageField::some(Any {
                type_url: FEATURES_TYPE_URL.to_string(),
                value: features,
                ..Default::default()
            })
        },
        ..Default::default()
    }
}

/// The features document: what wasmbox honours of a spec (see the README's
/// confinement table). Seccomp takes every action but SCMP_ACT_NOTIFY.
fn features_json() -> Result<Vec<u8>, String> {
    let namespaces = vec![
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Uts,
    ];
    let actions = vec![
        LinuxSeccompAction::ScmpActAllow,
        LinuxSeccompAction::ScmpActErrno,
        LinuxSeccompAction::ScmpActKill,
        LinuxSeccompAction::ScmpActKillProcess,
        LinuxSeccompAction::ScmpActKillThread,
        LinuxSeccompAction::ScmpActLog,
        LinuxSeccompAction::ScmpActTrace,
        LinuxSeccompAction::ScmpActTrap,
    ];
    let operators = [
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_LE",
        "SCMP_CMP_LT",
        "SCMP_CMP_MASKED_EQ",
        "SCMP_CMP_NE",
    ]
    .map(String::from)
    .to_vec();
    let archs = if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    };
    let error = |e: &dyn std::fmt::Display| e.to_string();
    let linux = LinuxFeatureBuilder::default()
        .namespaces(namespaces)
        .seccomp(
            SeccompBuilder::default()
                .enabled(true)
                .actions(actions)
                .operators(operators)
                .archs(archs)
                .build()
                .map_err(|e| error(&e))?,
        )
        .apparmor(
            ApparmorBuilder::default()
                .enabled(true)
                .build()
                .map_err(|e| error(&e))?,
        )
        .selinux(
            SelinuxBuilder::default()
                .enabled(false)
                .build()
                .map_err(|e| error(&e))?,
        )
        .mount_extensions(
            MountExtensionsBuilder::default()
                .idmap(
                    IDMapBuilder::default()
                        .enabled(true)
                        .build()
                        .map_err(|e| error(&e))?,
                )
                .build()
                .map_err(|e| error(&e))?,
        )
        .build()
        .map_err(|e| error(&e))?;
    let features = FeaturesBuilder::default()
        .oci_version_min("1.0.0")
        .oci_version_max("1.2.0")
        .hooks(Vec::<String>::new())
        .mount_options(["bind", "rbind", "ro", "rw"].map(String::from).to_vec())
        .linux(linux)
        .build()
        .map_err(|e| error(&e))?;
    serde_json::to_vec(&features).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_features_say_id_mapped_mounts_and_user_namespaces_work() {
        let info = super::runtime_info("io.containerd.wasmbox.v1");
        let features: serde_json::Value =
            serde_json::from_slice(&info.features.value).expect("features JSON");
        assert_eq!(
            features["linux"]["mountExtensions"]["idmap"]["enabled"],
            true
        );
        assert!(features["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("user")));
        assert_eq!(info.features.type_url, super::FEATURES_TYPE_URL);
    }
}
