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

#[cfg(test)]
mod tests {
    use super::*;

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
