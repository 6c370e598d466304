//! Tables 1 to 4, through `ctr`: start time, large programs' first starts
//! (see [`crate::first_start`]), idle memory per container (on 2.1 and on 1.6) and
//! containers per second.

use std::path::Path;

use anyhow::Result;
use wasmbox_tests::{Containerd, RUNTIME};

use crate::measure::{idle_memory, start_times, throughput, Memory, Stats};
use crate::report::{timing_row, Spread};
use crate::{charts, first_start, prepare_images, Images, Sizes};

/// Idle-memory rounds of one containerd: (its version, wasmbox's rounds,
/// runc's rounds).
pub type IdleRounds = (String, Vec<Memory>, Vec<Memory>);

/// `rounds` alternating rounds of `idle` containers of each side, on `cd`.
fn idle_rounds(
    cd: &Containerd,
    images: &Images,
    sizes: &Sizes,
) -> Result<(Vec<Memory>, Vec<Memory>)> {
    let (mut wasm, mut runc) = (Vec::new(), Vec::new());
    for round in 0..sizes.rounds {
        // Each side goes first every other round.
        let wasm_first = round % 2 == 0;
        for side_is_wasm in [wasm_first, !wasm_first] {
            if side_is_wasm {
                wasm.push(idle_memory(
                    cd,
                    &images.wasm_sleeper,
                    Some(RUNTIME),
                    sizes.idle,
                    "wasmbox",
                )?);
            } else {
                runc.push(idle_memory(
                    cd,
                    &images.runc_sleeper,
                    None,
                    sizes.idle,
                    "runc",
                )?);
            }
        }
    }
    Ok((wasm, runc))
}

/// Idle memory on a private containerd `version` of its own.
pub fn idle_memory_on(version: &str, sizes: &Sizes) -> Result<IdleRounds> {
    eprintln!("bench: idle memory on containerd {version}");
    let cd = Containerd::start_version(version, false);
    let images = prepare_images(&cd)?;
    let measured = crate::report::Versions::of(&cd)?.containerd;
    let (wasm, runc) = idle_rounds(&cd, &images, sizes)?;
    Ok((measured, wasm, runc))
}

fn per_container_mib(rounds: &[Memory]) -> Spread {
    Spread::of(
        &rounds
            .iter()
            .map(|m| m.per_container_kib() / 1024.0)
            .collect::<Vec<_>>(),
    )
}

pub fn run(
    cd: &Containerd,
    images: &Images,
    sizes: &Sizes,
    out_dir: &Path,
    other: &IdleRounds,
) -> Result<String> {
    let runs = sizes.runs;
    eprintln!("bench: start time, {runs} runs each");
    let (wasm_starts, runc_starts) = start_times(cd, &images.wasm_hello, &images.runc_hello, runs)?;
    let wasm_start = Stats::of(&wasm_starts);
    let runc_start = Stats::of(&runc_starts);

    let big = first_start::BigPrograms::measure(cd, images, sizes)?;
    eprintln!(
        "bench: idle memory, {} rounds of {} containers each",
        sizes.rounds, sizes.idle
    );
    let (wasm_mem, runc_mem) = idle_rounds(cd, images, sizes)?;

    eprintln!(
        "bench: throughput, {} rounds of {} containers",
        sizes.rounds, sizes.jobs
    );
    let mut rates = Vec::new();
    for parallelism in [1, 8] {
        let (mut wasm, mut runc) = (Vec::new(), Vec::new());
        for _ in 0..sizes.rounds {
            wasm.push(throughput(
                cd,
                &images.wasm_hello,
                Some(RUNTIME),
                sizes.jobs,
                parallelism,
            )?);
            runc.push(throughput(
                cd,
                &images.runc_hello,
                None,
                sizes.jobs,
                parallelism,
            )?);
        }
        rates.push((parallelism, Spread::of(&wasm), Spread::of(&runc)));
    }

    charts::start_times(&out_dir.join("start-time.svg"), &wasm_starts, &runc_starts)?;

    let mut md = String::new();
    md.push_str("## 1. Start time: `ctr run --rm` of hello\n\n");
    md.push_str("wasmbox runs the Rust `hello` (wasm32-wasip1) image; runc runs a static musl `hello` (Debian's musl-gcc) from a scratch image. Runs alternate between the two; each side had one warm-up run first (which fills wasmbox's compiled cache).\n\n");
    md.push_str("| runtime | median ms | min ms | max ms | runs |\n|---|---|---|---|---|\n");
    md.push_str(&timing_row("wasmbox", &wasm_start));
    md.push_str(&timing_row("runc", &runc_start));
    md.push_str(&format!(
        "| **ratio wasmbox/runc** | **{:.2}** | | | |\n\n![start time distributions](start-time.svg)\n\n",
        wasm_start.median.as_secs_f64() / runc_start.median.as_secs_f64()
    ));

    md.push_str(&big.markdown(&wasm_start, sizes));
    let here: IdleRounds = (
        crate::report::Versions::of(cd)?.containerd,
        wasm_mem,
        runc_mem,
    );
    idle_chart(out_dir, sizes, &here)?;
    md.push_str(&idle_section(sizes, [&here, other]));

    md.push_str(&format!(
        "## 4. Throughput: {} × create → start → wait → delete\n\n",
        sizes.jobs
    ));
    md.push_str(&format!("Each container is one `ctr run --rm` of hello; `parallelism` of them run at a time. {} rounds per runtime, alternating (each side first every other round): median (min–max).\n\n", sizes.rounds));
    md.push_str("| parallelism | wasmbox containers/s | runc containers/s | ratio wasmbox/runc |\n|---|---|---|---|\n");
    for (parallelism, wasm, runc) in &rates {
        md.push_str(&format!(
            "| {parallelism} | {} | {} | **{:.2}** |\n",
            wasm.show(1),
            runc.show(1),
            wasm.median / runc.median
        ));
    }
    md.push('\n');
    Ok(md)
}

/// The chart of table 3, of the rounds on `rounds`' containerd.
pub fn idle_chart(out_dir: &Path, sizes: &Sizes, rounds: &IdleRounds) -> Result<()> {
    let (wasm_mib, runc_mib) = (per_container_mib(&rounds.1), per_container_mib(&rounds.2));
    charts::memory(
        &out_dir.join("idle-memory.svg"),
        &format!("PSS per idle container ({} containers, ctr)", sizes.idle),
        "MiB per container (shim + its descendants)",
        [wasm_mib.median, runc_mib.median],
    )
}

/// Table 3: idle memory per container under ctr, one pair of rows per
/// containerd.
pub fn idle_section(sizes: &Sizes, rows: [&IdleRounds; 2]) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "## 3. Idle memory: {} sleeper containers under ctr\n\n",
        sizes.idle
    ));
    md.push_str(&format!("PSS (proportional set size: shared pages are split between the processes that map them) of every shim process and all its descendants (wasmbox: the runner, which in a PID namespace is two processes, the guest's and its parent; runc: the container's process), summed and divided by the number of containers. {} rounds per runtime, alternating (each side first every other round): the median per container, with min and max. Not counted, on either side: containerd itself, and kernel memory (page tables, cgroups, namespaces, sockets).\n\n", sizes.rounds));
    md.push_str("| containerd | runtime | MiB per container, median (min–max) | processes per container | ratio wasmbox/runc |\n|---|---|---|---|---|\n");
    for (version, wasm, runc) in rows {
        let (w, r) = (per_container_mib(wasm), per_container_mib(runc));
        let processes = |m: &[Memory]| {
            m.first()
                .map(|m| m.processes as f64 / m.containers.max(1) as f64)
                .unwrap_or(0.0)
        };
        md.push_str(&format!(
            "| {version} | wasmbox | {} | {:.1} | **{:.2}** |\n| {version} | runc | {} | {:.1} | |\n",
            w.show(2),
            processes(wasm),
            w.median / r.median,
            r.show(2),
            processes(runc)
        ));
    }
    md.push_str("\n![idle memory per container](idle-memory.svg)\n\n");
    md
}
