//! Where a pod's CPU time goes: the CPU the whole machine spent while a
//! bench step ran, split into containerd's own, that of the commands
//! containerd ran and reaped (the CNI plugins, and each shim's `start` and
//! `delete` commands), and the rest (the shim servers, wasmbox's runners
//! or runc and its containers, and the kernel's threads), from
//! /proc/stat and containerd's /proc/PID/stat.

use anyhow::{anyhow, Context, Result};

use crate::measure::stat_fields;

/// Clock ticks counted so far.
#[derive(Clone, Copy)]
pub struct Ticks {
    machine: u64,
    containerd: u64,
    commands: u64,
}

/// CPU time between two [`Ticks`], in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct CpuUsed {
    pub machine_ms: f64,
    pub containerd_ms: f64,
    pub commands_ms: f64,
}

impl CpuUsed {
    /// Everything not containerd's or its commands'.
    pub fn rest_ms(&self) -> f64 {
        (self.machine_ms - self.containerd_ms - self.commands_ms).max(0.0)
    }

    /// The same, per one of `count` pods.
    pub fn per(&self, count: usize) -> CpuUsed {
        let n = count.max(1) as f64;
        CpuUsed {
            machine_ms: self.machine_ms / n,
            containerd_ms: self.containerd_ms / n,
            commands_ms: self.commands_ms / n,
        }
    }
}

/// The ticks now, of the machine and of containerd process `containerd`.
pub fn ticks(containerd: u32) -> Result<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").context("/proc/stat")?;
    let cpu = stat
        .lines()
        .next()
        .filter(|line| line.starts_with("cpu "))
        .ok_or_else(|| anyhow!("/proc/stat: no cpu line"))?;
    let fields: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("/proc/stat: cpu line")?;
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy = |i: usize| fields.get(i).copied().unwrap_or(0);
    let machine = [0, 1, 2, 5, 6, 7].iter().map(|&i| busy(i)).sum();

    let path = format!("/proc/{containerd}/stat");
    let fields = stat_fields(containerd).ok_or_else(|| anyhow!("cannot read {path}"))?;
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .ok_or_else(|| anyhow!("{path}: no field {n}"))?
            .parse()
            .with_context(|| format!("{path}: field {n}"))
    };
    Ok(Ticks {
        machine,
        containerd: field(14)? + field(15)?,
        commands: field(16)? + field(17)?,
    })
}

/// The CPU time from `before` to `after`.
pub fn between(before: Ticks, after: Ticks) -> CpuUsed {
    let ms = |a: u64, b: u64| a.saturating_sub(b) as f64 * tick_ms();
    CpuUsed {
        machine_ms: ms(after.machine, before.machine),
        containerd_ms: ms(after.containerd, before.containerd),
        commands_ms: ms(after.commands, before.commands),
    }
}

/// How long a clock tick is, in milliseconds (USER_HZ is 100 on Linux).
pub fn tick_ms() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => 1000.0 / ticks as f64,
        _ => 10.0,
    }
}
