//! Kernel OOM kills in a container's cgroup, for the TaskOOM event that
//! CRI turns into the reason `OOMKilled`.
//!
//! The runner reports the guest's own out-of-memory (its linear memory
//! reached the limit) itself. This covers the rest: the kernel's OOM
//! killer ending a process of the cgroup, a runner whose host-side memory
//! outgrew the limit or a native container's process. When the
//! container's process exits, the cgroup's `oom_kill` counter says whether
//! that happened (cgroup v2 `memory.events`, v1 `memory.oom_control`),
//! before the cgroup is removed at Delete.

use std::path::PathBuf;

use crate::cgroup::systemd_to_cgroupfs;

/// The file that counts the OOM kills of the cgroup at `cgroups_path`.
fn counter(cgroups_path: &str) -> Option<PathBuf> {
    let path = if cgroups_path.starts_with('/') {
        cgroups_path.to_string()
    } else {
        systemd_to_cgroupfs(cgroups_path).ok()?
    };
    let root = std::path::Path::new("/sys/fs/cgroup");
    let relative = path.trim_start_matches('/');
    Some(if root.join("cgroup.controllers").exists() {
        root.join(relative).join("memory.events")
    } else {
        root.join("memory")
            .join(relative)
            .join("memory.oom_control")
    })
}

/// How many processes of the cgroup the kernel's OOM killer ended.
pub fn oom_kills(cgroups_path: &str) -> u64 {
    counter(cgroups_path)
        .and_then(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}
