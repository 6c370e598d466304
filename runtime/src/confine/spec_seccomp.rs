//! The spec's `linux.seccomp`, as runc applies it, built once per node.
//!
//! libseccomp turns a profile into a BPF program. Built in each runner
//! on every start, that made confinement take 12.7–16.4 ms here with
//! containerd's default profile instead of about 1 ms. So the runner
//! builds the program once per node and keeps it in the node cache under
//! the sha256 of the profile, libseccomp's version and the architecture
//! (see [`ModuleCache::load_or_store_program`]): every later start of a
//! container with the same profile reads a few kilobytes, and loads it
//! with one seccomp(2) call, with the flags the profile asks for.

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use libseccomp::{ScmpSyscall, ScmpVersion};
use nix::libc;
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag};
use oci_spec::runtime::{LinuxSeccompArg, LinuxSeccompOperator};
use sha2::{Digest, Sha256};

use super::ConfineError;
use crate::cache::ModuleCache;

/// Size of one BPF instruction (`struct sock_filter`).
const INSTRUCTION_BYTES: usize = 8;

/// The spec's profile as a BPF program, ready to load.
pub struct SpecProgram {
    instructions: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl SpecProgram {
    /// The program for `seccomp`: from the node cache, or built with
    /// libseccomp and stored there.
    pub fn prepare(seccomp: &LinuxSeccomp, cache: &ModuleCache) -> Result<Self, ConfineError> {
        let bytes =
            cache.load_or_store_program(&cache_key(seccomp), || export(&spec_filter(seccomp)?))?;
        let instructions = decode(&bytes).ok_or_else(|| ConfineError::Seccomp {
            what: "linux.seccomp".into(),
            reason: format!(
                "libseccomp's program is {} bytes, not whole instructions",
                bytes.len()
            ),
        })?;
        Ok(Self {
            instructions,
            flags: load_flags(seccomp),
        })
    }

    /// Loads the program on this thread; no_new_privs must be set.
    pub fn load(&self) -> Result<(), ConfineError> {
        let program = libc::sock_fprog {
            len: self.instructions.len() as u16,
            filter: self.instructions.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `program` points at `instructions`, which outlive the
        // call; the kernel copies and checks the program.
        let result = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &program as *const libc::sock_fprog,
            )
        };
        if result != 0 {
            return Err(ConfineError::Seccomp {
                what: "load linux.seccomp".into(),
                reason: std::io::Error::last_os_error().to_string(),
            });
        }
        Ok(())
    }
}

/// The BPF program libseccomp generates for `filter`, the one its own
/// load would hand the kernel.
fn export(filter: &ScmpFilterContext) -> Result<Vec<u8>, ConfineError> {
    let failed = |reason: String| ConfineError::Seccomp {
        what: "linux.seccomp".into(),
        reason: format!("cannot export the program: {reason}"),
    };
    let memory =
        nix::sys::memfd::memfd_create(c"wasmbox-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| failed(e.to_string()))?;
    filter
        .export_bpf(&memory)
        .map_err(|e| failed(e.to_string()))?;
    let mut file = std::fs::File::from(memory);
    let mut bytes = Vec::new();
    std::io::Seek::rewind(&mut file)
        .and_then(|()| std::io::Read::read_to_end(&mut file, &mut bytes))
        .map_err(|e| failed(e.to_string()))?;
    Ok(bytes)
}

/// Names the program by everything it is built from.
fn cache_key(seccomp: &LinuxSeccomp) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(seccomp).unwrap_or_default());
    if let Ok(version) = ScmpVersion::current() {
        hasher.update(format!(
            "{}.{}.{}",
            version.major, version.minor, version.micro
        ));
    }
    hasher.update(format!("{:?}", ScmpArch::native()));
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(INSTRUCTION_BYTES) {
        return None;
    }
    let count = bytes.len() / INSTRUCTION_BYTES;
    u16::try_from(count).ok()?;
    Some(
        bytes
            .chunks_exact(INSTRUCTION_BYTES)
            .map(|i| libc::sock_filter {
                code: u16::from_ne_bytes([i[0], i[1]]),
                jt: i[2],
                jf: i[3],
                k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
            })
            .collect(),
    )
}

/// The seccomp(2) flags of the profile's `flags`. TSYNC is not needed
/// (the runner is one thread when it loads), and WAIT_KILLABLE_RECV only
/// means something with a notify listener, which the plan refuses.
fn load_flags(seccomp: &LinuxSeccomp) -> libc::c_ulong {
    seccomp
        .flags()
        .iter()
        .flatten()
        .map(|flag| match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync
            | LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        })
        .fold(0, |all, flag| all | flag)
}

/// The spec's `linux.seccomp`, as runc builds it: rules whose action is
/// the default are dropped (libseccomp refuses them), names this kernel's
/// libseccomp does not know are skipped with a log line, and conditions on
/// the same argument become separate rules (libseccomp cannot AND them).
pub fn spec_filter(seccomp: &LinuxSeccomp) -> Result<ScmpFilterContext, ConfineError> {
    let field_error = |field: String, e: libseccomp::error::SeccompError| ConfineError::Seccomp {
        what: field,
        reason: e.to_string(),
    };
    let default = action(seccomp.default_action(), seccomp.default_errno_ret());
    let mut filter = ScmpFilterContext::new(default)
        .map_err(|e| field_error("linux.seccomp.defaultAction".into(), e))?;
    filter
        .set_ctl_nnp(false)
        .map_err(|e| field_error("linux.seccomp".into(), e))?;
    for arch in seccomp.architectures().iter().flatten() {
        let name = arch.to_string();
        let Ok(arch) = name.parse::<ScmpArch>() else {
            return Err(ConfineError::Seccomp {
                what: format!("linux.seccomp.architectures {name}"),
                reason: "libseccomp does not know this architecture".into(),
            });
        };
        filter
            .add_arch(arch)
            .map_err(|e| field_error(format!("linux.seccomp.architectures {name}"), e))?;
    }
    for (index, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let rule_action = action(rule.action(), rule.errno_ret());
        if rule_action == default {
            continue;
        }
        let args = rule.args().clone().unwrap_or_default();
        let conditions = condition_sets(&args);
        for name in rule.names() {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                log::debug!("linux.seccomp.syscalls[{index}]: unknown system call {name:?} skipped, as runc does");
                continue;
            };
            for set in &conditions {
                filter
                    .add_rule_conditional(rule_action, syscall, set)
                    .map_err(|e| {
                        field_error(format!("linux.seccomp.syscalls[{index}] {name}"), e)
                    })?;
            }
        }
    }
    Ok(filter)
}

fn action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> ScmpAction {
    let errno = errno_ret.map(|e| e as i32).unwrap_or(libc::EPERM);
    match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        // Refused when the plan was made (wasmbox_oci::confine).
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Errno(libc::ENOSYS),
    }
}

/// All conditions in one rule (AND), unless two name the same argument:
/// then one rule per condition (OR), as runc does.
fn condition_sets(args: &[LinuxSeccompArg]) -> Vec<Vec<ScmpArgCompare>> {
    let compares: Vec<ScmpArgCompare> = args.iter().map(compare).collect();
    let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
    indexes.sort();
    indexes.dedup();
    if indexes.len() == args.len() {
        vec![compares]
    } else {
        compares.into_iter().map(|c| vec![c]).collect()
    }
}

fn compare(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // For a masked compare, `value` is the mask and `valueTwo` the
        // value, as in the runtime spec and runc.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                arg.index() as u32,
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            )
        }
    };
    ScmpArgCompare::new(arg.index() as u32, op, arg.value())
}
