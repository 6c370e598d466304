//! Table 2: the first start of a large module on a node, before (the
//! optimizing compile inside the start) and after (baseline code first,
//! the optimized compile beside the container), the cached start, and
//! the run time of a heavy query on each tier, under `ctr`.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use wasmbox_tests::{repo_root, Containerd, RUNTIME};

use crate::measure::{timed_ctr_run, timed_run, timed_run_with, Stats};
use crate::report::timing_row;
use crate::{Images, Sizes};

/// How long the bench waits for an optimized compile to be stored.
const OPTIMIZED_WITHIN: Duration = Duration::from_secs(900);

/// The runs of one program.
pub struct FirstStarts {
    /// First starts with `WASMBOX_TIERED_COMPILE=off`: what every first
    /// start was before tiering.
    pub optimizing: Vec<Duration>,
    /// First starts on baseline code (the default).
    pub tiered: Vec<Duration>,
    /// From the start of a tiered first start until its optimized compile
    /// was stored (the shim's compile process exited).
    pub optimized_after: Vec<Duration>,
    /// Starts once the optimized code is in the cache.
    pub cached: Vec<Duration>,
}

/// A program to start: its image, entrypoint and args.
pub struct Program<'a> {
    pub image: &'a str,
    pub entrypoint: &'a str,
    pub args: &'a [&'a str],
}

impl Program<'_> {
    fn run(&self, cd: &Containerd, flags: &[&str], id: &str) -> Result<Duration> {
        let args: Vec<&str> = std::iter::once(self.entrypoint)
            .chain(self.args.iter().copied())
            .collect();
        timed_ctr_run(cd, flags, self.image, Some(RUNTIME), id, &args)
    }
}

/// `runs` rounds of: an optimizing first start, a tiered first start,
/// the wait for its optimized code, and a cached start. Each first start
/// has the compiled cache emptied first, once no compile is running.
/// Ends with the cache holding the optimized module.
pub fn measure(cd: &Containerd, program: &Program<'_>, runs: usize) -> Result<FirstStarts> {
    let label = program.image.rsplit('/').next().unwrap_or("big");
    let label = label.replace(':', "-");
    let mut starts = FirstStarts {
        optimizing: Vec::new(),
        tiered: Vec::new(),
        optimized_after: Vec::new(),
        cached: Vec::new(),
    };
    for i in 0..runs {
        empty_cache(cd)?;
        starts.optimizing.push(program.run(
            cd,
            &["--env", "WASMBOX_TIERED_COMPILE=off"],
            &format!("{label}-optimizing-{i}"),
        )?);
        empty_cache(cd)?;
        let began = Instant::now();
        starts
            .tiered
            .push(program.run(cd, &[], &format!("{label}-tiered-{i}"))?);
        wait_for_compiles(OPTIMIZED_WITHIN)?;
        starts.optimized_after.push(began.elapsed());
        starts
            .cached
            .push(program.run(cd, &[], &format!("{label}-cached-{i}"))?);
    }
    Ok(starts)
}

/// A heavy run of a program on each tier: baseline code (its first
/// start, with `WASMBOX_TIERED_COMPILE=on`), then optimized code (cached).
/// Returns (baseline, optimized) start-to-exit times.
pub fn run_times(
    cd: &Containerd,
    program: &Program<'_>,
    runs: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut baseline, mut optimized) = (Vec::new(), Vec::new());
    for i in 0..runs {
        empty_cache(cd)?;
        baseline.push(program.run(
            cd,
            &["--env", "WASMBOX_TIERED_COMPILE=on"],
            &format!("heavy-baseline-{i}"),
        )?);
        wait_for_compiles(OPTIMIZED_WITHIN)?;
        optimized.push(program.run(cd, &[], &format!("heavy-optimized-{i}"))?);
    }
    Ok((baseline, optimized))
}

/// Waits for running optimized compiles, then empties the compiled cache.
fn empty_cache(cd: &Containerd) -> Result<()> {
    wait_for_compiles(OPTIMIZED_WITHIN)?;
    for entry in std::fs::read_dir(&cd.cache_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_file(entry.path());
    }
    Ok(())
}

/// Waits until no `wasmbox-runner --optimize` runs (each is done or was
/// never started), polling /proc, for at most `within`.
pub fn wait_for_compiles(within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while compiles_running() {
        if Instant::now() > deadline {
            bail!(
                "an optimized compile still runs after {} s",
                within.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn compiles_running() -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .any(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let mut words = cmdline.split(|b| *b == 0);
            let runner = words
                .next()
                .is_some_and(|exe| exe.ends_with(b"wasmbox-runner"));
            runner && words.next() == Some(b"--optimize".as_slice())
        })
}

/// The markdown rows of one program's first starts.
pub fn table(name: &str, starts: &FirstStarts, extra: &[(&str, &Stats)]) -> String {
    let optimizing = Stats::of(&starts.optimizing);
    let tiered = Stats::of(&starts.tiered);
    let after = Stats::of(&starts.optimized_after);
    let cached = Stats::of(&starts.cached);
    let mut md =
        String::from("| start | median ms | min ms | max ms | runs |\n|---|---|---|---|---|\n");
    md.push_str(&timing_row(
        &format!("{name}, first start, before: optimizing compile (`WASMBOX_TIERED_COMPILE=off`)"),
        &optimizing,
    ));
    md.push_str(&timing_row(
        &format!("{name}, first start, after: baseline code (default)"),
        &tiered,
    ));
    md.push_str(&timing_row(
        &format!("{name}: optimized code in the cache, from the first start's beginning"),
        &after,
    ));
    md.push_str(&timing_row(
        &format!("{name}, second start: optimized code from the cache"),
        &cached,
    ));
    for (row, stats) in extra {
        md.push_str(&timing_row(row, stats));
    }
    md.push_str(&format!(
        "| **ratio first start after / before** | **{:.2}** | {:.2} | {:.2} | |\n| ratio first start before / second start | {:.1} | | | |\n\n",
        ratio(tiered.median, optimizing.median),
        ratio(tiered.min, optimizing.max),
        ratio(tiered.max, optimizing.min),
        ratio(optimizing.median, cached.median),
    ));
    md
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// Table 2's measurements: SQLite and yosys first, second and heavy starts.
pub struct BigPrograms {
    sqlite: FirstStarts,
    sqlite_native: Vec<Duration>,
    yosys: FirstStarts,
    heavy_baseline: Vec<Duration>,
    heavy_optimized: Vec<Duration>,
    heavy_native: Vec<Duration>,
    sqlite_size: u64,
    yosys_size: u64,
}

/// A light and a heavy SQLite query: the first mostly starts, the second
/// mostly runs (a recursive count to a million).
const SQLITE_LIGHT: &str =
    "create table t(x); insert into t values (1),(2),(39); select sum(x) from t;";
const SQLITE_HEAVY: &str =
    "with recursive c(x) as (select 1 union all select x+1 from c where x<1000000) select sum(x) from c;";

impl BigPrograms {
    pub fn measure(cd: &Containerd, images: &Images, sizes: &Sizes) -> Result<Self> {
        let runs = sizes.big_runs;
        eprintln!("bench: first starts of SQLite and yosys, {runs} rounds each");
        let light = [":memory:", SQLITE_LIGHT];
        let heavy = [":memory:", SQLITE_HEAVY];
        let sqlite = Program {
            image: &images.wasm_sqlite,
            entrypoint: "/sqlite3.wasm",
            args: &light,
        };
        let sqlite_starts = measure(cd, &sqlite, runs)?;
        let native = |args: &[&str], label: &str| -> Result<Vec<Duration>> {
            let args: Vec<&str> = std::iter::once("/sqlite3")
                .chain(args.iter().copied())
                .collect();
            (0..runs)
                .map(|i| {
                    timed_run_with(
                        cd,
                        &images.runc_sqlite,
                        None,
                        &format!("{label}-{i}"),
                        &args,
                    )
                })
                .collect()
        };
        let sqlite_native = native(&light, "sqlite-native")?;
        let yosys = Program {
            image: &images.wasm_yosys,
            entrypoint: "/yosys.wasm",
            args: &["-p", "help"],
        };
        let yosys_starts = measure(cd, &yosys, runs)?;
        eprintln!("bench: a heavy SQLite query on each tier, {runs} rounds");
        let heavy_sqlite = Program {
            image: &images.wasm_sqlite,
            entrypoint: "/sqlite3.wasm",
            args: &heavy,
        };
        let (heavy_baseline, heavy_optimized) = run_times(cd, &heavy_sqlite, runs)?;
        let heavy_native = native(&heavy, "heavy-native")?;
        // The cold loops emptied the whole cache: hello compiles again here,
        // not inside the timings that follow.
        timed_run(cd, &images.wasm_hello, Some(RUNTIME), "rewarm-hello")?;
        Ok(BigPrograms {
            sqlite: sqlite_starts,
            sqlite_native,
            yosys: yosys_starts,
            heavy_baseline,
            heavy_optimized,
            heavy_native,
            sqlite_size: std::fs::metadata(repo_root().join("target/wasm/sqlite3.wasm"))?.len(),
            yosys_size: std::fs::metadata(crate::fetched("bench/fetch-yosys.sh")?)?.len(),
        })
    }

    pub fn markdown(&self, hello: &Stats, sizes: &Sizes) -> String {
        let mib = |bytes: u64| bytes as f64 / 1048576.0;
        let mut md =
            String::from("## 2. Large real programs: first start, second start, run time\n\n");
        md.push_str(&format!(
            "The first start of a module on a node has nothing in the compiled cache. Before, it waited for Cranelift's optimizing compile (the rows *before*, run with `WASMBOX_TIERED_COMPILE=off`). Now a core module of at least 1 MiB starts on code from Winch, wasmtime's baseline compiler, and the shim has the optimized code compiled beside the container (`wasmbox-runner --optimize`: in the shim's cgroup at SCHED_IDLE, confined) into the cache for every later start (see `runtime/src/tiered.rs`). Each round: the cache emptied once no compile runs, a *before* start, the cache emptied, an *after* start, the wait until its optimized code is stored, a second start. {} rounds, all through `ctr run --rm`.\n\n",
            sizes.big_runs
        ));
        md.push_str(&format!(
            "SQLite 3.40.1's shell (Debian's source, `bench/sqlite/build.sh`, wasm32-wasip1 with Debian's clang 14 and wasi-libc): {:.1} MiB of wasm, run with `:memory:` and a query that creates a table, inserts and sums.\n\n",
            mib(self.sqlite_size)
        ));
        let native = Stats::of(&self.sqlite_native);
        md.push_str(&table(
            "SQLite",
            &self.sqlite,
            &[
                ("runc: SQLite, static musl", &native),
                ("wasmbox: hello (table 1)", hello),
            ],
        ));
        md.push_str(&format!(
            "yosys 0.55 for WASI (the npm package `@yowasp/yosys`, `bench/fetch-yosys.sh`): {:.1} MiB of C++ compiled to wasm32-wasip1, run as `yosys -p help`.\n\n",
            mib(self.yosys_size)
        ));
        md.push_str(&table("yosys", &self.yosys, &[]));
        let (baseline, optimized, native) = (
            Stats::of(&self.heavy_baseline),
            Stats::of(&self.heavy_optimized),
            Stats::of(&self.heavy_native),
        );
        md.push_str("Run time on each tier: SQLite counting to a million with a recursive query (`ctr run --rm`, start to exit). Baseline code is a first start with `WASMBOX_TIERED_COMPILE=on`; optimized code is the cached start after it.\n\n");
        md.push_str(
            "| SQLite, heavy query | median ms | min ms | max ms | runs |\n|---|---|---|---|---|\n",
        );
        md.push_str(&timing_row(
            "wasmbox: baseline code (first start)",
            &baseline,
        ));
        md.push_str(&timing_row("wasmbox: optimized code (cached)", &optimized));
        md.push_str(&timing_row("runc: static musl", &native));
        md.push_str(&format!(
            "| ratio baseline / optimized | {:.2} | | | |\n| ratio optimized / runc | {:.2} | | | |\n\n",
            baseline.median.as_secs_f64() / optimized.median.as_secs_f64(),
            optimized.median.as_secs_f64() / native.median.as_secs_f64()
        ));
        md
    }
}
