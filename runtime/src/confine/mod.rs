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
//!   applied by [`prepare`]);
//! - in the spec's user namespace, where it asks for one: container root
//!   is then an unprivileged uid of the host ([`wasmbox_idmap`]). The
//!   namespace is made (or opened) first, while the runner is still root
//!   outside it, and joined last, after the root is set up and before the
//!   user switch and the capability drop.
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

use std::os::fd::{AsFd, OwnedFd};

use wasmbox_idmap::IdmapError;
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
    #[error("cannot lower the compile's CPU priority to SCHED_IDLE: {0}")]
    Scheduler(String),
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(String),
    #[error("the runner has {threads} threads and can only confine itself with one")]
    Threads { threads: usize },
    #[error("{0}")]
    Idmap(#[from] IdmapError),
    #[error("linux.namespaces user path {path}: {reason}")]
    UserNamespacePath { path: String, reason: String },
}

/// What [`prepare`] leaves for [`confine_guest`].
#[derive(Default)]
pub struct Prepared {
    /// The spec's seccomp program, built (or read from the cache) once.
    pub spec_program: Option<SpecProgram>,
    /// The user namespace to join at the end, made or opened.
    pub user_namespace: Option<OwnedFd>,
}

impl Prepared {
    fn join_user_namespace(&self) -> Result<&'static str, ConfineError> {
        match &self.user_namespace {
            Some(namespace) => {
                wasmbox_idmap::join(namespace.as_fd())?;
                Ok(",userns")
            }
            None => Ok(""),
        }
    }
}

/// Confines a runner that runs a guest, or a pod sandbox's holder (which
/// has no preopens), with the spec's `capabilities`, and what
/// [`prepare`] prepared. Returns what it got, for the shim's log.
pub fn confine_guest(
    capabilities: &CapabilitySets,
    user: &UserPlan,
    preopens: &[Preopen],
    prepared: &Prepared,
) -> Result<String, ConfineError> {
    ensure_single_threaded()?;
    let own_filter = seccomp::guest_filter(nix::unistd::getpid().as_raw())?;
    root::enter_empty_root(preopens)?;
    let landlock = root::restrict_files(preopens, true)?;
    let userns = prepared.join_user_namespace()?;
    let kept = capabilities::drop_to(Some(capabilities), user)?;
    seal(&own_filter, prepared.spec_program.as_ref())?;
    Ok(format!(
        "root=empty,{},seccomp=wasmbox{},caps={kept},nnp=1{userns}",
        root::landlock_summary(landlock),
        if prepared.spec_program.is_some() {
            "+spec"
        } else {
            ""
        }
    ))
}

/// Confines `wasmbox-runner --optimize`, which compiles a module it has
/// already read into `cache_dir`: still root (the cache is root's), but
/// with no capabilities, files beneath the cache only, SCHED_IDLE (it gets
/// the CPU no container wants), and the guest's allow-list without sockets.
/// Returns what it got, for the shim's log.
pub fn confine_compiler(cache_dir: &std::path::Path) -> Result<String, ConfineError> {
    ensure_single_threaded()?;
    let idle = nix::libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain system call on this thread, with a valid parameter.
    if unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_IDLE, &idle) } != 0 {
        return Err(ConfineError::Scheduler(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    let own_filter = seccomp::compiler_filter(nix::unistd::getpid().as_raw())?;
    let cache = Preopen {
        host_path: cache_dir.to_path_buf(),
        guest_path: String::new(),
        read_only: false,
        id_mappings: None,
    };
    let landlock = root::restrict_files(&[cache], true)?;
    let root = UserPlan {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
    };
    let kept = capabilities::drop_to(None, &root)?;
    seal(&own_filter, None)?;
    Ok(format!(
        "{},seccomp=wasmbox-compile,caps={kept},nnp=1,sched=idle",
        root::landlock_summary(landlock)
    ))
}

/// What is applied or prepared first, while /proc is still in view and the
/// process may still write the cache: `process.apparmorProfile`,
/// `process.oomScoreAdj` (as runc writes it for the container's init), the
/// spec's seccomp program, the container's user namespace (made by a
/// helper process, or opened), and the id-mapped `preopens` (before the
/// guest opens them).
pub fn prepare(
    confinement: &Confinement,
    preopens: &[Preopen],
    cache: &ModuleCache,
) -> Result<Prepared, ConfineError> {
    apparmor::apply(confinement.apparmor_profile.as_deref())?;
    if let Some(value) = confinement.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", value.to_string()).map_err(|e| {
            ConfineError::OomScoreAdj {
                value,
                reason: e.to_string(),
            }
        })?;
    }
    let spec_program = confinement
        .seccomp
        .as_ref()
        .map(|seccomp| SpecProgram::prepare(seccomp, cache))
        .transpose()?;
    let user_namespace = match &confinement.user_namespace {
        None => None,
        Some(plan) => Some(match &plan.path {
            Some(path) => std::fs::File::open(path).map(OwnedFd::from).map_err(|e| {
                ConfineError::UserNamespacePath {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }
            })?,
            None => wasmbox_idmap::user_namespace(&plan.mappings, "linux")?,
        }),
    };
    root::map_preopens(preopens)?;
    Ok(Prepared {
        spec_program,
        user_namespace,
    })
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
