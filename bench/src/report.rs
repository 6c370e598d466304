//! What RESULTS.md says besides the numbers: the machine, the date, the
//! versions of everything measured (read from the binaries and the lock
//! file, never written in by hand), and the row formats the tables share.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use wasmbox_tests::{repo_root, Containerd};

use crate::measure::Stats;

/// Median, min and max of numbers (memory, rates) measured several times.
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => 0.0,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
        }
    }

    /// `median (min–max)` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.digits$} ({:.digits$}–{:.digits$})",
            self.median, self.min, self.max
        )
    }
}

/// The versions of what a run measured.
pub struct Versions {
    pub containerd: String,
    pub runc: String,
    pub wasmtime: String,
}

impl Versions {
    pub fn of(cd: &Containerd) -> Result<Self> {
        let out = cd.ctr(&["version"]);
        let text = String::from_utf8_lossy(&out.stdout);
        // `ctr version` prints the client's block, then the server's.
        let containerd = text
            .split("Server:")
            .nth(1)
            .and_then(|server| {
                server
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Version:"))
            })
            .map(|v| v.trim().to_string())
            .context("ctr version printed no server version")?;
        let runc_path = Path::new(&cd.ctr_path).with_file_name("runc");
        let runc = first_line_of(&runc_path, &["--version"])?;
        Ok(Self {
            containerd,
            runc,
            wasmtime: locked_version("wasmtime")?,
        })
    }
}

/// The first line `program ARGS` prints.
pub fn first_line_of(program: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !out.status.success() {
        bail!("{} {args:?} failed", program.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// The version of crate `name` in Cargo.lock: what wasmbox was built with.
fn locked_version(name: &str) -> Result<String> {
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock"))
        .context("cannot read Cargo.lock")?;
    let needle = format!("name = \"{name}\"\n");
    let at = lock
        .find(&needle)
        .with_context(|| format!("{name} is not in Cargo.lock"))?;
    lock[at + needle.len()..]
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_string)
        .with_context(|| format!("no version for {name} in Cargo.lock"))
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
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
        "{cpu}, {} cores, {:.0} GiB, Linux {}",
        cores(),
        mem_kb as f64 / 1048576.0,
        kernel.trim()
    )
}

pub fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One row of a timing table: name, median, min, max, runs.
pub fn timing_row(name: &str, s: &Stats) -> String {
    format!(
        "| {name} | {:.1} | {:.1} | {:.1} | {} |\n",
        ms(s.median),
        ms(s.min),
        ms(s.max),
        s.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_have_a_median_min_and_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert_eq!(Spread::of(&[4.0, 1.0, 9.0]).show(1), "4.0 (1.0–9.0)");
    }

    #[test]
    fn the_locked_wasmtime_is_a_48_release() {
        assert!(locked_version("wasmtime").unwrap().starts_with("48."));
    }
}
