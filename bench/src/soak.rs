//! `make soak`: thousands of container life cycles on one private
//! containerd, and what they leave behind.
//!
//! 1. `WASMBOX_SOAK_CYCLES` (default 10,000) `ctr run --rm` of `hello`
//!    (create, start, wait, delete) at parallelism `WASMBOX_SOAK_PARALLELISM`
//!    (default 8);
//! 2. `WASMBOX_SOAK_PODS` (default 1,000) pods through CRI, each with one
//!    `hello` container run to its end, and one more `hello` container in a
//!    long-lived pod beside them, so that its shim sees as many life cycles.
//!
//! Before and after, it counts what a leak would grow: processes, open
//! descriptors of containerd and of the shims, cgroup directories, mounts,
//! network namespaces, files under the state and cache dirs, and the
//! resident memory of the long-lived pod's shim. The table and a chart of
//! the counts along the run go into bench/RESULTS.md, between markers that
//! a full `make bench` keeps.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use wasmbox_tests::cri::{import_for_cri, wait_for_log, Cri};
use wasmbox_tests::{Containerd, RUNTIME};

use crate::measure::in_parallel;

/// The markers around the soak's part of RESULTS.md.
pub const BEGIN: &str = "<!-- soak:begin -->";
pub const END: &str = "<!-- soak:end -->";

/// The counts a leak would grow, by name, in table order.
pub type Census = BTreeMap<&'static str, u64>;

/// The row judged by its size rather than its growth, and reported along
/// the pods.
const POD_SHIM_RSS: &str = "the long-lived pod shim's RSS (KiB)";

const ROWS: [&str; 11] = [
    "wasmbox processes (shims, runners)",
    "containerd's open fds",
    "all shims' open fds",
    "the long-lived pod shim's open fds",
    POD_SHIM_RSS,
    "cgroup directories of containers",
    "mounts on the node",
    "network namespaces pinned by containerd",
    "files under containerd's state dir",
    "files in the wasm cache",
    "bytes in the wasm cache",
];

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// Files (not directories) under `dir`, and their bytes.
fn files_under(dir: &Path) -> (u64, u64) {
    let mut count = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return count;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            let (n, bytes) = files_under(&entry.path());
            count = (count.0 + n, count.1 + bytes);
        } else {
            count = (count.0 + 1, count.1 + meta.len());
        }
    }
    count
}

/// Directories under the cgroup trees containers are put in (`default`
/// for ctr, `k8s.io` for CRI, `wasmbox` by default), on every hierarchy.
fn cgroup_dirs() -> u64 {
    fn dirs_under(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| 1 + dirs_under(&e.path()))
                    .sum()
            })
            .unwrap_or(0)
    }
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        hierarchies.extend(entries.flatten().map(|e| e.path()));
    }
    hierarchies
        .iter()
        .flat_map(|h| ["default", "k8s.io", "wasmbox"].map(|top| h.join(top)))
        .map(|dir| dirs_under(&dir))
        .sum()
}

fn pid_of(cmdline: &str) -> Option<u32> {
    cmdline.split(':').next()?.trim().parse().ok()
}

/// Counts everything in [`ROWS`].
fn census(cd: &Containerd, pod_shim: u32) -> Census {
    let processes = cd.wasmbox_processes();
    let shim_fds = processes
        .iter()
        .filter(|p| p.contains("containerd-shim-wasmbox-v1"))
        .filter_map(|p| pid_of(p))
        .map(fds)
        .sum();
    let containerd = cd.daemon_pid().map(fds).unwrap_or(0);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = cd.dir().display().to_string();
    let netns = mountinfo
        .lines()
        .filter(|l| l.contains(" nsfs ") && l.contains(&dir))
        .count() as u64;
    let (state_files, _) = files_under(&cd.dir().join("state"));
    let (cache_files, cache_bytes) = files_under(&cd.cache_dir);
    let values = [
        processes.len() as u64,
        containerd,
        shim_fds,
        fds(pod_shim),
        wasmbox_tests::proc_status::rss_kib(pod_shim).unwrap_or(0),
        cgroup_dirs(),
        mountinfo.lines().count() as u64,
        netns,
        state_files,
        cache_files,
        cache_bytes,
    ];
    ROWS.into_iter().zip(values).collect()
}

/// One `hello` container of `pod` run to its end and removed.
fn hello_in_pod(
    cri: &Cri,
    pod: &str,
    config: &k8s_cri::v1::PodSandboxConfig,
    name: &str,
) -> Result<()> {
    let container = Cri::container_config(name, "docker.io/wasmbox/hello:latest", &["/app.wasm"]);
    let id = cri
        .create_container(pod, container, config)
        .map_err(|e| anyhow!("CreateContainer {name}: {e}"))?;
    cri.start_container(&id)
        .map_err(|e| anyhow!("StartContainer {name}: {e}"))?;
    let status = cri.wait_for_exit(&id);
    if status.exit_code != 0 {
        bail!(
            "{name} exited {}: {} {}",
            status.exit_code,
            status.reason,
            status.message
        );
    }
    cri.remove_container(&id)
        .map_err(|e| anyhow!("RemoveContainer {name}: {e}"))
}

/// What the soak measured.
pub struct Soak {
    pub cycles: usize,
    pub pods: usize,
    pub parallelism: usize,
    pub before: Census,
    pub after: Census,
    /// (cycles done, census) along the run, for the chart.
    pub samples: Vec<(usize, Census)>,
    pub took: Duration,
}

pub fn run(cycles: usize, pods: usize, parallelism: usize) -> Result<Soak> {
    eprintln!("soak: starting a private containerd with CRI");
    let cd = Containerd::start_cri();
    let hello = wasmbox_tests::repo_root().join("target/images/hello.tar");
    cd.import_tar(&hello);
    import_for_cri(&cd, &["hello", "http-echo"]);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs)?;
    let cri = Cri::connect(&cd.address);

    // The long-lived pod: a server, and a short container per CRI cycle.
    let home_config = Cri::pod_config("long-lived", &logs);
    let home = cri
        .run_pod_sandbox(&home_config)
        .map_err(|e| anyhow!("RunPodSandbox: {e}"))?;
    let server = Cri::container_config(
        "server",
        "docker.io/wasmbox/http-echo:latest",
        &["/app.wasm"],
    );
    let server = cri
        .create_container(&home, server, &home_config)
        .map_err(|e| anyhow!("CreateContainer server: {e}"))?;
    cri.start_container(&server)
        .map_err(|e| anyhow!("StartContainer server: {e}"))?;
    wait_for_log(&logs.join("server.log"), Duration::from_secs(60), |_, l| {
        l.contains("listening")
    });
    let pod_shim = cd
        .wasmbox_processes()
        .iter()
        .filter(|p| p.contains("containerd-shim-wasmbox-v1"))
        .find_map(|p| pid_of(p))
        .context("no shim for the long-lived pod")?;

    let ctr_cycle = |i: usize| -> Result<()> {
        let id = format!("soak-{i}");
        let out = cd.ctr_with_timeout(
            &[
                "run",
                "--rm",
                "--runtime",
                RUNTIME,
                "docker.io/wasmbox/hello:latest",
                &id,
            ],
            Duration::from_secs(120),
        );
        if !out.status.success() {
            bail!("ctr run {id}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let pod_cycle = |i: usize| -> Result<()> {
        let cri = Cri::connect(&cd.address);
        let name = format!("soak-pod-{i}");
        let config = Cri::pod_config(&name, &logs);
        let pod = cri
            .run_pod_sandbox(&config)
            .map_err(|e| anyhow!("RunPodSandbox {name}: {e}"))?;
        hello_in_pod(&cri, &pod, &config, &format!("hello-{i}"))?;
        cri.stop_pod_sandbox(&pod)
            .map_err(|e| anyhow!("StopPodSandbox {name}: {e}"))?;
        cri.remove_pod_sandbox(&pod)
            .map_err(|e| anyhow!("RemovePodSandbox {name}: {e}"))?;
        hello_in_pod(&cri, &home, &home_config, &format!("beside-{i}"))
    };

    // One of each first: the caches fill, the one-time allocations are made.
    ctr_cycle(usize::MAX)?;
    pod_cycle(usize::MAX)?;
    let settled = |cd: &Containerd| census(cd, pod_shim);
    let before = settled(&cd);
    let samples = std::sync::Mutex::new(vec![(0, before.clone())]);
    let every = (cycles / 10).max(1);
    let started = Instant::now();
    eprintln!("soak: {cycles} ctr cycles at parallelism {parallelism}");
    in_parallel(cycles, parallelism, ctr_cycle, |done| {
        if done % every == 0 {
            eprintln!("soak: {done} cycles");
            if let Ok(mut s) = samples.lock() {
                s.push((done, census(&cd, pod_shim)));
            }
        }
    })?;
    eprintln!("soak: {pods} pods through CRI at parallelism 4");
    let every = (pods / 5).max(1);
    in_parallel(pods, 4, pod_cycle, |done| {
        if done % every == 0 {
            let now = census(&cd, pod_shim);
            eprintln!("soak: {done} pods; pod shim RSS {} KiB", now[POD_SHIM_RSS]);
            if let Ok(mut s) = samples.lock() {
                s.push((cycles + done, now));
            }
        }
    })?;
    let took = started.elapsed();

    // Shims exit once their last container is gone, a moment after the
    // client returns: wait (at most a minute) for the counts to settle.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after = settled(&cd);
    while after["wasmbox processes (shims, runners)"] > before["wasmbox processes (shims, runners)"]
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        after = settled(&cd);
    }
    // Then the long-lived pod goes too, as a user would end it.
    cri.stop_container(&server, 10)
        .map_err(|e| anyhow!("StopContainer server: {e}"))?;
    cri.remove_container(&server)
        .map_err(|e| anyhow!("RemoveContainer server: {e}"))?;
    cri.stop_pod_sandbox(&home)
        .map_err(|e| anyhow!("StopPodSandbox: {e}"))?;
    cri.remove_pod_sandbox(&home)
        .map_err(|e| anyhow!("RemovePodSandbox: {e}"))?;
    let mut samples = samples
        .into_inner()
        .map_err(|_| anyhow!("samples poisoned"))?;
    samples.push((cycles + pods, after.clone()));
    Ok(Soak {
        cycles,
        pods,
        parallelism,
        before,
        after,
        samples,
        took,
    })
}

impl Soak {
    /// The rows whose growth is a leak: all but the cache's (bounded) size
    /// and the shim's RSS (reported, judged by its size).
    pub fn leaks(&self) -> Vec<String> {
        ROWS.iter()
            .filter(|row| !row.contains("wasm cache") && **row != POD_SHIM_RSS)
            .filter(|row| self.after[*row] > self.before[*row])
            .map(|row| format!("{row}: {} → {}", self.before[*row], self.after[*row]))
            .collect()
    }

    /// The Markdown of RESULTS.md's soak part, between the markers.
    pub fn markdown(&self, machine: &str, date: &str) -> String {
        let mut md = format!(
            "{BEGIN}\n## Soak: {} ctr cycles and {} pods\n\n",
            self.cycles, self.pods
        );
        md.push_str(&format!(
            "- Command: `make soak` (WASMBOX_SOAK_CYCLES={}, WASMBOX_SOAK_PODS={}, WASMBOX_SOAK_PARALLELISM={})\n- Machine: {machine}\n- Date: {date}; {:.0} s of cycles\n\n",
            self.cycles, self.pods, self.parallelism, self.took.as_secs_f64()
        ));
        md.push_str(&format!(
            "{} `ctr run --rm` of `hello` at parallelism {}, then {} pods through CRI at parallelism 4 (each: RunPodSandbox, a `hello` container run to its end, StopPodSandbox, RemovePodSandbox, and one more `hello` container in a long-lived pod that serves `http-echo` all along). Counted after one warm-up cycle of each, and again once the shims have exited.\n\n",
            self.cycles, self.parallelism, self.pods
        ));
        md.push_str("| resource | before | after | growth |\n|---|---|---|---|\n");
        for row in ROWS {
            let (b, a) = (self.before[row], self.after[row]);
            md.push_str(&format!(
                "| {row} | {b} | {a} | {} |\n",
                a as i64 - b as i64
            ));
        }
        let mut along: Vec<(usize, u64)> = self
            .samples
            .iter()
            .filter(|(done, _)| *done >= self.cycles)
            .map(|(done, census)| (done - self.cycles, census[POD_SHIM_RSS]))
            .collect();
        along.dedup_by_key(|(pods, _)| *pods);
        let along: Vec<String> = along
            .iter()
            .map(|(pods, kib)| format!("{pods} pods: {kib}"))
            .collect();
        md.push_str(&format!(
            "\n{POD_SHIM_RSS} along the pods (it serves one container per pod): {}. A leak grows with every pod; an allocator's settling does not.\n",
            along.join(", ")
        ));
        md.push_str("\n![counts along the soak](soak.svg)\n\n");
        md.push_str(&format!("{END}\n"));
        md
    }
}

/// RESULTS.md with its soak part replaced by `soak` (appended if absent).
pub fn splice(results: &str, soak: &str) -> String {
    match (results.find(BEGIN), results.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!(
                "{}{soak}{}",
                &results[..begin],
                &results[end + END.len()..].trim_start_matches('\n')
            )
        }
        _ => format!("{}\n{soak}", results.trim_end()),
    }
}

/// The soak part of an existing RESULTS.md, markers included.
pub fn existing_part(results: &str) -> Option<&str> {
    let begin = results.find(BEGIN)?;
    let end = results.find(END)?;
    (begin < end).then(|| &results[begin..end + END.len()])
}
