//! What `start` answers a containerd older than 2.3, whose bootstrap
//! protocol carries no version of its own: a bare socket address, or JSON
//! that names task API v3.
//!
//! containerd 1.6 takes only a bare address, and 1.7 refuses any version
//! above 2. containerd 2.0-2.2 take both, but treat a shim of task API v2 as
//! one that cannot group a pod's containers on its own: for every container
//! of a pod they run the shim binary again (`start`, to learn the address
//! they already know), call Shutdown when the container is deleted, and run
//! the binary once more (`delete`) when that container's connection closes.
//! That is two processes and a few milliseconds of CPU per container, and a
//! `start` inside every StartContainer. A shim of task API v3 is reached
//! directly, as runc's is. So `start` asks containerd its version (its
//! gRPC Version service) and answers v3 to 2.x, v2 to the rest, and to any
//! containerd it cannot ask. `serve` speaks both.
//!
//! The answer is remembered per containerd process (see
//! [`task_api_of_parent`]), so only the first `start` after containerd
//! starts waits for the question.

use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::version_client::VersionClient;

/// How long `start` waits for containerd's version before it answers v2,
/// which every containerd speaks.
const VERSION_WITHIN: Duration = Duration::from_millis(500);

/// The task API version to announce to the containerd whose version string
/// is `version` ("v2.1.9", "2.1.9+unknown", "1.6.20~ds1").
pub fn task_api_for(version: &str) -> u32 {
    let major = version
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|digits| digits.parse::<u32>().ok());
    match major {
        Some(major) if major >= 2 => 3,
        _ => 2,
    }
}

/// The reply to `start` for a shim at `address` that announces `task_api`.
pub fn start_reply(address: &str, task_api: u32) -> String {
    if task_api >= 3 {
        serde_json::json!({
            "version": task_api,
            "address": address,
            "protocol": "ttrpc",
        })
        .to_string()
    } else {
        address.to_string()
    }
}

/// The task API version to announce to the containerd at
/// `containerd_address` (its gRPC socket): 3 for 2.x, else 2; or why it
/// could not be asked. (`start` has no log: containerd reads its stdout
/// and stderr together as the reply, so the caller answers v2 quietly.)
pub async fn task_api_of(containerd_address: &str) -> Result<u32, String> {
    let version = tokio::time::timeout(VERSION_WITHIN, async {
        let channel = containerd_client::connect(containerd_address)
            .await
            .map_err(|e| format!("cannot connect to containerd at {containerd_address}: {e}"))?;
        VersionClient::new(channel)
            .version(())
            .await
            .map(|reply| reply.into_inner().version)
            .map_err(|e| format!("containerd at {containerd_address}: Version: {e}"))
    })
    .await
    .map_err(|_| {
        format!(
            "containerd at {containerd_address} did not tell its version within {} ms",
            VERSION_WITHIN.as_millis()
        )
    })??;
    Ok(task_api_for(&version))
}

/// Where the task API version of a containerd process is remembered:
/// `<dir>/wasmbox-task-api-<pid>-<start time>`.
const REMEMBERED_PREFIX: &str = "wasmbox-task-api-";

/// The task API version to announce to the containerd that ran this
/// `start` (the parent process), at `containerd_address`: as remembered in
/// `dir` (the shim sockets' directory) for that containerd process, or
/// asked, and then remembered. A containerd that restarts (an upgrade from
/// 1.7 to 2.x) is a new process, and is asked again. One that cannot be
/// asked gets v2, which is not remembered.
pub async fn task_api_of_parent(containerd_address: &str, dir: &Path) -> u32 {
    let containerd = process_key(nix::unistd::getppid().as_raw());
    if let Some(task_api) = containerd
        .as_deref()
        .and_then(|key| remembered(dir, key, containerd_address))
    {
        return task_api;
    }
    match task_api_of(containerd_address).await {
        Ok(task_api) => {
            if let Some(key) = containerd {
                remember(dir, &key, containerd_address, task_api);
            }
            task_api
        }
        Err(_) => 2,
    }
}

/// `<pid>-<start time>`: a process, for as long as the machine runs (pids
/// are reused; a pid's start time is not).
fn process_key(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted from the state (field 3) after the command's ")".
    let (_, after_command) = stat.rsplit_once(')')?;
    let start_time = after_command.split_whitespace().nth(19)?;
    Some(format!("{pid}-{start_time}"))
}

fn remembered(dir: &Path, key: &str, containerd_address: &str) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(format!("{REMEMBERED_PREFIX}{key}"))).ok()?;
    let (task_api, address) = text.trim_end().split_once(' ')?;
    (address == containerd_address)
        .then(|| task_api.parse().ok())
        .flatten()
}

/// Writes the record whole (a temporary file renamed), and removes those of
/// containerd processes that are gone.
fn remember(dir: &Path, key: &str, containerd_address: &str, task_api: u32) {
    let name = format!("{REMEMBERED_PREFIX}{key}");
    let temporary = dir.join(format!(".{name}.{}", std::process::id()));
    let written = std::fs::write(&temporary, format!("{task_api} {containerd_address}\n"))
        .and_then(|()| std::fs::rename(&temporary, dir.join(&name)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let file_name = entry.file_name();
        let Some(other) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(REMEMBERED_PREFIX))
        else {
            continue;
        };
        let pid = other.split('-').next().and_then(|p| p.parse().ok());
        if pid.and_then(process_key).as_deref() != Some(other) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_remembered_per_containerd_process_and_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = process_key(std::process::id() as i32).expect("own key");
        assert!(me.starts_with(&format!("{}-", std::process::id())));
        assert_eq!(remembered(dir.path(), &me, "/run/c.sock"), None);

        // A record of a process that is gone (pid 0 is never one).
        let gone = dir.path().join(format!("{REMEMBERED_PREFIX}0-1"));
        std::fs::write(&gone, "3 /run/c.sock\n").expect("record");
        remember(dir.path(), &me, "/run/c.sock", 3);
        assert_eq!(remembered(dir.path(), &me, "/run/c.sock"), Some(3));
        assert_eq!(remembered(dir.path(), &me, "/run/other.sock"), None);
        assert!(!gone.exists(), "a gone containerd's record stays");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn containerd_2_gets_task_api_3_and_the_rest_2() {
        assert_eq!(task_api_for("v2.1.9"), 3);
        assert_eq!(task_api_for("2.1.9+unknown"), 3);
        assert_eq!(task_api_for("2.0.0-rc.1"), 3);
        assert_eq!(task_api_for("1.7.24~ds1"), 2);
        assert_eq!(task_api_for("v1.6.20"), 2);
        assert_eq!(task_api_for(""), 2);
        assert_eq!(task_api_for("dev"), 2);
    }

    #[test]
    fn v3_is_json_and_v2_a_bare_address() {
        let address = "unix:///run/containerd/s/abc";
        assert_eq!(start_reply(address, 2), address);
        let reply: serde_json::Value =
            serde_json::from_str(&start_reply(address, 3)).expect("JSON");
        assert_eq!(reply["version"], 3);
        assert_eq!(reply["address"], address);
        assert_eq!(reply["protocol"], "ttrpc");
    }
}
