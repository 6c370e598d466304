//! The pipe protocol between the shim and a runner process.
//!
//! The shim starts a runner at Create with two pipes:
//! - the *control* pipe (shim → runner) carries the [`crate::RunPlan`] (a
//!   [`crate::SandboxPlan`] for a pod sandbox) as a
//!   length-prefixed JSON document, and later one [`START`] byte when the
//!   task is started. If the shim closes it without that byte (the task was
//!   deleted before it started, or the shim died), the runner exits quietly.
//! - the *status* pipe (runner → shim) carries one line once the runner has
//!   loaded and checked the module: `ok`, or `error <message>`. After `ok`
//!   it stays open for notices about the running guest: `optimize` when the
//!   guest runs on baseline code and the shim should have the optimized
//!   code compiled into the cache, and `oom` when the guest was stopped for
//!   memory. It closes when the runner exits.
//!
//! Any time, a runner may also write `log <level> <message>` there: its
//! own log (the cache's warnings, say), which the shim writes to
//! containerd's log for the container.
//!
//! So a bad module fails the Create call with the runner's message, and
//! Start only has to write one byte.

use std::io::{self, BufRead, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The byte that tells a prepared runner to run the guest.
pub const START: u8 = b'S';

/// Plans larger than this are refused as corrupt.
const MAX_PLAN_BYTES: u32 = 64 << 20;

/// Writes `plan` (a [`crate::RunPlan`], or a [`crate::SandboxPlan`] for a
/// pod sandbox) as a length-prefixed JSON document.
pub fn write_plan<T: Serialize>(mut w: impl Write, plan: &T) -> io::Result<()> {
    let json = serde_json::to_vec(plan).map_err(io::Error::other)?;
    let len = u32::try_from(json.len())
        .ok()
        .filter(|len| *len <= MAX_PLAN_BYTES)
        .ok_or_else(|| io::Error::other("run plan too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&json)?;
    w.flush()
}

/// Reads a plan written by [`write_plan`].
pub fn read_plan<T: DeserializeOwned>(mut r: impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_PLAN_BYTES {
        return Err(io::Error::other(format!(
            "run plan of {len} bytes is too large"
        )));
    }
    // Read what is there rather than allocate what the length claims: a
    // broken peer's four bytes cannot make this take 64 MiB.
    let mut json = Vec::new();
    r.take(u64::from(len)).read_to_end(&mut json)?;
    if json.len() != len as usize {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("run plan cut short: {} of {len} bytes", json.len()),
        ));
    }
    serde_json::from_slice(&json).map_err(io::Error::other)
}

/// Writes the runner's readiness: `Ok` with details for the debug log
/// (timings, cache outcome), or the reason it cannot run.
pub fn write_status(mut w: impl Write, status: Result<&str, &str>) -> io::Result<()> {
    match status {
        Ok(details) => w.write_all(format!("ok {}\n", details.replace('\n', " ")).as_bytes())?,
        Err(message) => {
            // One line: newlines inside the message become spaces.
            let message = message.replace('\n', " ");
            w.write_all(format!("error {message}\n").as_bytes())?;
        }
    }
    w.flush()
}

/// The notice a runner sends when its guest was stopped for memory.
pub const OOM_NOTICE: &str = "oom";

/// The notice a runner sends when its guest starts on baseline code: the
/// shim runs `wasmbox-runner --optimize PATH` for the module.
pub const OPTIMIZE_NOTICE: &str = "optimize";

/// Writes a notice about the running guest, such as [`OOM_NOTICE`].
pub fn write_notice(mut w: impl Write, notice: &str) -> io::Result<()> {
    w.write_all(format!("{notice}\n").as_bytes())?;
    w.flush()
}

/// Reads the next notice; `None` once the runner has exited.
pub fn read_notice(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end().to_string()))
}

/// Writes one line of the runner's log: `log <level> <message>`.
pub fn write_log(mut w: impl Write, level: &str, message: &str) -> io::Result<()> {
    w.write_all(format!("log {level} {}\n", message.replace('\n', " ")).as_bytes())?;
    w.flush()
}

/// A line that [`write_log`] wrote: its level and message.
pub fn parse_log(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("log ")?;
    Some(rest.split_once(' ').unwrap_or((rest, "")))
}

/// One line of the status pipe before the guest is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusLine {
    /// What [`write_log`] wrote: level and message.
    Log(String, String),
    /// `ok`, with its details.
    Ready(String),
    /// The runner cannot run the guest, and says why.
    Failed(String),
}

/// Reads what [`write_status`] or [`write_log`] wrote. A runner that
/// closed the pipe without a status (it crashed or was killed) gives
/// `Failed`, saying so.
pub fn read_status_line(r: &mut impl BufRead) -> io::Result<StatusLine> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end();
    Ok(match line {
        "ok" => StatusLine::Ready(String::new()),
        _ if line.starts_with("ok ") => StatusLine::Ready(line[3..].to_string()),
        _ => {
            if let Some((level, message)) = parse_log(line) {
                StatusLine::Log(level.to_string(), message.to_string())
            } else if let Some(message) = line.strip_prefix("error ") {
                StatusLine::Failed(message.to_string())
            } else if line.is_empty() {
                StatusLine::Failed("the wasm runner exited before it was ready".to_string())
            } else {
                StatusLine::Failed(format!("the wasm runner answered {line:?}"))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Preopen, RunPlan, WasmKind};

    #[test]
    fn plan_and_status_round_trip() {
        let plan = RunPlan {
            module_guest_path: "/app.wasm".into(),
            module_host_path: "/b/rootfs/app.wasm".into(),
            kind: WasmKind::Module,
            entry: "_start".into(),
            args: vec!["/app.wasm".into(), "x".into()],
            env: vec![("A".into(), "1".into())],
            cwd: "/".into(),
            preopens: vec![Preopen {
                host_path: "/b/rootfs".into(),
                guest_path: "/".into(),
                read_only: false,
                id_mappings: None,
            }],
            skipped_mounts: Vec::new(),
            memory_limit: Some(64 << 20),
            user: crate::UserPlan {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10],
            },
            rlimits: vec![crate::RlimitPlan {
                name: "RLIMIT_NOFILE".into(),
                soft: 1024,
                hard: 4096,
            }],
            tiered_compile: crate::TieredCompile::Off,
            http: crate::HttpSettings {
                addr: "127.0.0.1:9000".parse().unwrap(),
                request_timeout: Some(std::time::Duration::from_millis(1500)),
            },
            confinement: crate::Confinement {
                no_new_privileges: true,
                oom_score_adj: Some(100),
                ..Default::default()
            },
        };
        let mut buf = Vec::new();
        write_plan(&mut buf, &plan).unwrap();
        assert_eq!(read_plan::<RunPlan>(&buf[..]).unwrap(), plan);

        let mut buf = Vec::new();
        write_status(&mut buf, Err("bad\nmodule")).unwrap();
        assert_eq!(
            read_status_line(&mut &buf[..]).unwrap(),
            StatusLine::Failed("bad module".to_string())
        );
        let mut buf = Vec::new();
        write_status(&mut buf, Ok("cache=hit")).unwrap();
        write_notice(&mut buf, OOM_NOTICE).unwrap();
        let mut reader = &buf[..];
        assert_eq!(
            read_status_line(&mut reader).unwrap(),
            StatusLine::Ready("cache=hit".to_string())
        );
        assert_eq!(
            read_notice(&mut reader).unwrap().as_deref(),
            Some(OOM_NOTICE)
        );
        assert_eq!(read_notice(&mut reader).unwrap(), None);
        let StatusLine::Failed(empty) = read_status_line(&mut &b""[..]).unwrap() else {
            panic!("end of file is not a status");
        };
        assert!(empty.contains("exited before"));
    }
}
