//! Whether a container ran out of memory, for the TaskOOM event that CRI
//! turns into the reason `OOMKilled`.
//!
//! The runner reports the guest's own out-of-memory (its linear memory
//! reached the limit) itself, as a notice its exit waits for. The cgroup
//! covers the rest: the kernel's OOM killer ending a process of the
//! cgroup, a runner whose host-side memory outgrew the limit or a native
//! container's process. When the container's process exits, the cgroup's
//! `oom_kill` counter says whether that happened (cgroup v2
//! `memory.events`, v1 `memory.oom_control`), before the cgroup is removed
//! at Delete.

use std::path::PathBuf;
use std::time::Duration;

use crate::cgroup::systemd_to_cgroupfs;
use crate::exits::ExitOwner;

/// How long an exit waits for the end of its runner's notices. The runner
/// closes them as it exits, so this bounds only a runner whose notices
/// outlived it (a leaked descriptor).
const NOTICES_END_WITHIN: Duration = Duration::from_secs(1);

/// Whether the container whose process just exited ran out of memory:
/// its runner said so, or the kernel's OOM killer ended a process in its
/// cgroup.
pub async fn out_of_memory(owner: &ExitOwner) -> bool {
    if let Some(mut notices) = owner.notices.clone() {
        // Past the bound, the runner said nothing (yet): not its OOM.
        let said = tokio::time::timeout(NOTICES_END_WITHIN, notices.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|ended| ended.ok().and_then(|end| *end))
            .unwrap_or(false);
        if said {
            return true;
        }
    }
    let Some(cgroup) = owner.cgroup.as_deref() else {
        return false;
    };
    let kills = oom_kills(cgroup);
    if kills > 0 {
        log::info!(
            "container {}: the kernel's OOM killer ended {kills} of its processes",
            owner.container
        );
    }
    kills > 0
}

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
fn oom_kills(cgroups_path: &str) -> u64 {
    counter(cgroups_path)
        .and_then(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}
