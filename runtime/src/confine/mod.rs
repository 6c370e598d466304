//! The runner's second wall: what it drops after it has loaded its guest
//! and before the guest's first instruction.
//!
//! A guest that escaped wasmtime lands in a process that:
//! - holds no host filesystem: an empty, read-only root with the preopens
//!   bound in ([`root`]), and Landlock rules on top;
//! - holds only the capabilities a WASI host can use, and never more
//!   than the spec gives ([`capabilities`]);
//! - runs under `no_new_privs`, with wasmbox's own seccomp allow-list and
//!   the spec's profile stacked on it ([`seccomp`]);
//! - runs as the spec's user, with its rlimits and `oomScoreAdj`, and
//!   under its AppArmor profile where AppArmor is on ([`apparmor`]; both
//!   applied by [`before_fork`]).
//!
//! The order matters: everything that needs a path of the host (AppArmor
//! through /proc, the preopens) or a capability (mounts, rlimits, the user
//! switch) comes before the root changes and the capabilities go, and the
//! seccomp filters come last, wasmbox's first, then the spec's. A process
//! must be single-threaded for all of this to cover it whole: capabilities,
//! Landlock and seccomp filters are per thread.

pub mod apparmor;
pub mod capabilities;
pub mod root;
pub mod seccomp;
pub mod spec_seccomp;

pub use spec_seccomp::SpecProgram;

use wasmbox_oci::{CapabilitySets, Confinement, Preopen, UserPlan};

use crate::cache::ModuleCache;

/// Why a runner cannot confine itself. The runner reports it at Create
/// and never runs the guest half-confined.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("seccomp: {what}: {reason}")]
    Seccomp { what: String, reason: String },
    #[error("{field}: {reason}")]
    Capability { field: String, reason: String },
    #[error("cannot switch to process.user: {0}")]
    User(String),
    #[error("cannot set up the runner's empty root: {step}: {reason}")]
    Root { step: String, reason: String },
    #[error("landlock: {0}")]
    Landlock(String),
    #[error("process.apparmorProfile {profile:?}: {reason}")]
    AppArmor { profile: String, reason: String },
    #[error("process.oomScoreAdj {value}: {reason}")]
    OomScoreAdj { value: i32, reason: String },
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(String),
    #[error("the runner has {threads} threads and can only confine itself with one")]
    Threads { threads: usize },
}

/// Confines a runner that runs a guest, or a pod sandbox's holder (which
/// has no preopens), with the spec's `capabilities` and its seccomp
/// program from [`before_fork`]. Returns what it got, for the shim's log.
pub fn confine_guest(
    capabilities: &CapabilitySets,
    user: &UserPlan,
    preopens: &[Preopen],
    spec_program: Option<&SpecProgram>,
) -> Result<String, ConfineError> {
    ensure_single_threaded()?;
    let own_filter = seccomp::guest_filter(nix::unistd::getpid().as_raw())?;
    root::enter_empty_root(preopens)?;
    let landlock = root::restrict_files(preopens, true)?;
    let kept = capabilities::drop_to(Some(capabilities), user)?;
    seal(&own_filter, spec_program)?;
    Ok(format!(
        "root=empty,{},seccomp=wasmbox{},caps={kept},nnp=1",
        root::landlock_summary(landlock),
        if spec_program.is_some() { "+spec" } else { "" }
    ))
}

/// Confines the PID-namespace parent, which only waits for `child` and
/// passes signals on: `user`, no capabilities, no files, and an allow-list
/// of some twenty calls under the spec's program. Its root becomes the
/// child's empty root when the child pivots (they share a mount
/// namespace).
pub fn confine_supervisor(
    user: &UserPlan,
    child: nix::unistd::Pid,
    spec_program: Option<&SpecProgram>,
) -> Result<(), ConfineError> {
    // No thread count here: the parent is what a fork of a one-threaded
    // process left, and it must not read /proc, which vanishes from its
    // view whenever the child pivots into the empty root (they share a
    // mount namespace and run concurrently). Every step below is a plain
    // system call.
    let own_filter = seccomp::supervisor_filter(child.as_raw())?;
    root::restrict_files(&[], false)?;
    capabilities::drop_to(None, user)?;
    seal(&own_filter, spec_program)
}

/// What is applied or prepared once, before the runner forks into its PID
/// namespace (both processes inherit or share it), while /proc is still in
/// view and the process may still write the cache: `process.apparmorProfile`,
/// `process.oomScoreAdj` (as runc writes it for the container's init), and
/// the spec's seccomp program, which both processes load.
pub fn before_fork(
    confinement: &Confinement,
    cache: &ModuleCache,
) -> Result<Option<SpecProgram>, ConfineError> {
    apparmor::apply(confinement.apparmor_profile.as_deref())?;
    if let Some(value) = confinement.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", value.to_string()).map_err(|e| {
            ConfineError::OomScoreAdj {
                value,
                reason: e.to_string(),
            }
        })?;
    }
    confinement
        .seccomp
        .as_ref()
        .map(|seccomp| SpecProgram::prepare(seccomp, cache))
        .transpose()
}

/// The last step, the same for every runner process: no_new_privs, then
/// wasmbox's filter, then the spec's program on top of it.
fn seal(
    own_filter: &libseccomp::ScmpFilterContext,
    spec_program: Option<&SpecProgram>,
) -> Result<(), ConfineError> {
    set_no_new_privs()?;
    own_filter.load().map_err(|e| ConfineError::Seccomp {
        what: "load wasmbox's filter".into(),
        reason: e.to_string(),
    })?;
    if let Some(program) = spec_program {
        program.load()?;
    }
    Ok(())
}

fn set_no_new_privs() -> Result<(), ConfineError> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| ConfineError::NoNewPrivs(e.to_string()))
}

/// Waits (briefly, on the kernel's own count) for threads that are on
/// their way out, such as a finished compile's workers, and refuses to go
/// on with more than one.
fn ensure_single_threaded() -> Result<(), ConfineError> {
    let count = || {
        std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .unwrap_or(usize::MAX)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let threads = count();
        if threads == 1 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(ConfineError::Threads { threads });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
