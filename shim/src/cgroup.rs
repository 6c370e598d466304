//! A container's cgroup: limits from `linux.resources`, metrics for Stats,
//! the freezer for pause/resume, and new limits for Update.
//!
//! The runner is put in the cgroup the spec names in `linux.cgroupsPath`,
//! with both of its forms: a cgroupfs path (`/default/web`), and systemd's
//! `slice:prefix:name`. The systemd form goes through systemd over D-Bus
//! when the `SystemdCgroup` runtime option is set and systemd runs on the
//! node; otherwise it is expanded to the cgroupfs path systemd would use
//! (`/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope`). Both
//! cgroup v1 (including v1/v2 hybrids) and v2 work; the `cgroups-rs` crate
//! does the file work.
//!
//! Pause returns only once the kernel reports every task frozen, as runc's
//! does: writing the freezer starts the freeze, and a task on a CPU can run
//! on (and be charged CPU time) until it reaches the kernel.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hierarchies;
use cgroups_rs::fs::{Cgroup, Controller};
use cgroups_rs::manager::is_systemd_cgroup;
use cgroups_rs::{CgroupPid, FreezerState, FsManager, Manager, SystemdManager};
use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use oci_spec::runtime::LinuxResources;
use tokio::task::JoinHandle;

/// `linux.cgroupsPath` of `spec`, if it sets one.
pub fn spec_cgroups_path(spec: &oci_spec::runtime::Spec) -> Option<String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
}

/// The cgroup a wasm container's runner is put in: the spec's, else
/// `/wasmbox/<id>`. The shim's `delete` removes the same one.
pub fn runner_cgroups_path(spec: &oci_spec::runtime::Spec, id: &str) -> String {
    spec_cgroups_path(spec).unwrap_or_else(|| format!("/wasmbox/{id}"))
}

/// The cgroup of one container.
pub struct ContainerCgroup {
    manager: Box<dyn Manager>,
    path: String,
    resources: Option<LinuxResources>,
    /// The cgroup's cgroupfs path (the systemd form expanded), where Pause
    /// reads whether the freeze has settled.
    cgroupfs_path: String,
}

/// How long Pause waits for every task to be frozen before it thaws the
/// cgroup and fails (runc's v1 freeze gives up after about as long).
const FREEZE_WITHIN: Duration = Duration::from_secs(5);

impl ContainerCgroup {
    /// Prepares the cgroup at `cgroups_path`; [`Self::add`] creates it.
    pub fn create(
        cgroups_path: &str,
        use_systemd: bool,
        resources: Option<&LinuxResources>,
    ) -> Result<Self, String> {
        let systemd_form = is_systemd_cgroup(cgroups_path);
        let cgroupfs_path = if systemd_form {
            systemd_to_cgroupfs(cgroups_path)?
        } else {
            cgroups_path.to_string()
        };
        let manager: Box<dyn Manager> = if systemd_form
            && use_systemd
            && std::path::Path::new("/run/systemd/system").exists()
        {
            Box::new(
                SystemdManager::new(cgroups_path)
                    .map_err(|e| format!("cgroup {cgroups_path} (systemd): {e}"))?,
            )
        } else {
            Box::new(fs_manager(&cgroupfs_path)?)
        };
        Ok(Self {
            manager,
            path: cgroups_path.to_string(),
            resources: resources.map(applicable),
            cgroupfs_path,
        })
    }

    /// Creates the cgroup, moves `pid` into it and applies the limits.
    /// On failure the cgroup is removed again.
    pub fn add(&mut self, pid: u32) -> Result<(), String> {
        let added = self
            .manager
            .add_proc(CgroupPid { pid: pid as u64 })
            .map_err(|e| format!("cannot put process {pid} in cgroup {}: {e}", self.path))
            .and_then(|()| match &self.resources {
                Some(resources) => self.manager.set(resources).map_err(|e| {
                    format!("cannot apply linux.resources to cgroup {}: {e}", self.path)
                }),
                None => Ok(()),
            });
        if added.is_err() {
            self.destroy();
        }
        added
    }

    /// Applies new limits (the Update call).
    pub fn update(&mut self, resources: &LinuxResources) -> Result<(), String> {
        self.manager
            .set(&applicable(resources))
            .map_err(|e| format!("cannot update cgroup {}: {e}", self.path))
    }

    /// Freezes the cgroup and waits, up to [`FREEZE_WITHIN`], until the
    /// kernel says every task in it is frozen. The freeze is asked again on
    /// each look, which on v1 retries the tasks still running (as runc
    /// does). If it does not settle, the cgroup is thawed and this fails.
    pub async fn freeze(&self) -> Result<(), String> {
        let deadline = Instant::now() + FREEZE_WITHIN;
        let freezer = FreezerView::of(&self.cgroupfs_path);
        loop {
            self.manager
                .freeze(FreezerState::Frozen)
                .map_err(|e| format!("cannot freeze cgroup {}: {e}", self.path))?;
            if freezer.is_frozen()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let thawed = self.thaw();
                return Err(format!(
                    "cgroup {} was not frozen within {} s: a task in it did not stop{}",
                    self.path,
                    FREEZE_WITHIN.as_secs(),
                    thawed.err().map(|e| format!(" ({e})")).unwrap_or_default()
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn thaw(&self) -> Result<(), String> {
        self.manager
            .freeze(FreezerState::Thawed)
            .map_err(|e| format!("cannot thaw cgroup {}: {e}", self.path))
    }

    /// Whether no process is left in the cgroup.
    pub fn is_empty(&self) -> bool {
        self.manager
            .pids()
            .map(|pids| pids.is_empty())
            .unwrap_or(true)
    }

    /// Removes the cgroup; logs what fails.
    pub fn destroy(&mut self) {
        if let Err(e) = self.manager.destroy() {
            log::warn!("cannot remove cgroup {}: {e}", self.path);
        }
    }

    /// The cgroup's metrics, as the v1 or v2 `Metrics` message containerd
    /// expects for this host's cgroup mode.
    pub fn metrics(&self) -> Result<Any, String> {
        let stats = self.manager.stats();
        let (type_url, bytes) = if self.manager.v2() {
            (
                "io.containerd.cgroups.v2.Metrics",
                v2_metrics(&stats).write_to_bytes(),
            )
        } else {
            (
                "io.containerd.cgroups.v1.Metrics",
                v1_metrics(&stats).write_to_bytes(),
            )
        };
        Ok(Any {
            type_url: type_url.to_string(),
            value: bytes.map_err(|e| format!("cannot encode metrics: {e}"))?,
            ..Default::default()
        })
    }
}

/// A container's cgroup, which may still be taking in the runner.
///
/// Create returns once the runner is ready, without waiting for the move
/// into the cgroup (see [`ContainerCgroup::confine`]); everything that needs
/// the cgroup, Start first of all, waits for it through [`Self::get`]. The
/// guest never runs outside its cgroup: its first instruction comes after
/// Start.
pub enum CgroupSlot {
    Confining(JoinHandle<(ContainerCgroup, Result<(), String>)>),
    Ready(Box<ContainerCgroup>),
    /// The move failed and the cgroup was removed; the message says why.
    Failed(String),
}

impl CgroupSlot {
    /// Starts moving the runner `pid` into `cgroup`, off the event loop.
    /// On cgroup v1 the first move after a quiet spell waits for an RCU
    /// grace period (5-20 ms), so the shim does this while the runner loads
    /// its module; later moves within that period are quick. With
    /// `kill_on_failure` (a sandbox, which may be started before its move
    /// ends), a runner the move fails for is killed at once, so it never
    /// goes on outside its cgroup; a guest's Start fails instead.
    pub fn confine(mut cgroup: ContainerCgroup, pid: u32, kill_on_failure: bool) -> Self {
        CgroupSlot::Confining(tokio::task::spawn_blocking(move || {
            let confined = cgroup.add(pid);
            if let (Err(e), true) = (&confined, kill_on_failure) {
                log::error!("runner {pid}: {e}; killing it");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            (cgroup, confined)
        }))
    }

    /// The cgroup, once the runner is in it.
    pub async fn get(&mut self) -> Result<&mut ContainerCgroup, String> {
        if let CgroupSlot::Confining(confining) = self {
            *self = match confining.await {
                Ok((cgroup, Ok(()))) => CgroupSlot::Ready(Box::new(cgroup)),
                Ok((_, Err(e))) => CgroupSlot::Failed(e),
                Err(e) => CgroupSlot::Failed(format!("the cgroup set-up task failed: {e}")),
            };
        }
        match self {
            CgroupSlot::Ready(cgroup) => Ok(cgroup),
            CgroupSlot::Failed(e) => Err(e.clone()),
            CgroupSlot::Confining(_) => unreachable!("the move was awaited above"),
        }
    }

    /// Removes the cgroup, once the move has ended, off the event loop
    /// (rmdir is retried while the kernel lets the last task go).
    pub async fn destroy(&mut self) {
        if self.get().await.is_err() {
            return;
        }
        let slot = std::mem::replace(self, CgroupSlot::Failed("the cgroup was removed".into()));
        if let CgroupSlot::Ready(mut cgroup) = slot {
            let _ = tokio::task::spawn_blocking(move || cgroup.destroy()).await;
        }
    }
}

/// Where the kernel says whether a cgroup's tasks are all frozen: v1's
/// `freezer.state` (`FREEZING` until the last task stops, then `FROZEN`),
/// or v2's `cgroup.events` (`frozen 1`; cgroups-rs reads `cgroup.freeze`,
/// which is what was asked, not what is).
enum FreezerView {
    V1(FreezerController),
    V2 {
        events: PathBuf,
    },
    /// v1 with no freezer hierarchy mounted: pausing fails in the manager.
    Missing,
}

impl FreezerView {
    fn of(cgroupfs_path: &str) -> Self {
        let relative = cgroupfs_path.trim_start_matches('/');
        let hierarchy = hierarchies::auto();
        if hierarchy.v2() {
            return FreezerView::V2 {
                events: hierarchy.root().join(relative).join("cgroup.events"),
            };
        }
        Cgroup::load_with_specified_controllers(hierarchy, relative, vec!["freezer".into()])
            .controller_of::<FreezerController>()
            .map(|freezer| FreezerView::V1(freezer.clone()))
            .unwrap_or(FreezerView::Missing)
    }

    fn is_frozen(&self) -> Result<bool, String> {
        match self {
            FreezerView::V1(freezer) => freezer
                .state()
                .map(|state| matches!(state, FreezerState::Frozen))
                .map_err(|e| {
                    format!(
                        "cannot read {}/freezer.state: {e}",
                        freezer.path().display()
                    )
                }),
            FreezerView::V2 { events } => std::fs::read_to_string(events)
                .map(|text| text.lines().any(|line| line.trim() == "frozen 1"))
                .map_err(|e| format!("cannot read {}: {e}", events.display())),
            FreezerView::Missing => Ok(true),
        }
    }
}

/// `resources` without the device rules: they mean nothing to a WASI guest,
/// which can open no device (its preopens are directories, /dev is not one
/// of them), and v1's devices controller refuses them on a cgroup with
/// children. Everything else applies as the spec says.
fn applicable(resources: &LinuxResources) -> LinuxResources {
    let mut resources = resources.clone();
    resources.set_devices(None);
    resources
}

/// A cgroupfs manager for `path`, which is relative to the hierarchy root
/// whether or not it starts with `/` (cgroups-rs joins it as relative).
fn fs_manager(path: &str) -> Result<FsManager, String> {
    FsManager::new(path.trim_start_matches('/')).map_err(|e| format!("cgroup {path}: {e}"))
}

fn v1_metrics(stats: &cgroups_rs::CgroupStats) -> v1::Metrics {
    let cpu = stats.cpu.cpu_acct.as_ref();
    let throttling = stats.cpu.cpu_throttling.as_ref();
    let memory = stats.memory.memory.as_ref();
    v1::Metrics {
        pids: MessageField::some(v1::PidsStat {
            current: stats.pids.current,
            limit: stats.pids.limit.max(0) as u64,
            ..Default::default()
        }),
        cpu: MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: cpu.map(|c| c.total_usage).unwrap_or_default(),
                kernel: cpu.map(|c| c.system_usage).unwrap_or_default(),
                user: cpu.map(|c| c.user_usage).unwrap_or_default(),
                per_cpu: cpu.map(|c| c.usage_percpu.clone()).unwrap_or_default(),
                ..Default::default()
            }),
            throttling: MessageField::some(v1::Throttle {
                periods: throttling.map(|t| t.periods).unwrap_or_default(),
                throttled_periods: throttling.map(|t| t.throttled_periods).unwrap_or_default(),
                throttled_time: throttling.map(|t| t.throttled_time).unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(v1::MemoryStat {
            cache: stats.memory.cache,
            rss: stats.memory.rss,
            rss_huge: stats.memory.rss_huge,
            mapped_file: stats.memory.mapped_file,
            pg_fault: stats.memory.pgfault,
            pg_maj_fault: stats.memory.pgmajfault,
            total_cache: stats.memory.total_cache,
            total_rss: stats.memory.total_rss,
            usage: MessageField::some(v1::MemoryEntry {
                usage: memory.map(|m| m.usage).unwrap_or_default(),
                max: memory.map(|m| m.max_usage).unwrap_or_default(),
                limit: memory.map(|m| m.limit.max(0) as u64).unwrap_or_default(),
                failcnt: memory.map(|m| m.fail_cnt).unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn v2_metrics(stats: &cgroups_rs::CgroupStats) -> v2::Metrics {
    let cpu = stats.cpu.cpu_acct.as_ref();
    let throttling = stats.cpu.cpu_throttling.as_ref();
    let memory = stats.memory.memory.as_ref();
    v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: stats.pids.current,
            limit: stats.pids.limit.max(0) as u64,
            ..Default::default()
        }),
        cpu: MessageField::some(v2::CPUStat {
            usage_usec: cpu.map(|c| c.total_usage / 1000).unwrap_or_default(),
            user_usec: cpu.map(|c| c.user_usage / 1000).unwrap_or_default(),
            system_usec: cpu.map(|c| c.system_usage / 1000).unwrap_or_default(),
            nr_periods: throttling.map(|t| t.periods).unwrap_or_default(),
            nr_throttled: throttling.map(|t| t.throttled_periods).unwrap_or_default(),
            throttled_usec: throttling
                .map(|t| t.throttled_time / 1000)
                .unwrap_or_default(),
            ..Default::default()
        }),
        memory: MessageField::some(v2::MemoryStat {
            usage: memory.map(|m| m.usage).unwrap_or_default(),
            max_usage: memory.map(|m| m.max_usage).unwrap_or_default(),
            usage_limit: memory.map(|m| m.limit.max(0) as u64).unwrap_or_default(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `slice:prefix:name` → the cgroupfs path systemd gives that unit:
/// `kubepods-besteffort.slice:cri-containerd:abc` →
/// `/kubepods.slice/kubepods-besteffort.slice/cri-containerd-abc.scope`.
pub fn systemd_to_cgroupfs(cgroups_path: &str) -> Result<String, String> {
    let mut parts = cgroups_path.splitn(3, ':');
    let (Some(slice), Some(prefix), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "cgroupsPath {cgroups_path:?} is not of the form slice:prefix:name"
        ));
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let stem = slice
        .strip_suffix(".slice")
        .ok_or_else(|| format!("cgroupsPath {cgroups_path:?}: {slice:?} is not a .slice"))?;
    let mut path = String::new();
    if stem != "-" {
        let mut prefix_so_far = String::new();
        for component in stem.split('-') {
            if component.is_empty() {
                return Err(format!(
                    "cgroupsPath {cgroups_path:?}: bad slice name {slice:?}"
                ));
            }
            if !prefix_so_far.is_empty() {
                prefix_so_far.push('-');
            }
            prefix_so_far.push_str(component);
            path.push('/');
            path.push_str(&prefix_so_far);
            path.push_str(".slice");
        }
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Ok(format!("{path}/{unit}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths_expand_like_systemd_does() {
        assert_eq!(
            systemd_to_cgroupfs("kubepods-besteffort-pod12.slice:cri-containerd:abc").unwrap(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"
        );
        assert_eq!(
            systemd_to_cgroupfs("system.slice:wasmbox:web").unwrap(),
            "/system.slice/wasmbox-web.scope"
        );
        assert_eq!(
            systemd_to_cgroupfs(":wasmbox:web").unwrap(),
            "/system.slice/wasmbox-web.scope"
        );
        assert_eq!(systemd_to_cgroupfs("-.slice:p:n").unwrap(), "/p-n.scope");
        assert!(systemd_to_cgroupfs("nope").is_err());
        assert!(systemd_to_cgroupfs("bad.scope:p:n").is_err());
    }
}
