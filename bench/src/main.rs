//! `make bench`: wasmbox against runc, side by side, on one private
//! containerd (its CRI plugin on), written to `bench/RESULTS.md` with SVG
//! charts beside it.
//!
//! 1. Start time: `ctr run --rm` of `hello` (wasm) against a static musl
//!    `hello` in a scratch image run by runc, interleaved run by run.
//! 2. A large real program: the SQLite shell built for wasm32-wasip1, cold
//!    (compiled cache emptied) and cached starts.
//! 3. Idle memory under ctr: N `sleeper` containers, the PSS of every shim
//!    and its children, per container, against N runc containers of a
//!    static musl sleeper; rounds alternate, on 2.1 and on 1.6.
//! 4. Throughput: containers per second through containerd (create, start,
//!    wait, delete, as `ctr run --rm` does) at parallelism 1 and 8.
//! 5. wasi:http serving (see `http`).
//! 6. Pods through CRI: each call of a pod's life, and pods per second
//!    (see `pods`).
//! 7. Density: idle pods through CRI, PSS per pod (see `pods`).
//!
//! `wasmbox-bench first-start`, `wasmbox-bench http`, `wasmbox-bench idle`
//! (table 3 alone, on containerds of its own) and `wasmbox-bench pods` run
//! one part alone and print it (RESULTS.md is only written by a full run);
//! each but `idle` writes
//! containerd's log to `WASMBOX_BENCH_LOG` when it is set (at debug level
//! then; the bench runs containerd at a node's `info` otherwise). `wasmbox-bench
//! soak` (`make soak`) runs the soak (see `soak`) and writes its part of
//! RESULTS.md, which a full run keeps.
//!
//! Machines here are shared and noisy, so every table reports medians (and
//! min and max) and the wasmbox/runc ratio from the same run.
//!
//! Environment: `WASMBOX_BENCH_RUNS` (start-time runs per runtime, default
//! 20), `WASMBOX_BENCH_IDLE` (idle containers, default 200),
//! `WASMBOX_BENCH_ROUNDS` (rounds of memory, throughput and pod rates,
//! default 5), `WASMBOX_BENCH_JOBS` (containers per throughput
//! measurement, default 48), `WASMBOX_BENCH_PODS` (pod lives per runtime,
//! default 60), `WASMBOX_BENCH_DENSITY` (idle pods, default 500),
//! `WASMBOX_BENCH_DENSITY_ROUNDS` (default 3),
//! `WASMBOX_BENCH_HTTP_SECONDS` (seconds per wrk run, default 5) and
//! `WASMBOX_BENCH_HTTP_ROUNDS` (wrk runs per server and concurrency,
//! default 5).

mod charts;
mod cpu;
mod ctr_tables;
mod first_start;
mod http;
mod measure;
mod pods;
mod pods_tables;
mod report;
mod soak;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use wasmbox_tests::cri::import_tar_for_cri;
use wasmbox_tests::{repo_root, sample_wasm, Containerd};

/// An image for each side of a comparison.
pub struct Images {
    pub wasm_sqlite: String,
    pub runc_sqlite: String,
    pub wasm_yosys: String,
    pub wasm_hello: String,
    pub wasm_sleeper: String,
    pub wasm_http: String,
    pub runc_hello: String,
    pub runc_sleeper: String,
}

/// The sizes of a run, from the environment.
pub struct Sizes {
    pub runs: usize,
    pub big_runs: usize,
    pub idle: usize,
    pub rounds: usize,
    pub jobs: usize,
    pub pods: usize,
    pub density: usize,
    pub density_rounds: usize,
    pub http_seconds: u64,
    pub http_rounds: usize,
}

impl Sizes {
    fn from_env() -> Self {
        Self {
            runs: env_number("WASMBOX_BENCH_RUNS", 20).max(10),
            big_runs: env_number("WASMBOX_BENCH_BIG_RUNS", 3).max(1),
            idle: env_number("WASMBOX_BENCH_IDLE", 200),
            rounds: env_number("WASMBOX_BENCH_ROUNDS", 5).max(1),
            jobs: env_number("WASMBOX_BENCH_JOBS", 48),
            pods: env_number("WASMBOX_BENCH_PODS", 60).max(1),
            density: env_number("WASMBOX_BENCH_DENSITY", 500),
            density_rounds: env_number("WASMBOX_BENCH_DENSITY_ROUNDS", 3).max(1),
            http_seconds: env_number("WASMBOX_BENCH_HTTP_SECONDS", 5) as u64,
            http_rounds: env_number("WASMBOX_BENCH_HTTP_ROUNDS", 5).max(1),
        }
    }

    fn command(&self) -> String {
        format!(
            "WASMBOX_BENCH_RUNS={}, WASMBOX_BENCH_BIG_RUNS={}, WASMBOX_BENCH_IDLE={}, WASMBOX_BENCH_ROUNDS={}, WASMBOX_BENCH_JOBS={}, WASMBOX_BENCH_PODS={}, WASMBOX_BENCH_DENSITY={}, WASMBOX_BENCH_DENSITY_ROUNDS={}, WASMBOX_BENCH_HTTP_SECONDS={}, WASMBOX_BENCH_HTTP_ROUNDS={}",
            self.runs,
            self.big_runs,
            self.idle,
            self.rounds,
            self.jobs,
            self.pods,
            self.density,
            self.density_rounds,
            self.http_seconds,
            self.http_rounds
        )
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Builds the musl baselines with Debian's musl-gcc.
fn build_musl(name: &str, out_dir: &Path) -> Result<PathBuf> {
    let source = repo_root().join(format!("bench/native/{name}.c"));
    let out = out_dir.join(format!("{name}-musl"));
    let status = Command::new("musl-gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .context("musl-gcc (Debian's musl-tools) is needed for the runc baseline")?;
    if !status.success() {
        bail!("musl-gcc failed on {}", source.display());
    }
    Ok(out)
}

fn pack(binary: &Path, name: &str, entrypoint: &str, platform: &str, out: &Path) -> Result<()> {
    let status = Command::new(repo_root().join("target/release/wasmbox-image"))
        .arg("--wasm")
        .arg(binary)
        .args([
            "--name",
            name,
            "--entrypoint",
            entrypoint,
            "--platform",
            platform,
        ])
        .arg("--output")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("wasmbox-image failed for {name}");
    }
    Ok(())
}

/// Packs the images of both sides and imports them for ctr and for CRI
/// (with the pause image runc's pods need).
fn prepare_images(cd: &Containerd) -> Result<Images> {
    let work = cd.dir().join("bench-images");
    std::fs::create_dir_all(&work)?;
    let images = Images {
        wasm_sqlite: "docker.io/bench/sqlite-wasm:latest".into(),
        runc_sqlite: "docker.io/bench/sqlite-musl:latest".into(),
        wasm_yosys: "docker.io/bench/yosys-wasm:latest".into(),
        wasm_hello: "docker.io/bench/hello-wasm:latest".into(),
        wasm_sleeper: "docker.io/bench/sleeper-wasm:latest".into(),
        wasm_http: "docker.io/bench/http-hello-wasm:latest".into(),
        runc_hello: "docker.io/bench/hello-musl:latest".into(),
        runc_sleeper: "docker.io/bench/sleeper-musl:latest".into(),
    };
    let hello_musl = build_musl("hello", &work)?;
    let sleeper_musl = build_musl("sleeper", &work)?;
    let sqlite = repo_root().join("target/wasm/sqlite3.wasm");
    let sqlite_native = repo_root().join("target/native/sqlite3-musl");
    if !sqlite.is_file() || !sqlite_native.is_file() {
        bail!("the SQLite builds are missing: run bench/sqlite/build.sh (make bench does)");
    }
    let yosys = fetched("bench/fetch-yosys.sh")?;
    let wasm = "wasi/wasm";
    let native = "linux/amd64";
    let packs = [
        (yosys, &images.wasm_yosys, "/yosys.wasm", wasm),
        (sqlite, &images.wasm_sqlite, "/sqlite3.wasm", wasm),
        (sqlite_native, &images.runc_sqlite, "/sqlite3", native),
        (sample_wasm("hello"), &images.wasm_hello, "/app.wasm", wasm),
        (
            sample_wasm("sleeper"),
            &images.wasm_sleeper,
            "/app.wasm",
            wasm,
        ),
        (
            sample_wasm("http-hello"),
            &images.wasm_http,
            "/app.wasm",
            wasm,
        ),
        (hello_musl, &images.runc_hello, "/hello", native),
        (sleeper_musl, &images.runc_sleeper, "/sleeper", native),
    ];
    for (i, (binary, name, entrypoint, platform)) in packs.iter().enumerate() {
        let tar = work.join(format!("image-{i}.tar"));
        pack(binary, name, entrypoint, platform, &tar)?;
        cd.import_tar(&tar);
        import_tar_for_cri(cd, &tar, name);
    }
    import_tar_for_cri(cd, &repo_root().join("target/images/pause.tar"), "pause");
    Ok(images)
}

/// What a fetch script (`bench/fetch-*.sh`) fetched or built: the path it
/// prints.
fn fetched(script: &str) -> Result<PathBuf> {
    let out = Command::new(repo_root().join(script))
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {script}"))?;
    if !out.status.success() {
        bail!("{script} failed");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The wasmtime CLI, built by `bench/fetch-wasmtime.sh`.
fn wasmtime_cli() -> Result<PathBuf> {
    fetched("bench/fetch-wasmtime.sh")
}

/// `make soak`: the soak, its part of RESULTS.md and its chart.
fn run_soak() -> Result<()> {
    let cycles = env_number("WASMBOX_SOAK_CYCLES", 10_000);
    let pods = env_number("WASMBOX_SOAK_PODS", 1_000);
    let parallelism = env_number("WASMBOX_SOAK_PARALLELISM", 8).max(1);
    let out_dir = repo_root().join("bench");
    let soak = soak::run(cycles, pods, parallelism)?;
    charts::soak(&out_dir.join("soak.svg"), &soak.samples)?;
    let part = soak.markdown(&report::machine(), &report::date());
    print!("{part}");
    let results = out_dir.join("RESULTS.md");
    let previous = std::fs::read_to_string(&results).unwrap_or_default();
    std::fs::write(&results, soak::splice(&previous, &part))?;
    let leaks = soak.leaks();
    if !leaks.is_empty() {
        bail!("the soak left more than it found: {}", leaks.join("; "));
    }
    Ok(())
}

/// containerd's log level in the bench: a node's default, `info`. Its
/// `debug` level, which the tests use, formats every container's whole spec
/// into the log and costs containerd CPU on both sides; `WASMBOX_BENCH_LOG`
/// asks for it, to see where a pod's time goes, not to measure.
fn containerd_log_level() -> &'static str {
    if std::env::var_os("WASMBOX_BENCH_LOG").is_some() {
        "debug"
    } else {
        "info"
    }
}

/// containerd's debug log (the shims' lines with it), to see where the
/// time of a part went: written to `WASMBOX_BENCH_LOG` when it is set (see
/// containerd_log_level).
fn write_log_if_asked(cd: &Containerd) -> Result<()> {
    if let Ok(path) = std::env::var("WASMBOX_BENCH_LOG") {
        std::fs::write(&path, cd.log()).with_context(|| format!("cannot write {path}"))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    // Read by scripts/private-containerd.sh, for every containerd below.
    std::env::set_var("WASMBOX_CONTAINERD_LOG_LEVEL", containerd_log_level());
    let sizes = Sizes::from_env();
    let out_dir = repo_root().join("bench");
    let part = std::env::args().nth(1);
    match part.as_deref() {
        Some("soak") => return run_soak(),
        Some("http") => {
            let wasmtime = wasmtime_cli()?;
            let cd = Containerd::start_cri();
            let images = prepare_images(&cd)?;
            print!("{}", http::run(&cd, &images, &wasmtime, &sizes)?);
            return write_log_if_asked(&cd);
        }
        Some("pods") => {
            let cd = Containerd::start_cri();
            let images = prepare_images(&cd)?;
            print!("{}", pods_tables::run(&cd, &images, &sizes, &out_dir)?);
            return write_log_if_asked(&cd);
        }
        Some("first-start") => {
            let cd = Containerd::start_cri();
            let images = prepare_images(&cd)?;
            let (hello, _) =
                measure::start_times(&cd, &images.wasm_hello, &images.runc_hello, sizes.runs)?;
            let big = first_start::BigPrograms::measure(&cd, &images, &sizes)?;
            print!("{}", big.markdown(&measure::Stats::of(&hello), &sizes));
            return write_log_if_asked(&cd);
        }
        Some("idle") => {
            // Each containerd of its own, one after the other.
            let on_2_1 = ctr_tables::idle_memory_on("2.1", &sizes)?;
            let on_1_6 = ctr_tables::idle_memory_on("1.6", &sizes)?;
            ctr_tables::idle_chart(&out_dir, &sizes, &on_2_1)?;
            print!("{}", ctr_tables::idle_section(&sizes, [&on_2_1, &on_1_6]));
            return Ok(());
        }
        Some(other) => {
            bail!("unknown part {other:?}: use first-start, http, idle, pods or soak, or nothing")
        }
        None => {}
    }

    // Idle memory on containerd 1.6 first, on a containerd of its own.
    let on_1_6 = ctr_tables::idle_memory_on("1.6", &sizes)?;
    eprintln!("bench: starting a private containerd");
    let cd = Containerd::start_cri();
    let images = prepare_images(&cd)?;
    let versions = report::Versions::of(&cd)?;
    let wasmtime = wasmtime_cli()?;

    let mut md = String::new();
    md.push_str("# wasmbox benchmarks\n\n");
    md.push_str(&format!("- Command: `make bench` ({})\n", sizes.command()));
    md.push_str(&format!("- Machine: {}\n", report::machine()));
    md.push_str(&format!("- Date: {}\n", report::date()));
    md.push_str(&format!(
        "- containerd {} (Debian) with its CRI plugin on, runc {} (Debian bookworm's: the newest Debian runc that runs on this machine's glibc 2.36; sid's 1.3 needs glibc 2.38). runc 1.1 copies itself into a memfd at every start, which 1.2 and later do not: that flatters wasmbox's start times. Both runtimes on the same private containerd (log level `{}`), in one run; wasmbox on wasmtime {}.\n",
        versions.containerd, versions.runc, containerd_log_level(), versions.wasmtime
    ));
    md.push_str("- Shared, noisy machine: read medians and ratios, not single numbers.\n\n");
    md.push_str(&ctr_tables::run(&cd, &images, &sizes, &out_dir, &on_1_6)?);
    md.push_str(&http::run(&cd, &images, &wasmtime, &sizes)?);
    md.push_str(&pods_tables::run(&cd, &images, &sizes, &out_dir)?);

    let previous = std::fs::read_to_string(out_dir.join("RESULTS.md")).unwrap_or_default();
    if let Some(part) = soak::existing_part(&previous) {
        md.push('\n');
        md.push_str(part);
        md.push('\n');
    }
    std::fs::write(out_dir.join("RESULTS.md"), &md)?;
    print!("{md}");
    Ok(())
}
