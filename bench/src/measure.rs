//! The measurements: start times, idle memory (PSS) and throughput, each
//! driven through `ctr` against the private containerd.

use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use wasmbox_tests::Containerd;

/// Median, min and max of a set of durations.
pub struct Stats {
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
    pub count: usize,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        };
        Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            count: n,
        }
    }
}

/// One `ctr run --rm` of `image`, timed; fails unless it exits 0.
pub fn timed_run(
    cd: &Containerd,
    image: &str,
    runtime: Option<&str>,
    id: &str,
) -> Result<Duration> {
    timed_run_with(cd, image, runtime, id, &[])
}

/// Like `timed_run`, with the container's args after the id.
pub fn timed_run_with(
    cd: &Containerd,
    image: &str,
    runtime: Option<&str>,
    id: &str,
    guest_args: &[&str],
) -> Result<Duration> {
    timed_ctr_run(cd, &[], image, runtime, id, guest_args)
}

/// Like `timed_run_with`, with `ctr run` flags (`--env A=B`) before the image.
pub fn timed_ctr_run(
    cd: &Containerd,
    flags: &[&str],
    image: &str,
    runtime: Option<&str>,
    id: &str,
    guest_args: &[&str],
) -> Result<Duration> {
    let mut args = vec!["run", "--rm"];
    if let Some(runtime) = runtime {
        args.extend(["--runtime", runtime]);
    }
    args.extend_from_slice(flags);
    args.extend([image, id]);
    args.extend_from_slice(guest_args);
    let started = Instant::now();
    let out = cd.ctr_with_timeout(&args, Duration::from_secs(120));
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "ctr run {image} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// `runs` start times of each image, alternating, after one warm-up each.
pub fn start_times(
    cd: &Containerd,
    wasm_image: &str,
    runc_image: &str,
    runs: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    timed_run(cd, wasm_image, Some(wasmbox_tests::RUNTIME), "warm-wasm")?;
    timed_run(cd, runc_image, None, "warm-runc")?;
    let mut wasm = Vec::with_capacity(runs);
    let mut runc = Vec::with_capacity(runs);
    for i in 0..runs {
        wasm.push(timed_run(
            cd,
            wasm_image,
            Some(wasmbox_tests::RUNTIME),
            &format!("start-wasm-{i}"),
        )?);
        runc.push(timed_run(cd, runc_image, None, &format!("start-runc-{i}"))?);
    }
    Ok((wasm, runc))
}

/// The PSS of a set of idle containers.
pub struct Memory {
    pub total_kib: u64,
    pub containers: usize,
    pub processes: usize,
    /// Per program (`/proc/PID/comm`): its processes and their PSS, KiB.
    pub by_program: std::collections::BTreeMap<String, (usize, u64)>,
}

impl Memory {
    /// The PSS of `pids`, which are the processes of `containers` idle
    /// containers (or pods).
    pub fn of(pids: &[u32], containers: usize) -> Result<Self> {
        let mut by_program = std::collections::BTreeMap::new();
        let mut total_kib = 0;
        for pid in pids {
            let pss = pss_kib(*pid)?;
            let program = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .with_context(|| format!("cannot read /proc/{pid}/comm"))?;
            let entry = by_program
                .entry(program.trim().to_string())
                .or_insert((0, 0));
            entry.0 += 1;
            entry.1 += pss;
            total_kib += pss;
        }
        Ok(Memory {
            total_kib,
            containers,
            processes: pids.len(),
            by_program,
        })
    }

    pub fn per_container_kib(&self) -> f64 {
        self.total_kib as f64 / self.containers.max(1) as f64
    }

    /// `program: N processes, K KiB per container` for each program.
    pub fn breakdown(&self) -> String {
        let per = self.containers.max(1) as f64;
        self.by_program
            .iter()
            .map(|(program, (processes, kib))| {
                format!(
                    "`{program}` {:.2} processes, {:.0} KiB",
                    *processes as f64 / per,
                    *kib as f64 / per
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The PSS of process `pid`; an error, never 0, when it cannot be read.
fn pss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let rollup = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    rollup
        .lines()
        .find_map(|l| {
            l.strip_prefix("Pss:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .with_context(|| format!("{path} has no Pss line"))
}

/// The fields of /proc/PID/stat from field 3 (the state) on: field `n`
/// of proc(5) is at index `n - 3`. The command before them may hold
/// spaces and parentheses; they follow the last ')'.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn parent_pid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(4 - 3)?.parse().ok()
}

/// Shims of this containerd whose binary name contains `shim`, and all
/// their descendants.
pub fn shim_family(cd: &Containerd, shim: &str) -> Vec<u32> {
    let address = format!("-address {}", cd.address.display());
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let shims: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(shim) && cmdline.contains(&address)
        })
        .collect();
    // Every descendant: a wasmbox runner in a PID namespace forks, and
    // its child (the guest) is the shim's grandchild.
    let parents: Vec<(u32, Option<u32>)> = pids.iter().map(|p| (*p, parent_pid(*p))).collect();
    let mut family = shims;
    let mut i = 0;
    while i < family.len() {
        let parent = family[i];
        family.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == Some(parent))
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    family
}

/// Starts `count` detached containers of `image`, sums the PSS of their
/// shims and children, then removes them all.
pub fn idle_memory(
    cd: &Containerd,
    image: &str,
    runtime: Option<&str>,
    count: usize,
    label: &str,
) -> Result<Memory> {
    let ids: Vec<String> = (0..count).map(|i| format!("idle-{label}-{i}")).collect();
    for id in &ids {
        let mut args = vec!["run", "-d"];
        if let Some(runtime) = runtime {
            args.extend(["--runtime", runtime]);
        }
        args.extend([image, id.as_str()]);
        let out = cd.ctr_with_timeout(&args, Duration::from_secs(120));
        if !out.status.success() {
            bail!("ctr run -d {id}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let shim = if runtime.is_some() {
        "containerd-shim-wasmbox-v1"
    } else {
        "containerd-shim-runc-v2"
    };
    let memory = Memory::of(&shim_family(cd, shim), count);
    remove_all(cd, &ids);
    memory
}

/// Kills and deletes the given containers, a few at a time.
fn remove_all(cd: &Containerd, ids: &[String]) {
    std::thread::scope(|s| {
        for chunk in ids.chunks(ids.len().div_ceil(8).max(1)) {
            s.spawn(move || {
                for id in chunk {
                    let _ = cd.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
                    // Retry until the kill has landed and the task stopped.
                    let mut deleted = false;
                    for _ in 0..200 {
                        if cd.ctr(&["task", "delete", id]).status.success() {
                            deleted = true;
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    if !deleted {
                        eprintln!("bench: could not delete task {id}");
                    }
                    let _ = cd.ctr(&["container", "delete", id]);
                }
            });
        }
    });
}

/// Containers per second for `jobs` runs of `image`, `parallelism` at a time.
pub fn throughput(
    cd: &Containerd,
    image: &str,
    runtime: Option<&str>,
    jobs: usize,
    parallelism: usize,
) -> Result<f64> {
    let label = if runtime.is_some() { "wasm" } else { "runc" };
    let started = Instant::now();
    in_parallel(
        jobs,
        parallelism,
        |i| timed_run(cd, image, runtime, &format!("tp-{label}-{parallelism}-{i}")).map(|_| ()),
        |_| {},
    )?;
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

/// Runs `job(0..jobs)` on `parallelism` threads, calling `tick(done)` after
/// each; the first error ends it.
pub fn in_parallel(
    jobs: usize,
    parallelism: usize,
    job: impl Fn(usize) -> Result<()> + Sync,
    tick: impl Fn(usize) + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..parallelism.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= jobs || failed.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        if let Err(e) = job(i) {
                            failed.store(true, Ordering::SeqCst);
                            return Err(e);
                        }
                        tick(done.fetch_add(1, Ordering::SeqCst) + 1);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow!("a worker panicked"))?)
    })
}
