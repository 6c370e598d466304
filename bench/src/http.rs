//! Table 5: the `http-hello` wasi:http component served by wasmbox against
//! `wasmtime serve` of the same component and against the same handler as
//! a native hyper server, all driven by `wrk` on the same machine, at
//! concurrency 1, 16 and 64.
//!
//! wasmbox serves it as a container (`ctr run -d --net-host`, the listen
//! address from `WASMBOX_HTTP_ADDR`); `wasmtime serve -Scli -O
//! pooling-allocator=y --no-logging-prefix` (the CLI of bench/
//! fetch-wasmtime.sh; `-Scli` because the component also imports wasi:cli,
//! as every Rust-built one does) runs it as a plain process, and so does
//! `http-hello-native` (bench/http-native). Each prints one log line per
//! request, and the lines go nowhere (a detached container's fifo with no
//! reader; /dev/null). The three alternate, round by round, each round a
//! warm-up second and then a measured run; the table has the median
//! requests per second and the median p99 latency over the rounds.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use wasmbox_tests::{sample_wasm, Containerd, RUNTIME};

const WASMBOX_ADDR: &str = "127.0.0.1:18480";
const WASMTIME_ADDR: &str = "127.0.0.1:18481";
const NATIVE_ADDR: &str = "127.0.0.1:18482";

/// One server's numbers at one concurrency.
pub struct Served {
    pub requests_per_second: f64,
    pub p99_ms: f64,
}

/// The results: (concurrency, [wasmbox, wasmtime serve, native]).
pub type HttpTable = Vec<(usize, [Served; 3])>;

/// Table 5 measured and in markdown.
pub fn run(
    cd: &Containerd,
    images: &crate::Images,
    wasmtime: &Path,
    sizes: &crate::Sizes,
) -> Result<String> {
    eprintln!("bench: wasi:http against wasmtime serve and a native server");
    let native = native_server()?;
    let (seconds, rounds) = (sizes.http_seconds, sizes.http_rounds);
    let table = serve_bench(cd, &images.wasm_http, wasmtime, &native, seconds, rounds)?;
    let version = crate::report::first_line_of(wasmtime, &["--version"])?;
    let mut md = String::from(
        "## 5. wasi:http: `http-hello` served by wasmbox, by `wasmtime serve` and natively\n\n",
    );
    md.push_str(&format!(
        "The same component (`images/apps/http-hello`, built with wstd, so it imports WASI 0.2.12) served by wasmbox (`ctr run -d --net-host`, a fresh pooled instance per request, HTTP/1.1) and by `wasmtime serve -Scli -O pooling-allocator=y --no-logging-prefix` ({version}, from bench/fetch-wasmtime.sh), and the same handler as a plain hyper server built for the host (`bench/http-native`, tokio with one worker per core), all on this machine, driven by `wrk` (Debian) with keep-alive connections. Each cell is the median of {rounds} runs of {seconds} s, after a 1 s warm-up, the three servers alternating. `wrk` shares the {} cores with the server.\n\n",
        crate::report::cores()
    ));
    md.push_str("| concurrency | wasmbox req/s | wasmtime serve req/s | native req/s | **wasmbox/wasmtime** | **wasmbox/native** | wasmbox p99 ms | wasmtime serve p99 ms | native p99 ms |\n|---|---|---|---|---|---|---|---|---|\n");
    for (concurrency, [ours, theirs, native]) in &table {
        md.push_str(&format!(
            "| {concurrency} | {:.0} | {:.0} | {:.0} | **{:.2}** | **{:.2}** | {:.2} | {:.2} | {:.2} |\n",
            ours.requests_per_second,
            theirs.requests_per_second,
            native.requests_per_second,
            ours.requests_per_second / theirs.requests_per_second,
            ours.requests_per_second / native.requests_per_second,
            ours.p99_ms,
            theirs.p99_ms,
            native.p99_ms
        ));
    }
    md.push('\n');
    Ok(md)
}

/// `http-hello-native` (bench/http-native), which `make bench` builds.
fn native_server() -> Result<std::path::PathBuf> {
    let path = wasmbox_tests::repo_root().join("target/release/http-hello-native");
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p http-hello-native` (make bench does)",
            path.display()
        );
    }
    Ok(path)
}

fn serve_bench(
    cd: &Containerd,
    image: &str,
    wasmtime: &Path,
    native: &Path,
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
    let quiet = |command: &mut Command| {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    let mut wasmtime_serve = quiet(
        Command::new(wasmtime)
            .args([
                "serve",
                "-Scli",
                "-O",
                "pooling-allocator=y",
                "--no-logging-prefix",
                "--addr",
                WASMTIME_ADDR,
            ])
            .arg(sample_wasm("http-hello")),
    )
    .with_context(|| format!("cannot start {}", wasmtime.display()))?;
    let mut native_server = quiet(Command::new(native).arg(NATIVE_ADDR))
        .with_context(|| format!("cannot start {}", native.display()))?;
    let result = (|| -> Result<HttpTable> {
        let servers = [WASMBOX_ADDR, WASMTIME_ADDR, NATIVE_ADDR];
        for addr in servers {
            wait_for_port(addr)?;
        }
        let mut table = Vec::new();
        for concurrency in [1, 16, 64] {
            let mut runs: [Vec<Served>; 3] = Default::default();
            for _ in 0..rounds {
                for (addr, runs) in servers.iter().zip(runs.iter_mut()) {
                    runs.push(wrk(addr, concurrency, seconds)?);
                }
            }
            let [a, b, c] = &runs;
            table.push((concurrency, [median(a), median(b), median(c)]));
        }
        Ok(table)
    })();
    stop(&mut wasmtime_serve);
    stop(&mut native_server);
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
