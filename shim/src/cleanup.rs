//! What `delete` cleans up after a shim server that died: the runner or
//! runc container of its bundle, its socket, rootfs and cgroup; and, for a
//! pod's sandbox on a containerd that reaches the pod's shim by task API v3,
//! what is left of the pod's other containers.
//!
//! containerd runs `delete` for each task it started the shim binary for,
//! once that task's connection closes. containerd 1.x started it for every
//! container of a pod, so each got its own `delete`. containerd 2.x, told
//! task API v3 (see [`crate::bootstrap`]), connects a pod's containers to
//! the sandbox's shim itself (it writes a `sandbox` file into their
//! bundles) and, if that shim dies, runs `delete` for the sandbox alone and
//! removes the other containers' bundles itself. Their runners end with the
//! shim (see the runner's `shim_watch`), but their cgroups, and a native
//! container's processes, would stay. So the shim records each such
//! container in the sandbox's bundle (`pod-members/<id>`: its cgroup and
//! pid) while it lives, and the sandbox's `delete` cleans up what each
//! record names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

/// The exit status `delete` reports for what it killed.
pub const KILLED_STATUS: u32 = 128 + Signal::SIGKILL as u32;

/// Cleans up what the dead shim left of the task in `bundle`.
pub async fn clean_bundle(bundle: &Path) {
    kill_leftover_runner(bundle);
    crate::socket::remove_stale(bundle).await;
    crate::container::native::force_delete(bundle);
    crate::rootfs::unmount(&bundle.join("rootfs"));
    remove_leftover_cgroup(bundle);
}

/// The directory of a sandbox's bundle where the shim records its pod's
/// members.
const MEMBERS_DIR: &str = "pod-members";

/// Records the task in `bundle` (with spec `spec` and process `pid`) in its
/// pod sandbox's bundle, if containerd connected it to the sandbox's shim
/// (a `sandbox` file names the sandbox). Returns the record, to remove at
/// Delete.
pub fn record_pod_member(bundle: &Path, spec: &Spec, pid: u32) -> Option<PathBuf> {
    let sandbox = std::fs::read_to_string(bundle.join("sandbox")).ok()?;
    let sandbox = sandbox.trim();
    let (tasks_dir, id) = (bundle.parent()?, bundle.file_name()?.to_str()?);
    if sandbox.is_empty() || sandbox == id || sandbox.contains('/') {
        return None;
    }
    let cgroup = cgroup_path_of(bundle, spec, id)?;
    let dir = tasks_dir.join(sandbox).join(MEMBERS_DIR);
    let record = dir.join(id);
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&record, format!("{cgroup}\n{pid}\n")));
    match written {
        Ok(()) => Some(record),
        Err(e) => {
            log::warn!(
                "container {id}: cannot record it in pod sandbox {sandbox}'s bundle ({}): {e}; if the shim dies, its cgroup stays",
                record.display()
            );
            None
        }
    }
}

/// Kills what is left of each pod member recorded in the sandbox `bundle`
/// and removes its cgroup.
pub fn clean_pod_members(bundle: &Path) {
    let Ok(records) = std::fs::read_dir(bundle.join(MEMBERS_DIR)) else {
        return;
    };
    for record in records.filter_map(|r| r.ok()) {
        let id = record.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(record.path()).unwrap_or_default();
        let mut lines = text.lines();
        let (Some(cgroup), Some(pid)) = (lines.next(), lines.next().and_then(|p| p.parse().ok()))
        else {
            log::warn!(
                "pod member record {} is not cgroup and pid",
                record.path().display()
            );
            continue;
        };
        kill_member(&id, pid, cgroup);
        remove_cgroup(cgroup);
    }
}

/// Kills `pid` if it still is member `id`'s: its runner, or a process in
/// its cgroup (pids are reused).
fn kill_member(id: &str, pid: u32, cgroup: &str) {
    let in_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|cgroups| cgroups.lines().any(|l| l.ends_with(cgroup)));
    if in_cgroup || runner_cmdline(pid).is_some_and(|cmdline| cmdline.contains(id)) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// The command line of `pid`, if it is a wasmbox runner.
fn runner_cmdline(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
    cmdline.contains("wasmbox-runner").then_some(cmdline)
}

/// The cgroup of task `id` in `bundle`, as its spec names it: a wasm
/// container's runner's, or a native container's.
fn cgroup_path_of(bundle: &Path, spec: &Spec, id: &str) -> Option<String> {
    if bundle.join("runc").is_dir() {
        crate::cgroup::spec_cgroups_path(spec)
    } else {
        Some(crate::cgroup::runner_cgroups_path(spec, id))
    }
}

/// Removes the cgroup a wasm container's runner was in, and a native
/// container's when `runc delete --force` left it: runc removes it at once
/// after its SIGKILL, and fails while the killed process is still exiting.
fn remove_leftover_cgroup(bundle: &Path) {
    let (Ok(spec), Some(id)) = (
        wasmbox_oci::load_spec(bundle),
        bundle.file_name().and_then(|n| n.to_str()),
    ) else {
        return;
    };
    if let Some(path) = cgroup_path_of(bundle, &spec, id) {
        remove_cgroup(&path);
    }
}

/// Removes cgroup `path`. Its process was just killed: its exit takes a
/// moment, and `rmdir` fails until it is out of the cgroup, so this waits
/// for that, briefly.
fn remove_cgroup(path: &str) {
    match crate::cgroup::ContainerCgroup::create(path, false, None) {
        Ok(mut cgroup) => {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !cgroup.is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            cgroup.destroy();
        }
        Err(e) => log::warn!("cannot remove cgroup {path}: {e}"),
    }
}

/// The runner recorded in `<bundle>/runner.pid`.
fn runner_pid(bundle: &Path) -> Option<u32> {
    std::fs::read_to_string(bundle.join("runner.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Kills the runner recorded in `<bundle>/runner.pid`, if that pid is still
/// a wasmbox runner (pids are reused).
fn kill_leftover_runner(bundle: &Path) {
    if let Some(pid) = runner_pid(bundle).filter(|pid| runner_cmdline(*pid).is_some()) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(tasks: &Path, id: &str, sandbox: Option<&str>) -> PathBuf {
        let dir = tasks.join(id);
        std::fs::create_dir(&dir).expect("bundle");
        std::fs::write(dir.join("config.json"), r#"{"ociVersion":"1.0.2"}"#).expect("spec");
        if let Some(sandbox) = sandbox {
            std::fs::write(dir.join("sandbox"), sandbox).expect("sandbox file");
        }
        dir
    }

    #[test]
    fn a_task_containerd_put_on_its_sandboxs_shim_is_recorded_in_the_sandbox() {
        let tasks = tempfile::tempdir().expect("tempdir");
        bundle(tasks.path(), "pod", None);
        let one = bundle(tasks.path(), "one", Some("pod"));
        let spec = |dir: &Path| wasmbox_oci::load_spec(dir).expect("spec");
        let record = record_pod_member(&one, &spec(&one), 42).expect("recorded");
        assert_eq!(record, tasks.path().join("pod/pod-members/one"));
        assert_eq!(
            std::fs::read_to_string(&record).expect("record"),
            "/wasmbox/one\n42\n"
        );
        // Not for a task of its own shim, nor for the sandbox itself.
        let alone = bundle(tasks.path(), "alone", None);
        assert_eq!(record_pod_member(&alone, &spec(&alone), 43), None);
        let odd = bundle(tasks.path(), "odd", Some("../elsewhere"));
        assert_eq!(record_pod_member(&odd, &spec(&odd), 44), None);
    }
}
