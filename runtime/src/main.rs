//! `wasmbox-runner`: the process that runs one container's guest (a core
//! module, a command component or a wasi:http server).
//!
//! The shim starts it at Create as
//! `wasmbox-runner --id ID --control-fd N --status-fd M`, with the
//! container's stdio on fds 0-2. It reads the plan from the control pipe,
//! prepares the guest (the module comes from the compiled cache when it can),
//! reports `ok` or the error on the status pipe, then waits for the start
//! byte and runs the guest. Between the two it confines itself (see
//! `wasmbox_runtime::confine`): the guest's first instruction runs in a
//! process with an empty root, a seccomp allow-list and next to no
//! capabilities. Its exit code is the task's exit code; see
//! `wasmbox_runtime::guest` for the list.
//!
//! `wasmbox-runner --optimize PATH` is its other job: the optimized compile
//! of a module whose first start ran on baseline code (see
//! `wasmbox_runtime::tiered`).

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};
use std::process::ExitCode;
use std::time::Instant;

use wasmbox_oci::protocol::{
    read_plan, write_notice, write_status, OOM_NOTICE, OPTIMIZE_NOTICE, START,
};
use wasmbox_oci::{Confinement, Preopen, RlimitPlan, RunPlan, SandboxPlan, UserPlan, WasmKind};
use wasmbox_runtime::cache::{CacheOutcome, ModuleCache};
use wasmbox_runtime::confine::{confine_guest, prepare, Prepared};
use wasmbox_runtime::engine::{new_component_engine, new_engine};
use wasmbox_runtime::identity::apply_rlimits;
use wasmbox_runtime::tiered::baseline_from;
use wasmbox_runtime::{ExitReason, PreparedGuest};

/// Exit code when the runner itself cannot work (bad invocation, broken pipe).
const RUNNER_FAILURE: u8 = 125;

struct Args {
    control_fd: RawFd,
    status_fd: RawFd,
    /// A pod sandbox: hold the namespaces until stopped; the plan is a
    /// `SandboxPlan`.
    sandbox: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut control_fd = None;
    let mut status_fd = None;
    let mut sandbox = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--sandbox" {
            sandbox = true;
            continue;
        }
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            // The id is there for `ps` and for tests that look for leftovers.
            "--id" => {
                value()?;
            }
            "--control-fd" => control_fd = Some(parse_fd(&value()?)?),
            "--status-fd" => status_fd = Some(parse_fd(&value()?)?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        control_fd: control_fd.ok_or("--control-fd is required")?,
        status_fd: status_fd.ok_or("--status-fd is required")?,
        sandbox,
    })
}

fn parse_fd(text: &str) -> Result<RawFd, String> {
    text.parse::<RawFd>()
        .ok()
        .filter(|fd| *fd > 2)
        .ok_or_else(|| format!("{text:?} is not a file descriptor above 2"))
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os().skip(1);
    if argv.next().is_some_and(|flag| flag == "--optimize") {
        return match argv.next() {
            Some(path) if argv.next().is_none() => optimize(std::path::Path::new(&path)),
            _ => {
                eprintln!("wasmbox-runner: --optimize takes one path, the module's");
                ExitCode::from(RUNNER_FAILURE)
            }
        };
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "wasmbox-runner: {e}; it is started by containerd-shim-wasmbox-v1, not by hand"
            );
            return ExitCode::from(RUNNER_FAILURE);
        }
    };
    // SAFETY: the shim passes these two descriptors, open and unused by
    // anything else in this process, and they are owned from here on.
    let mut control = unsafe { File::from_raw_fd(args.control_fd) };
    let mut status = unsafe { File::from_raw_fd(args.status_fd) };
    if let Ok(copy) = status.try_clone() {
        wasmbox_runtime::logger::install(copy);
    }

    if let Err(e) = wasmbox_runtime::pidns::end_on_signals_as_init() {
        let _ = write_status(
            &mut status,
            Err(&format!("cannot handle signals as PID 1: {e}")),
        );
        return ExitCode::from(RUNNER_FAILURE);
    }
    if args.sandbox {
        return hold(control, status);
    }

    // Timestamps of the start path, for the shim's debug log.
    let started = Instant::now();
    let ms = |since: Instant| since.elapsed().as_secs_f64() * 1000.0;
    let prepared = read_plan::<RunPlan>(&mut control)
        .map_err(|e| format!("cannot read the run plan from the shim: {e}"))
        .and_then(|plan| {
            let cache = ModuleCache::from_env();
            let who = ConfineAs {
                confinement: &plan.confinement,
                user: &plan.user,
                rlimits: &plan.rlimits,
                preopens: &plan.preopens,
            };
            // Still one thread: the engine does not exist yet.
            let prepared = prepare_confinement(&who, &cache)?;
            let plan_ms = ms(started);
            let t = Instant::now();
            let engine = match plan.kind {
                WasmKind::Module => new_engine(),
                WasmKind::Component => new_component_engine(plan.memory_limit),
            }
            .map_err(|e| e.to_string())?;
            let engine_ms = ms(t);
            let t = Instant::now();
            let baseline_from = baseline_from(plan.tiered_compile);
            let guest = PreparedGuest::prepare(&engine, &cache, &plan, baseline_from)
                .map_err(|e| e.to_string())?;
            let prepare_ms = ms(t);
            let t = Instant::now();
            let confined = confine_self(&who, &prepared)?;
            let details = format!(
                "kind={} cache={} plan_ms={plan_ms:.2} engine_ms={engine_ms:.2} prepare_ms={prepare_ms:.2} confine_ms={:.2} total_ms={:.2} confined={confined}",
                guest.kind().as_str(),
                guest.cache_outcome.as_str(),
                ms(t),
                ms(started)
            );
            Ok((guest, details))
        });
    let guest = match report_ready(&mut status, prepared) {
        Ok(guest) => guest,
        Err(code) => return code,
    };
    if guest.cache_outcome == CacheOutcome::Baseline {
        // The shim has the optimized code compiled for the next start.
        let _ = write_notice(&mut status, OPTIMIZE_NOTICE);
    }
    if !wait_for_start(control) {
        return ExitCode::SUCCESS;
    }

    // What preparing left freed on the heap (the plan, the seccomp
    // filters' building, the module's read) goes back to the kernel before
    // a guest that may idle for days.
    // SAFETY: malloc_trim only releases free memory of glibc's arenas.
    unsafe { nix::libc::malloc_trim(0) };
    let reason = guest.run();
    if matches!(reason, ExitReason::OutOfMemory(_)) {
        // The shim turns this into a TaskOOM event.
        let _ = write_notice(&mut status, OOM_NOTICE);
    }
    let code = reason.exit_code();
    // Exit codes are 8 bits; proc_exit's i32 is truncated as the kernel would.
    std::process::exit(code)
}

/// `wasmbox-runner --optimize PATH`, which the shim runs beside a guest
/// that started on baseline code: the optimized compile of the module at
/// PATH into the cache (see `wasmbox_runtime::tiered`). One line on
/// stdout says how it went, for the shim's log.
fn optimize(path: &std::path::Path) -> ExitCode {
    // It never outlives the shim that waits for it, even one SIGKILLed.
    let shim = nix::unistd::getppid();
    if nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).is_err()
        || nix::unistd::getppid() != shim
    {
        println!("no optimized code for {}: the shim is gone", path.display());
        return ExitCode::FAILURE;
    }
    match wasmbox_runtime::tiered::optimize(path, &ModuleCache::from_env()) {
        Ok(done) => {
            println!(
                "optimized code for {} in {:.0} ms: cache={} confined={}",
                path.display(),
                done.millis,
                done.outcome.as_str(),
                done.confined
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("no optimized code for {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// A pod sandbox (CRI's pause container): no guest, only a process that
/// holds the pod's namespaces (the shim entered or created them before
/// exec), as the sandbox's user and confined like a guest, until it is
/// stopped. As PID 1 of the pod's PID namespace, SIGTERM ends it as it
/// ends a guest.
fn hold(mut control: File, mut status: File) -> ExitCode {
    let prepared = read_plan::<SandboxPlan>(&mut control)
        .map_err(|e| format!("cannot read the sandbox plan from the shim: {e}"))
        .and_then(|plan| {
            let who = ConfineAs {
                confinement: &plan.confinement,
                user: &plan.user,
                rlimits: &plan.rlimits,
                preopens: &[],
            };
            let prepared = prepare_confinement(&who, &ModuleCache::from_env())?;
            let confined = confine_self(&who, &prepared)?;
            Ok(((), format!("kind=sandbox confined={confined}")))
        });
    if let Err(code) = report_ready(&mut status, prepared) {
        return code;
    }
    if !wait_for_start(control) {
        return ExitCode::SUCCESS;
    }
    // What confinement built (the seccomp programs, the plan) is freed by
    // now but still held by the heap; a pod holds this process for its
    // whole life, so give the pages back (about 140 KiB of the sandbox's
    // 370 KiB, per /proc/PID/smaps). brk and madvise are allowed.
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe { nix::libc::malloc_trim(0) };
    loop {
        nix::unistd::pause();
    }
}

/// Who a runner process confines itself as: the guest's or the sandbox's
/// spec.
struct ConfineAs<'a> {
    confinement: &'a Confinement,
    user: &'a UserPlan,
    rlimits: &'a [RlimitPlan],
    preopens: &'a [Preopen],
}

/// Confines the process that runs the guest (or holds the sandbox), with
/// what [`prepare`] left.
fn confine_self(who: &ConfineAs<'_>, prepared: &Prepared) -> Result<String, String> {
    apply_rlimits(who.rlimits).map_err(|e| e.to_string())?;
    confine_guest(
        &who.confinement.capabilities,
        who.user,
        who.preopens,
        prepared,
    )
    .map_err(|e| e.to_string())
}

/// Applies what comes first (AppArmor, oomScoreAdj, the spec's seccomp
/// program, the user namespaces), while /proc is in view.
fn prepare_confinement(who: &ConfineAs<'_>, cache: &ModuleCache) -> Result<Prepared, String> {
    prepare(who.confinement, who.preopens, cache).map_err(|e| e.to_string())
}

/// Tells the shim `ok <details>` or the error; on an error, or when the shim
/// cannot be told, the exit code to end with.
fn report_ready<T>(
    status: &mut File,
    prepared: Result<(T, String), String>,
) -> Result<T, ExitCode> {
    match prepared {
        Ok((ready, details)) => match write_status(status, Ok(&details)) {
            Ok(()) => Ok(ready),
            Err(_) => Err(ExitCode::from(RUNNER_FAILURE)),
        },
        Err(message) => {
            let _ = write_status(status, Err(&message));
            Err(ExitCode::from(RUNNER_FAILURE))
        }
    }
}

/// Waits for the start byte; false if the control pipe closed without one
/// (the task was deleted before it started). From then on the runner ends
/// when the shim does (see `wasmbox_runtime::shim_watch`).
fn wait_for_start(mut control: File) -> bool {
    let mut byte = [0u8; 1];
    if !matches!(control.read(&mut byte), Ok(1) if byte[0] == START) {
        return false;
    }
    if let Err(e) = wasmbox_runtime::shim_watch::end_with_the_shim(control) {
        log::warn!("cannot watch for the shim's end: {e}; this runner would outlive it");
    }
    true
}
