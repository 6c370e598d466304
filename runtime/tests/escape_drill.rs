//! The escape drill: what an attacker who had escaped wasmtime would try
//! next, in a process confined by the runner's own entry point
//! (`wasmbox_runtime::confine::confine_guest`), called exactly as the
//! runner calls it.
//!
//! The test re-runs itself as the subject (one thread, in a mount namespace
//! of its own, as the shim starts a runner), once as root with the
//! capabilities ctr's default spec gives and once as uid 1000 with none.
//! The subject confines itself, tries each attack, and prints what it got;
//! the test checks every error. It needs root, as the runner does.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::libc;
use wasmbox_oci::{CapabilitySets, Preopen, UserPlan};

const SUBJECT_ENV: &str = "WASMBOX_DRILL_SUBJECT";

/// The capabilities containerd's default spec gives a container.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn main() {
    if let Some(uid) = std::env::var_os(SUBJECT_ENV) {
        let uid: u32 = uid.to_string_lossy().parse().expect("uid");
        let args: Vec<String> = std::env::args().skip(1).collect();
        subject(uid, Path::new(&args[0]), Path::new(&args[1]));
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("escape drill: 0 passed, 1 failed (it needs root, as the runner does)");
        std::process::exit(1);
    }
    let mut passed = 0;
    let mut failed = Vec::new();
    for uid in [0, 1000] {
        let work = tempfile::Builder::new()
            .prefix("wasmbox-drill-")
            .tempdir()
            .expect("temp dir");
        let preopen = work.path().join("preopen");
        std::fs::create_dir(&preopen).unwrap();
        std::fs::write(preopen.join("data"), "inside").unwrap();
        std::os::unix::fs::chown(&preopen, Some(uid), Some(uid)).unwrap();
        std::os::unix::fs::chown(preopen.join("data"), Some(uid), Some(uid)).unwrap();
        let secret = work.path().join("host-secret");
        std::fs::write(&secret, "the host's").unwrap();

        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .env(SUBJECT_ENV, uid.to_string())
            .arg(&preopen)
            .arg(&secret);
        // SAFETY: unshare takes only flags; nothing is allocated.
        unsafe {
            command.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = command.output().expect("run the drill subject");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("--- confined as uid {uid} ---");
        print!("{text}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let confined = text.lines().any(|l| l.starts_with("confined: "));
        if !confined || !out.status.success() {
            failed.push(format!(
                "uid {uid}: the subject did not confine itself ({})",
                out.status
            ));
            continue;
        }
        for (attempt, expected) in expectations() {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{attempt}: ")))
                .unwrap_or("");
            let got = line
                .split_once(": ")
                .map(|(_, got)| got)
                .unwrap_or("missing");
            if expected.contains(&got) {
                passed += 1;
            } else {
                failed.push(format!(
                    "uid {uid}: {attempt}: got {got}, expected {expected:?}"
                ));
            }
        }
    }
    for failure in &failed {
        println!("FAILED {failure}");
    }
    println!("escape drill: {passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

/// Each attempt and the errors that count as stopped. EPERM is the
/// seccomp filter's answer; ENOENT is the empty root's (the file is not
/// there to open); EROFS is a read-only mount's.
fn expectations() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("read a file in the preopen", &["ok"]),
        ("execve /bin/sh", &["EPERM"]),
        ("open /etc/shadow", &["ENOENT"]),
        ("open a host file in /tmp", &["ENOENT"]),
        ("open /proc/sysrq-trigger for writing", &["ENOENT"]),
        ("write to the read-only root", &["EROFS"]),
        ("mount a tmpfs", &["EPERM"]),
        ("ptrace the parent", &["EPERM"]),
        ("setuid(0)", &["EPERM"]),
        ("open a raw socket", &["EPERM"]),
        ("open a packet socket", &["EPERM"]),
        ("load a kernel module", &["EPERM"]),
        ("unshare a user namespace", &["EPERM"]),
        ("clone into a new user namespace", &["EPERM"]),
        ("chmod a file to setuid", &["EPERM"]),
        ("chown a file to root", &["EPERM"]),
        ("signal the parent", &["EPERM"]),
        ("open_by_handle_at (shocker)", &["EPERM"]),
        ("bpf", &["EPERM"]),
        ("keyctl", &["EPERM"]),
        ("io_uring_setup", &["EPERM"]),
        ("TIOCSTI on stdin", &["EPERM"]),
    ]
}

fn errno_name(result: libc::c_long) -> String {
    if result >= 0 {
        return "ok".into();
    }
    let errno = nix::errno::Errno::last();
    format!("{errno:?}")
}

fn report(attempt: &str, result: libc::c_long) {
    println!("{attempt}: {}", errno_name(result));
}

fn c(path: &str) -> CString {
    CString::new(path).unwrap()
}

fn subject(uid: u32, preopen: &Path, secret: &Path) {
    let mut sets = CapabilitySets::default();
    if uid == 0 {
        let all: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
        sets = CapabilitySets {
            bounding: all.clone(),
            effective: all.clone(),
            permitted: all,
            ..Default::default()
        };
    }
    let user = UserPlan {
        uid,
        gid: uid,
        additional_gids: Vec::new(),
    };
    let preopens = [Preopen {
        host_path: PathBuf::from(preopen),
        guest_path: "/".into(),
        read_only: false,
        id_mappings: None,
    }];
    match wasmbox_runtime::confine::confine_guest(&sets, &user, &preopens, &Default::default()) {
        Ok(summary) => println!("confined: {summary}"),
        Err(e) => {
            println!("confinement failed: {e}");
            std::process::exit(1);
        }
    }
    let data = format!("{}/data", preopen.display());
    // SAFETY: every call below is a plain system call on arguments that
    // live for the call; the process exits when the drill is done.
    unsafe {
        let fd = libc::open(c(&data).as_ptr(), libc::O_RDONLY);
        report("read a file in the preopen", fd as libc::c_long);

        let sh = c("/bin/sh");
        let argv = [sh.as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null()];
        report(
            "execve /bin/sh",
            libc::execve(sh.as_ptr(), argv.as_ptr(), envp.as_ptr()) as libc::c_long,
        );
        report(
            "open /etc/shadow",
            libc::open(c("/etc/shadow").as_ptr(), libc::O_RDONLY) as libc::c_long,
        );
        report(
            "open a host file in /tmp",
            libc::open(c(&secret.to_string_lossy()).as_ptr(), libc::O_RDONLY) as libc::c_long,
        );
        report(
            "open /proc/sysrq-trigger for writing",
            libc::open(c("/proc/sysrq-trigger").as_ptr(), libc::O_WRONLY) as libc::c_long,
        );
        report(
            "write to the read-only root",
            libc::open(
                c("/planted").as_ptr(),
                libc::O_WRONLY | libc::O_CREAT,
                0o644,
            ) as libc::c_long,
        );
        report(
            "mount a tmpfs",
            libc::mount(
                c("none").as_ptr(),
                c(&preopen.to_string_lossy()).as_ptr(),
                c("tmpfs").as_ptr(),
                0,
                std::ptr::null(),
            ) as libc::c_long,
        );
        report(
            "ptrace the parent",
            libc::ptrace(libc::PTRACE_ATTACH, libc::getppid(), 0, 0),
        );
        report("setuid(0)", libc::setuid(0) as libc::c_long);
        report(
            "open a raw socket",
            libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) as libc::c_long,
        );
        report(
            "open a packet socket",
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) as libc::c_long,
        );
        report(
            "load a kernel module",
            libc::syscall(libc::SYS_finit_module, 0, c("").as_ptr(), 0),
        );
        report(
            "unshare a user namespace",
            libc::unshare(libc::CLONE_NEWUSER) as libc::c_long,
        );
        report(
            "clone into a new user namespace",
            libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
                0,
                0,
                0,
                0,
            ),
        );
        report(
            "chmod a file to setuid",
            libc::chmod(c(&data).as_ptr(), 0o4755) as libc::c_long,
        );
        report(
            "chown a file to root",
            libc::chown(c(&data).as_ptr(), 0, 0) as libc::c_long,
        );
        report(
            "signal the parent",
            libc::kill(libc::getppid(), libc::SIGKILL) as libc::c_long,
        );
        report(
            "open_by_handle_at (shocker)",
            libc::syscall(
                libc::SYS_open_by_handle_at,
                libc::AT_FDCWD,
                0,
                libc::O_RDONLY,
            ),
        );
        report("bpf", libc::syscall(libc::SYS_bpf, 0, 0, 0));
        report("keyctl", libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0));
        report(
            "io_uring_setup",
            libc::syscall(libc::SYS_io_uring_setup, 1, 0),
        );
        let byte: libc::c_char = b'x' as libc::c_char;
        report(
            "TIOCSTI on stdin",
            libc::ioctl(0, libc::TIOCSTI, &byte) as libc::c_long,
        );
    }
}
