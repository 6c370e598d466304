//! The optimized compile of a module whose guest started on baseline code
//! (see `wasmbox_runtime::tiered`): the shim runs
//! `wasmbox-runner --optimize PATH` when the runner says so, and waits for
//! it before it exits.
//!
//! Where it runs, and why: beside the container, in the shim's own cgroup,
//! not in the container's and so off its CPU and memory quota, at
//! SCHED_IDLE (it only gets CPU time no container wants) and confined
//! (no capabilities, files beneath the cache only, no sockets). The
//! container's cgroup goes when the container does: a short job, the
//! kind a slow first start hurts most, would end its own compile and the
//! cache would never fill. And what it makes is not the container's: it
//! serves every later start of the module on the node, once (the cache's
//! lock makes a second compile of the same module load the first's).
//!
//! A compile never outlives its shim: at exit the shim waits for its
//! compiles for [`OPTIMIZE_WITHIN`] at most, then kills what is left (the
//! cache's writes are whole or nothing, so a killed compile leaves no
//! entry behind, and the next baseline start asks again).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::exits::{ExitOwner, ExitReceiver, ExitRegistry};

/// How long an exiting shim waits for its compiles.
pub const OPTIMIZE_WITHIN: Duration = Duration::from_secs(600);

/// The compiles a shim started.
#[derive(Default)]
pub struct Optimizer {
    running: Mutex<Vec<Compile>>,
}

/// One compile process: its pid, its exit, and the threads that log its
/// output (they end when it does).
struct Compile {
    pid: u32,
    exit: ExitReceiver,
    output: Vec<std::thread::JoinHandle<()>>,
}

impl Optimizer {
    /// Starts the optimized compile of `module` (a path on the host) for
    /// container `id`; its one line of output goes to containerd's log.
    /// Call it on the shim's runtime thread: the compile's parent-death
    /// signal fires when the thread that spawned it ends.
    pub fn start(&self, exits: &ExitRegistry, id: &str, module: &Path) {
        let (mut command, runner) = match crate::runner::runner_command() {
            Ok(found) => found,
            Err(e) => {
                log::warn!(
                    "container {id}: no optimized compile of {}: {e}",
                    module.display()
                );
                return;
            }
        };
        command
            .arg("--optimize")
            .arg(module)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (mut child, exit) = match exits.spawn(ExitOwner::helper(id), &mut command) {
            Ok(spawned) => spawned,
            Err(e) => {
                log::warn!(
                    "container {id}: cannot start {} --optimize: {e}",
                    runner.display()
                );
                return;
            }
        };
        log::info!(
            "container {id}: compiling optimized code for {} (pid {})",
            module.display(),
            child.id()
        );
        let readers = [
            child.stdout.take().map(|out| log_lines(id, out)),
            child.stderr.take().map(|err| log_lines(id, err)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        // A long-lived pod shim keeps only the compiles still running; the
        // output threads of an ended one end with its pipes.
        running.retain(|compile| compile.exit.borrow().is_none());
        running.push(Compile {
            pid: child.id(),
            exit,
            output: readers,
        });
    }

    /// Waits for every compile started so far, for `within` in all; kills
    /// the ones still running then.
    pub async fn finish(&self, within: Duration) {
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|e| e.into_inner()));
        if running
            .iter()
            .any(|compile| compile.exit.borrow().is_none())
        {
            log::info!("waiting for the optimized compiles to finish");
        }
        let deadline = tokio::time::Instant::now() + within;
        for Compile {
            pid,
            mut exit,
            output,
        } in running
        {
            let ended = tokio::time::timeout_at(deadline, exit.wait_for(Option::is_some))
                .await
                .is_ok();
            if !ended {
                log::warn!(
                    "optimized compile {pid} still runs after {} s: killing it",
                    within.as_secs()
                );
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some))
                        .await;
            }
            // Its last line is logged before the shim exits.
            let _ = tokio::task::spawn_blocking(move || {
                for reader in output {
                    let _ = reader.join();
                }
            })
            .await;
        }
    }
}

/// Logs each line `output` gives as container `id`'s, until it ends.
fn log_lines(id: &str, output: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<()> {
    let id = id.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            log::info!("container {id}: {line}");
        }
    })
}
