//! Tables 6 and 7, through CRI: each call of a pod's life (p50 and p99)
//! with pods per second, and the PSS per idle pod at density.

use std::path::Path;

use anyhow::Result;
use wasmbox_tests::Containerd;

use crate::cpu::CpuUsed;
use crate::pods::{density, pod_lives, pods_per_second, quantile, PodTimes, Side, CALLS};
use crate::report::{ms, Spread};
use crate::{charts, Images, Sizes};

fn sides(images: &Images) -> [Side; 2] {
    [
        Side {
            label: "wasmbox",
            handler: "wasmbox",
            shim: "containerd-shim-wasmbox-v1",
            short: (images.wasm_hello.clone(), vec!["/app.wasm".into()]),
            idle: (images.wasm_sleeper.clone(), vec!["/app.wasm".into()]),
        },
        Side {
            label: "runc",
            handler: "runc",
            shim: "containerd-shim-runc-v2",
            short: (images.runc_hello.clone(), vec!["/hello".into()]),
            idle: (images.runc_sleeper.clone(), vec!["/sleeper".into()]),
        },
    ]
}

/// The duration of one call (`Some(i)`) or of the whole life (`None`).
fn of_call(lives: &[PodTimes], call: Option<usize>) -> Vec<std::time::Duration> {
    lives
        .iter()
        .map(|t| match call {
            Some(i) => t[i],
            None => t.iter().sum(),
        })
        .collect()
}

pub fn run(cd: &Containerd, images: &Images, sizes: &Sizes, out_dir: &Path) -> Result<String> {
    let sides = sides(images);
    let version = crate::report::Versions::of(cd)?.containerd;
    eprintln!("bench: {} pod lives per runtime through CRI", sizes.pods);
    let lives = pod_lives(cd, &sides, sizes.pods)?;
    let parallelism = 8;
    eprintln!("bench: pods per second at parallelism {parallelism}");
    let mut rates: [Vec<f64>; 2] = Default::default();
    let mut cpu: [Vec<CpuUsed>; 2] = Default::default();
    for round in 0..sizes.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (rate, used) = pods_per_second(cd, &sides[i], sizes.jobs, parallelism, round)?;
            rates[i].push(rate);
            cpu[i].push(used);
        }
    }
    eprintln!("bench: density, {} idle pods per runtime", sizes.density);
    let mut per_pod: [Vec<f64>; 2] = Default::default();
    let mut processes = [0.0; 2];
    let mut breakdown: [String; 2] = Default::default();
    for round in 0..sizes.density_rounds {
        // Each side goes first every other round.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let side = &sides[i];
            let memory = density(cd, side, sizes.density)?;
            per_pod[i].push(memory.per_container_kib() / 1024.0);
            processes[i] = memory.processes as f64 / memory.containers.max(1) as f64;
            breakdown[i] = memory.breakdown();
            eprintln!("bench: {} pods: {}", side.label, breakdown[i]);
        }
    }
    let pss = [Spread::of(&per_pod[0]), Spread::of(&per_pod[1])];
    charts::memory(
        &out_dir.join("pod-density.svg"),
        &format!("PSS per idle pod ({} pods, CRI)", sizes.density),
        "MiB per pod (shim + every process under it)",
        [pss[0].median, pss[1].median],
    )?;

    let mut md = String::new();
    md.push_str(&format!(
        "## 6. Pods through CRI: {} pod lives per runtime\n\n",
        sizes.pods
    ));
    md.push_str(&format!("A kubelet's calls for a pod with one run-to-completion container, through containerd {version}'s CRI plugin (a CRI client in Rust, `k8s-cri`): RunPodSandbox (the CNI bridge plugin gives each pod its network), CreateContainer, StartContainer, then, once the container has exited, RemoveContainer, StopPodSandbox and RemovePodSandbox. The time inside each call; the container's own run and the polling for its exit are not counted. wasmbox runs the `hello` module under RuntimeClass handler `wasmbox` (its pod sandbox is wasmbox's own); runc runs the static musl `hello` under handler `runc`, with the pause image (a static musl `pause`) as its sandbox. The two alternate pod by pod, after one warm-up pod each.\n\n"));
    md.push_str("| CRI call | wasmbox p50 ms | wasmbox p99 ms | runc p50 ms | runc p99 ms | ratio p50 wasmbox/runc |\n|---|---|---|---|---|---|\n");
    let rows = CALLS
        .iter()
        .enumerate()
        .map(|(i, name)| (name.to_string(), Some(i)));
    for (name, call) in rows.chain(std::iter::once(("**pod life**".to_string(), None))) {
        let w = of_call(&lives[0], call);
        let r = of_call(&lives[1], call);
        let (w50, w99, r50, r99) = (
            quantile(&w, 0.5),
            quantile(&w, 0.99),
            quantile(&r, 0.5),
            quantile(&r, 0.99),
        );
        md.push_str(&format!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | **{:.2}** |\n",
            ms(w50),
            ms(w99),
            ms(r50),
            ms(r99),
            w50.as_secs_f64() / r50.as_secs_f64()
        ));
    }
    let rate = [Spread::of(&rates[0]), Spread::of(&rates[1])];
    md.push_str(&format!("\nPods per second: {} whole pod lives (the wait for the container's exit included, polled every 2 ms) with {parallelism} clients at a time, each with its own connection; {} rounds per runtime, alternating (each side first every other round): median (min–max).\n\n", sizes.jobs, sizes.rounds));
    md.push_str(
        "| parallelism | wasmbox pods/s | runc pods/s | ratio wasmbox/runc |\n|---|---|---|---|\n",
    );
    md.push_str(&format!(
        "| {parallelism} | {} | {} | **{:.2}** |\n\n",
        rate[0].show(1),
        rate[1].show(1),
        rate[0].median / rate[1].median
    ));

    md.push_str(&cpu_section(&cpu, parallelism));

    md.push_str(&format!(
        "## 7. Density: {} idle pods per runtime through CRI\n\n",
        sizes.density
    ));
    md.push_str(&format!("Each pod has one long-running container: wasmbox the `sleeper` module, runc a static musl sleeper beside its pause container. PSS of every process under the pods' shims (the shim, and for wasmbox the pod's sandbox process and each container's runner and guest; for runc the pause and the sleeper), summed and divided by the number of pods, all {} pods running at once. {} rounds per runtime, alternating (each side first every other round): median (min–max). Not counted, on either side: containerd, and kernel memory (page tables, cgroups, network namespaces and veths).\n\n", sizes.density, sizes.density_rounds));
    md.push_str("| runtime | MiB per pod, median (min–max) | processes per pod | ratio wasmbox/runc |\n|---|---|---|---|\n");
    md.push_str(&format!(
        "| wasmbox | {} | {:.1} | **{:.2}** |\n| runc | {} | {:.1} | |\n\n![PSS per idle pod](pod-density.svg)\n\n",
        pss[0].show(2),
        processes[0],
        pss[0].median / pss[1].median,
        pss[1].show(2),
        processes[1]
    ));
    md.push_str(&format!(
        "Per pod, by program (the last round): wasmbox: {}. runc: {}.\n\n",
        breakdown[0], breakdown[1]
    ));
    Ok(md)
}

/// One part of a pod's CPU time.
type CpuPart = fn(&CpuUsed) -> f64;

/// Where the CPU of the pods-per-second rounds went, per pod, and the most
/// the ratio could be if wasmbox's own processes cost nothing.
fn cpu_section(cpu: &[Vec<CpuUsed>; 2], parallelism: usize) -> String {
    let spread =
        |side: &[CpuUsed], part: CpuPart| Spread::of(&side.iter().map(part).collect::<Vec<_>>());
    let parts: [(&str, CpuPart); 4] = [
        ("the whole machine", |c| c.machine_ms),
        ("containerd itself", |c| c.containerd_ms),
        (
            "commands containerd ran (CNI plugins, each shim's `start` and `delete`)",
            |c| c.commands_ms,
        ),
        (
            "the rest (shim servers; wasmbox's runners, or runc, pause and the container; kernel threads)",
            CpuUsed::rest_ms,
        ),
    ];
    let mut md = format!("CPU time per pod in those rounds (the machine's busy time from /proc/stat, containerd's own and its reaped children's from its /proc/PID/stat, divided by the pods; {:.0} ms ticks): median (min–max) ms.\n\n| CPU ms per pod | wasmbox | runc | ratio wasmbox/runc |\n|---|---|---|---|\n", crate::cpu::tick_ms());
    for (name, part) in parts {
        let (w, r) = (spread(&cpu[0], part), spread(&cpu[1], part));
        md.push_str(&format!(
            "| {name} | {} | {} | {:.2} |\n",
            w.show(1),
            r.show(1),
            w.median / r.median.max(f64::MIN_POSITIVE)
        ));
    }
    let runc_machine = spread(&cpu[1], |c| c.machine_ms);
    let shared = spread(&cpu[0], |c| c.containerd_ms + c.commands_ms);
    md.push_str(&format!(
        "\nThe rounds are CPU-bound ({} cores, {parallelism} clients), so pods per second go as the inverse of the machine's CPU per pod. containerd and the commands it runs take {:.1} ms per wasmbox pod, and this includes wasmbox's `start` and `delete` commands. Even if every other process of a wasmbox pod took no CPU, the pods-per-second ratio could be at most {:.2}.\n\n",
        crate::report::cores(),
        shared.median,
        runc_machine.median / shared.median.max(f64::MIN_POSITIVE)
    ));
    md
}
