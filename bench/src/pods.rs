//! Pods through CRI, as a kubelet makes them, wasmbox against runc on one
//! containerd with its CRI plugin:
//!
//! - the life of a pod with one run-to-completion container, timed call by
//!   call (RunPodSandbox, CreateContainer, StartContainer, then, once the
//!   container has exited, RemoveContainer, StopPodSandbox and
//!   RemovePodSandbox), the two runtimes alternating pod by pod; the
//!   container's own run, and the polling for its exit, are not counted;
//! - pods per second: whole pod lives (the wait included) at a
//!   parallelism, the two runtimes alternating batch by batch;
//! - density: many idle pods (one long-running container each) and the PSS
//!   of every process they are made of.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmbox_tests::cri::Cri;
use wasmbox_tests::Containerd;

use crate::cpu::CpuUsed;
use crate::measure::{in_parallel, shim_family, Memory};

/// The CRI calls of a pod's life that are timed, in order.
pub const CALLS: [&str; 6] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
];

/// One runtime's side of the comparison.
pub struct Side {
    pub label: &'static str,
    /// The RuntimeClass handler.
    pub handler: &'static str,
    /// The shim binary, to find its processes.
    pub shim: &'static str,
    /// A container that runs to completion, and its command.
    pub short: (String, Vec<String>),
    /// A container that runs until stopped, and its command.
    pub idle: (String, Vec<String>),
}

/// The time spent in each of [`CALLS`], one pod.
pub type PodTimes = [Duration; CALLS.len()];

fn command(side: &(String, Vec<String>)) -> Vec<&str> {
    side.1.iter().map(String::as_str).collect()
}

/// Waits (at most 60 s) until container `id` has exited; fails unless it
/// exited 0.
fn wait_exited_zero(cri: &Cri, id: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = cri
            .container_status(id)
            .map_err(|e| anyhow!("ContainerStatus {id}: {e}"))?;
        if status.state == ContainerState::ContainerExited as i32 {
            if status.exit_code != 0 {
                bail!(
                    "container {id} exited {}: {} {}",
                    status.exit_code,
                    status.reason,
                    status.message
                );
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("container {id} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One pod's whole life; the time in each call.
pub fn pod_life(cri: &Cri, side: &Side, name: &str, logs: &Path) -> Result<PodTimes> {
    let mut times = [Duration::ZERO; CALLS.len()];
    let mut timed = |call: usize, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let started = Instant::now();
        f().with_context(|| format!("{} of {name} ({})", CALLS[call], side.label))?;
        times[call] = started.elapsed();
        Ok(())
    };
    let config = Cri::pod_config(name, logs);
    let mut pod = String::new();
    timed(0, &mut || {
        pod = cri.run_pod_sandbox_with(&config, side.handler)?;
        Ok(())
    })?;
    let container = Cri::container_config("main", &side.short.0, &command(&side.short));
    let mut id = String::new();
    timed(1, &mut || {
        id = cri.create_container(&pod, container.clone(), &config)?;
        Ok(())
    })?;
    timed(2, &mut || Ok(cri.start_container(&id)?))?;
    wait_exited_zero(cri, &id)?;
    timed(3, &mut || Ok(cri.remove_container(&id)?))?;
    timed(4, &mut || Ok(cri.stop_pod_sandbox(&pod)?))?;
    timed(5, &mut || Ok(cri.remove_pod_sandbox(&pod)?))?;
    Ok(times)
}

/// `pods` pod lives of each side, alternating, after one warm-up each.
pub fn pod_lives(cd: &Containerd, sides: &[Side], pods: usize) -> Result<Vec<Vec<PodTimes>>> {
    let cri = Cri::connect(&cd.address);
    let logs = log_dir(cd)?;
    for side in sides {
        pod_life(&cri, side, &format!("warm-{}", side.label), &logs)?;
    }
    let mut all = vec![Vec::with_capacity(pods); sides.len()];
    for i in 0..pods {
        for (side, times) in sides.iter().zip(all.iter_mut()) {
            times.push(pod_life(
                &cri,
                side,
                &format!("life-{}-{i}", side.label),
                &logs,
            )?);
        }
    }
    Ok(all)
}

/// Pods per second: `jobs` whole pod lives of `side`, `parallelism` at a
/// time, each client with its own connection, as kubelets on one node;
/// and the CPU time the machine spent per pod meanwhile (see
/// [`crate::cpu`]).
pub fn pods_per_second(
    cd: &Containerd,
    side: &Side,
    jobs: usize,
    parallelism: usize,
    round: usize,
) -> Result<(f64, CpuUsed)> {
    let logs = log_dir(cd)?;
    let clients: Vec<Cri> = (0..parallelism)
        .map(|_| Cri::connect(&cd.address))
        .collect();
    let containerd = cd
        .daemon_pid()
        .ok_or_else(|| anyhow!("no pid file of containerd in {}", cd.dir().display()))?;
    let before = crate::cpu::ticks(containerd)?;
    let started = Instant::now();
    in_parallel(
        jobs,
        parallelism,
        |i| {
            let cri = &clients[i % clients.len()];
            pod_life(
                cri,
                side,
                &format!("rate-{}-{round}-{i}", side.label),
                &logs,
            )
            .map(|_| ())
        },
        |_| {},
    )?;
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    let used = crate::cpu::between(before, crate::cpu::ticks(containerd)?);
    Ok((rate, used.per(jobs)))
}

/// `count` idle pods of `side` (each one long-running container), the PSS
/// of every process of their shims (sandbox and container processes
/// included), then all of them removed.
pub fn density(cd: &Containerd, side: &Side, count: usize) -> Result<Memory> {
    let logs = log_dir(cd)?;
    let pods = std::sync::Mutex::new(Vec::with_capacity(count));
    let clients: Vec<Cri> = (0..8).map(|_| Cri::connect(&cd.address)).collect();
    let memory = in_parallel(
        count,
        8,
        |i| {
            let cri = &clients[i % clients.len()];
            let config = Cri::pod_config(&format!("dense-{}-{i}", side.label), &logs);
            let pod = cri
                .run_pod_sandbox_with(&config, side.handler)
                .map_err(|e| anyhow!("RunPodSandbox: {e}"))?;
            if let Ok(mut pods) = pods.lock() {
                pods.push(pod.clone());
            }
            let container = Cri::container_config("idle", &side.idle.0, &command(&side.idle));
            let id = cri
                .create_container(&pod, container, &config)
                .map_err(|e| anyhow!("CreateContainer: {e}"))?;
            cri.start_container(&id)
                .map_err(|e| anyhow!("StartContainer: {e}"))?;
            Ok(())
        },
        |_| {},
    )
    .and_then(|()| Memory::of(&shim_family(cd, side.shim), count));
    let pods = pods.into_inner().map_err(|_| anyhow!("pods poisoned"))?;
    let removed = in_parallel(
        pods.len(),
        8,
        |i| {
            let cri = &clients[i % clients.len()];
            cri.stop_pod_sandbox(&pods[i])
                .and_then(|()| cri.remove_pod_sandbox(&pods[i]))
                .map_err(|e| anyhow!("removing pod {}: {e}", pods[i]))
        },
        |_| {},
    );
    let memory = memory?;
    removed?;
    Ok(memory)
}

fn log_dir(cd: &Containerd) -> Result<PathBuf> {
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs)?;
    Ok(logs)
}

/// The `q` quantile (0..=1) of `samples`, nearest rank.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
