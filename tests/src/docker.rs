//! A private Docker Engine for the tests: Debian sid's dockerd on a private
//! containerd (scripts/private-docker.sh), in a network namespace of its
//! own, driven with its own `docker` CLI as a user would drive theirs.

use crate::process::output_with_timeout;
use crate::{repo_root, Containerd};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A running private dockerd, and the containerd under it.
pub struct Docker {
    /// The containerd dockerd runs its containers on.
    pub containerd: Containerd,
    cli: PathBuf,
    host: String,
    config: PathBuf,
    /// dockerd, in whose network namespace published ports are.
    pub dockerd_pid: u32,
    /// What of Docker's network the host's namespace had before.
    host_network_before: Vec<String>,
}

impl Docker {
    /// Starts a private containerd and a dockerd on it.
    pub fn start() -> Self {
        let host_network_before = host_network_of_docker();
        let containerd = Containerd::start();
        let out = Command::new(repo_root().join("scripts/private-docker.sh"))
            .arg("start")
            .arg(containerd.dir())
            .stdin(Stdio::null())
            .output()
            .expect("run private-docker.sh");
        assert!(
            out.status.success(),
            "private dockerd did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let var = |name: &str| crate::env_file_var(containerd.dir(), name);
        Self {
            cli: var("DOCKER").into(),
            host: var("DOCKER_HOST"),
            config: var("DOCKER_CONFIG").into(),
            dockerd_pid: var("DOCKERD_PID").parse().expect("DOCKERD_PID"),
            containerd,
            host_network_before,
        }
    }

    /// A `docker` command aimed at this dockerd.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.cli);
        cmd.env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `docker ARGS` to completion (at most 2 minutes).
    pub fn docker(&self, args: &[&str]) -> Output {
        output_with_timeout(self.command(args), Duration::from_secs(120))
    }

    /// `curl ARGS` from dockerd's network namespace, where `-p` publishes
    /// ports, as a user on the host would reach a published port.
    pub fn curl(&self, args: &[&str]) -> Output {
        crate::curl_in_netns(self.dockerd_pid, args)
    }

    /// The temp dir of the containerd and dockerd.
    pub fn dir(&self) -> &std::path::Path {
        self.containerd.dir()
    }

    /// dockerd's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
    }

    /// Stops dockerd, then checks that nothing of it is left: no dockerd,
    /// no mount under its dirs, no bridge or iptables chain of Docker's in
    /// the host's network namespace, and nothing of wasmbox
    /// ([`Containerd::assert_nothing_left`]).
    pub fn stop_and_assert_nothing_left(self) {
        self.stop_dockerd();
        assert!(
            !std::path::Path::new(&format!("/proc/{}", self.dockerd_pid)).exists(),
            "dockerd {} is still there",
            self.dockerd_pid
        );
        let docker_dir = self.dir().join("docker");
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(docker_dir.to_string_lossy().as_ref()))
            .map(str::to_string)
            .collect();
        assert!(mounts.is_empty(), "dockerd left mounts: {mounts:#?}");
        assert_eq!(
            host_network_of_docker(),
            self.host_network_before,
            "Docker's network reached the host's namespace"
        );
        self.containerd.assert_nothing_left();
    }

    fn stop_dockerd(&self) {
        let _ = Command::new(repo_root().join("scripts/private-docker.sh"))
            .arg("stop")
            .arg(self.dir())
            .stdin(Stdio::null())
            .status();
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        self.stop_dockerd();
    }
}

/// What of Docker's network is in the host's network namespace: a
/// `docker0` bridge, `veth` links, and `DOCKER` iptables chains. dockerd
/// runs in its own namespace, so this does not change.
fn host_network_of_docker() -> Vec<String> {
    let run = |program: &str, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let links = run("ip", &["-o", "link", "show"]);
    let rules = run("iptables", &["-S"]) + &run("iptables", &["-t", "nat", "-S"]);
    links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter(|name| name.starts_with("docker") || name.starts_with("veth"))
        .map(str::to_string)
        .chain(
            rules
                .lines()
                .filter(|l| l.contains("DOCKER"))
                .map(str::to_string),
        )
        .collect()
}
