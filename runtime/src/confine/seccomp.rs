//! wasmbox's own seccomp allow-lists, built with libseccomp: one for a
//! runner that runs a guest (or holds a pod's namespaces), the same without
//! sockets for the process that compiles optimized code for the cache. The
//! spec's profile is stacked on the guest's (see [`super::spec_seccomp`]).
//!
//! The allow-lists name what wasmtime, wasmtime-wasi, tokio, hyper and
//! glibc call once the guest runs: memory, threads, futexes, clocks, file
//! I/O through already-open descriptors and `*at` calls, and sockets of
//! the internet families. Everything else gets EPERM: a probe by a library
//! (io_uring, say) then fails softly and falls back, exactly as under
//! Docker's default profile, and an attacker who has escaped wasmtime gets
//! nothing from the call either way. A kill would add nothing but crashed
//! tenants. `clone3` gets ENOSYS so glibc falls back to `clone`, whose
//! flags a filter can read; `clone` may not create namespaces.

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use nix::libc;

use super::ConfineError;

/// Set in the shim's environment, wasmbox's filters log every call they
/// deny to the kernel's audit log; they deny the same calls.
pub const LOG_ENV: &str = "WASMBOX_SECCOMP_LOG";

/// Calls a running guest's runner makes, allowed without conditions.
const GUEST_SYSCALLS: &[&str] = &[
    // Memory.
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "madvise",
    "mremap",
    "msync",
    "mincore",
    "memfd_create",
    "membarrier",
    // Threads, futexes, signals to itself (tgkill is conditioned below).
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "futex",
    "futex_waitv",
    "sched_yield",
    "sched_getaffinity",
    "gettid",
    "getpid",
    "getppid",
    "exit",
    "exit_group",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "sigaltstack",
    "restart_syscall",
    "pause",
    "set_tid_address",
    // Identity, read only.
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getgroups",
    "getresuid",
    "getresgid",
    // Time and randomness.
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "time",
    "getrandom",
    "getcpu",
    "uname",
    "getrusage",
    "sysinfo",
    // Descriptors and readiness.
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "lseek",
    "close",
    "close_range",
    "fcntl",
    "dup",
    "dup2",
    "dup3",
    "pipe",
    "pipe2",
    "eventfd",
    "eventfd2",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "sendfile",
    "splice",
    "copy_file_range",
    // Files, inside the preopens (the root is empty; Landlock and the
    // read-only mounts decide the rest). No chmod, chown or mknod: WASI has
    // none of them.
    "openat",
    "openat2",
    "open",
    "newfstatat",
    "fstat",
    "stat",
    "lstat",
    "statx",
    "getdents64",
    "getdents",
    "mkdirat",
    "mkdir",
    "unlinkat",
    "unlink",
    "rmdir",
    "renameat",
    "renameat2",
    "rename",
    "linkat",
    "link",
    "symlinkat",
    "symlink",
    "readlinkat",
    "readlink",
    "faccessat",
    "faccessat2",
    "access",
    "utimensat",
    "fsync",
    "fdatasync",
    "ftruncate",
    "fallocate",
    "fadvise64",
    "fstatfs",
    "statfs",
    "getcwd",
    // Sockets that exist (socket itself is conditioned below).
    "bind",
    "listen",
    "accept",
    "accept4",
    "connect",
    "getsockname",
    "getpeername",
    "setsockopt",
    "getsockopt",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    "shutdown",
];

/// What every runner process calls, whatever it runs: waiting, signals,
/// its end, memory, futexes, clocks.
const BASE_SYSCALLS: &[&str] = &[
    "wait4",
    "waitid",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "restart_syscall",
    "exit",
    "exit_group",
    "close",
    "read",
    "write",
    "getpid",
    "gettid",
    "brk",
    "mmap",
    "munmap",
    "madvise",
    "mprotect",
    "futex",
    "clock_gettime",
];

/// Namespace flags `clone` may not carry.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWTIME) as u64;

/// `PAGEMAP_SCAN`, `_IOWR('f', 16, struct pm_scan_arg)` (96 bytes), which
/// the libc crate does not name yet.
const PAGEMAP_SCAN: u64 = 0xc060_6610;

/// ioctls of a WASI host: non-blocking and close-on-exec toggles, bytes
/// readable, and whether stdio is a terminal; and PAGEMAP_SCAN, with which
/// wasmtime's pooling allocator finds the pages a request dirtied (on the
/// /proc/self/pagemap it opened before the root was emptied: a process's
/// own page flags, nothing of anyone else's). Not TIOCSTI, not anything
/// that configures a device.
const IOCTLS: &[u64] = &[
    PAGEMAP_SCAN,
    libc::FIONBIO,
    libc::FIONREAD,
    libc::FIOCLEX,
    libc::FIONCLEX,
    libc::TCGETS,
    libc::TIOCGWINSZ,
];

/// prctl options the runtime uses: thread names and the VMA names glibc
/// gives its arenas.
const PRCTL_OPTIONS: &[u64] = &[
    libc::PR_SET_NAME as u64,
    libc::PR_GET_NAME as u64,
    libc::PR_SET_VMA as u64,
    libc::PR_GET_DUMPABLE as u64,
];

fn filter_error(what: impl Into<String>, e: libseccomp::error::SeccompError) -> ConfineError {
    ConfineError::Seccomp {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// `arg == value` for an argument the kernel takes as a 32-bit int: the
/// upper half of its register is whatever the caller left there, so only
/// the lower half is compared (as the kernel reads it).
fn eq(arg: u32, value: u64) -> ScmpArgCompare {
    ScmpArgCompare::new(arg, ScmpCompareOp::MaskedEqual(0xffff_ffff), value)
}

/// `arg == value` on the whole 64-bit argument (ioctl requests: a value
/// with stray upper bits that the kernel would truncate must not match).
fn eq64(arg: u32, value: u64) -> ScmpArgCompare {
    ScmpArgCompare::new(arg, ScmpCompareOp::Equal, value)
}

/// The filter for a runner that runs a guest or holds a pod's namespaces,
/// whose pid is `pid` (signals only to itself).
pub fn guest_filter(pid: i32) -> Result<ScmpFilterContext, ConfineError> {
    let mut filter = allow_list(BASE_SYSCALLS.iter().chain(GUEST_SYSCALLS))?;
    allow_stacking(&mut filter)?;
    own_process_rules(&mut filter, pid)?;
    let mut rule = |name: &str, action: ScmpAction, args: &[ScmpArgCompare]| {
        add(&mut filter, name, action, args)
    };
    for ioctl in IOCTLS {
        rule("ioctl", ScmpAction::Allow, &[eq64(1, *ioctl)])?;
    }
    for family in [libc::AF_INET, libc::AF_INET6] {
        for kind in [libc::SOCK_STREAM, libc::SOCK_DGRAM] {
            rule(
                "socket",
                ScmpAction::Allow,
                &[
                    eq(0, family as u64),
                    ScmpArgCompare::new(1, ScmpCompareOp::MaskedEqual(0xf), kind as u64),
                ],
            )?;
        }
    }
    // An unnamed pair: tokio's signal driver wakes itself through one.
    rule(
        "socketpair",
        ScmpAction::Allow,
        &[eq(0, libc::AF_UNIX as u64)],
    )?;
    // Route netlink, read only without CAP_NET_ADMIN: glibc's getaddrinfo
    // asks it which address families are configured.
    rule(
        "socket",
        ScmpAction::Allow,
        &[
            eq(0, libc::AF_NETLINK as u64),
            eq(2, libc::NETLINK_ROUTE as u64),
        ],
    )?;
    Ok(filter)
}

/// The filter for `wasmbox-runner --optimize`, which compiles a module
/// for the cache: the guest's list without sockets, ioctls or stacking,
/// plus the lock on the cache entry.
pub fn compiler_filter(pid: i32) -> Result<ScmpFilterContext, ConfineError> {
    let mut filter = allow_list(BASE_SYSCALLS.iter().chain(GUEST_SYSCALLS).chain(&["flock"]))?;
    own_process_rules(&mut filter, pid)?;
    Ok(filter)
}

/// Threads without namespaces, signals to itself only, the prctl options
/// the runtime uses, and getrlimit.
fn own_process_rules(filter: &mut ScmpFilterContext, pid: i32) -> Result<(), ConfineError> {
    add(filter, "tgkill", ScmpAction::Allow, &[eq(0, pid as u64)])?;
    add(
        filter,
        "clone",
        ScmpAction::Allow,
        &[ScmpArgCompare::new(
            0,
            ScmpCompareOp::MaskedEqual(NAMESPACE_FLAGS),
            0,
        )],
    )?;
    add(filter, "clone3", ScmpAction::Errno(libc::ENOSYS), &[])?;
    for option in PRCTL_OPTIONS {
        add(filter, "prctl", ScmpAction::Allow, &[eq(0, *option)])?;
    }
    // getrlimit only: prlimit64 on itself without a new limit.
    add(
        filter,
        "prlimit64",
        ScmpAction::Allow,
        &[eq(0, 0), eq64(2, 0)],
    )
}

/// A further filter may be stacked (the spec's, loaded after this one): a
/// filter can only take away.
fn allow_stacking(filter: &mut ScmpFilterContext) -> Result<(), ConfineError> {
    // libseccomp also asks which actions the kernel has when it loads.
    for op in [
        libc::SECCOMP_SET_MODE_FILTER,
        libc::SECCOMP_GET_ACTION_AVAIL,
        libc::SECCOMP_GET_NOTIF_SIZES,
    ] {
        add(filter, "seccomp", ScmpAction::Allow, &[eq(0, op as u64)])?;
    }
    add(
        filter,
        "prctl",
        ScmpAction::Allow,
        &[
            eq(0, libc::PR_SET_SECCOMP as u64),
            eq(1, libc::SECCOMP_MODE_FILTER as u64),
        ],
    )?;
    Ok(())
}

fn allow_list<'a>(
    names: impl Iterator<Item = &'a &'a str>,
) -> Result<ScmpFilterContext, ConfineError> {
    // libseccomp probes the kernel's seccomp API once, lazily; have it do
    // so now, while nothing filters its probes, not when a second filter
    // is loaded under this one.
    let _ = libseccomp::get_api();
    let mut filter = ScmpFilterContext::new(ScmpAction::Errno(libc::EPERM))
        .map_err(|e| filter_error("wasmbox's filter", e))?;
    // The caller sets no_new_privs itself, before the first filter.
    filter
        .set_ctl_nnp(false)
        .map_err(|e| filter_error("wasmbox's filter", e))?;
    if std::env::var_os(LOG_ENV).is_some() {
        // Denials go to the kernel's audit log (dmesg: type=1326).
        filter
            .set_ctl_log(true)
            .map_err(|e| filter_error("wasmbox's filter", e))?;
    }
    for name in names {
        add(&mut filter, name, ScmpAction::Allow, &[])?;
    }
    Ok(filter)
}

/// Adds one rule; a name this architecture does not have (`open` on
/// aarch64, say) is skipped.
fn add(
    filter: &mut ScmpFilterContext,
    name: &str,
    action: ScmpAction,
    args: &[ScmpArgCompare],
) -> Result<(), ConfineError> {
    let Ok(syscall) = ScmpSyscall::from_name(name) else {
        return Ok(());
    };
    filter
        .add_rule_conditional(action, syscall, args)
        .map(|_| ())
        .map_err(|e| filter_error(format!("wasmbox's rule for {name}"), e))
}
