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

use wasmbox_oci::{Confinement, Preopen, UserPlan};

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
/// has no preopens). Returns what it got, for the shim's log.
pub fn confine_guest(
    confinement: &Confinement,
    user: &UserPlan,
    preopens: &[Preopen],
) -> Result<String, ConfineError> {
    ensure_single_threaded()?;
    let spec_filter = confinement
        .seccomp
        .as_ref()
        .map(seccomp::spec_filter)
        .transpose()?;
    let own_filter = seccomp::guest_filter(nix::unistd::getpid().as_raw())?;
    root::enter_empty_root(preopens)?;
    let landlock = root::restrict_files(preopens, true)?;
    let kept = capabilities::drop_to(Some(&confinement.capabilities), user)?;
    set_no_new_privs()?;
    load(&own_filter)?;
    if let Some(filter) = &spec_filter {
        load(filter)?;
    }
    Ok(format!(
        "root=empty,{},seccomp=wasmbox{},caps={kept},nnp=1",
        root::landlock_summary(landlock),
        if spec_filter.is_some() { "+spec" } else { "" }
    ))
}

/// Confines the PID-namespace parent, which only waits for `child` and
/// passes signals on: `user`, no capabilities, no files, and an allow-list
/// of some twenty calls. Its root becomes the child's empty root when the
/// child pivots (they share a mount namespace).
pub fn confine_supervisor(
    confinement: &Confinement,
    user: &UserPlan,
    child: nix::unistd::Pid,
) -> Result<(), ConfineError> {
    // No thread count here: the parent is what a fork of a one-threaded
    // process left, and it must not read /proc, which vanishes from its
    // view whenever the child pivots into the empty root (they share a
    // mount namespace and run concurrently). Every step below is a plain
    // system call.
    let spec_filter = confinement
        .seccomp
        .as_ref()
        .map(seccomp::spec_filter)
        .transpose()?;
    let own_filter = seccomp::supervisor_filter(child.as_raw())?;
    root::restrict_files(&[], false)?;
    capabilities::drop_to(None, user)?;
    set_no_new_privs()?;
    load(&own_filter)?;
    if let Some(filter) = &spec_filter {
        load(filter)?;
    }
    Ok(())
}

/// What is applied once, before the runner forks into its PID namespace
/// (both processes inherit it) and while /proc is still in view:
/// `process.oomScoreAdj`, as runc writes it for the container's init, and
/// `process.apparmorProfile`.
pub fn before_fork(confinement: &Confinement) -> Result<(), ConfineError> {
    apparmor::apply(confinement.apparmor_profile.as_deref())?;
    let Some(value) = confinement.oom_score_adj else {
        return Ok(());
    };
    std::fs::write("/proc/self/oom_score_adj", value.to_string()).map_err(|e| {
        ConfineError::OomScoreAdj {
            value,
            reason: e.to_string(),
        }
    })
}

fn set_no_new_privs() -> Result<(), ConfineError> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| ConfineError::NoNewPrivs(e.to_string()))
}

fn load(filter: &libseccomp::ScmpFilterContext) -> Result<(), ConfineError> {
    filter.load().map_err(|e| ConfineError::Seccomp {
        what: "load".into(),
        reason: e.to_string(),
    })
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
