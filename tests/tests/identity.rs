//! Namespaces, user and rlimits: the runner joins the namespaces the spec
//! names by path, creates the others, and runs as `process.user` with
//! `process.rlimits`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use wasmbox_tests::*;

/// Starts the sleeper with `extra` ctr flags; returns the ctr child and the
/// runner's pid once the guest is up.
fn start_sleeper(
    cd: &Containerd,
    root: &str,
    id: &str,
    extra: &[&str],
) -> (std::process::Child, u32) {
    let mut args = vec!["run", "--rm", "--runtime", RUNTIME];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--rootfs", root, id, "/sleeper.wasm"]);
    start_sleeper_with(cd, id, &args)
}

/// Starts the sleeper with the full `ctr` arguments `args`.
fn start_sleeper_with(cd: &Containerd, id: &str, args: &[&str]) -> (std::process::Child, u32) {
    let mut run = cd.spawn_ctr(args);
    let mut lines = Lines::of(&mut run);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = run.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = run.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("ctr {args:?} exited ({status}) before the guest was up: {err}");
        }
        if lines.try_next().is_some_and(|l| l == "sleeper: up") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sleeper did not come up within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = cd.task_pid(id);
    (run, pid)
}

fn ns_inode(path: &str) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .ino()
}

/// The interfaces of a process's network namespace, from /proc/PID/net/dev.
fn interfaces(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .collect()
}

#[test]
fn a_new_network_namespace_has_only_loopback_and_host_or_path_namespaces_are_joined() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/sleeper.wasm", &read_sample("sleeper"))]);
    let root = rootfs.path().to_str().unwrap();

    // ctr's default spec asks for new network, ipc and uts namespaces.
    let (mut run, pid) = start_sleeper(&cd, root, "ns-new", &[]);
    for ns in ["net", "ipc", "uts"] {
        assert_ne!(
            ns_inode(&format!("/proc/{pid}/ns/{ns}")),
            ns_inode(&format!("/proc/self/ns/{ns}")),
            "{ns}"
        );
    }
    assert_eq!(interfaces(pid), ["lo"]);
    cd.kill_and_wait(&mut run, "ns-new");

    // --net-host: no network namespace in the spec, so the host's.
    let (mut run, pid) = start_sleeper(&cd, root, "ns-host", &["--net-host"]);
    assert_eq!(
        ns_inode(&format!("/proc/{pid}/ns/net")),
        ns_inode("/proc/self/ns/net")
    );
    cd.kill_and_wait(&mut run, "ns-host");

    // A namespace given by path is joined: here one that another process holds.
    let mut holder = std::process::Command::new("unshare")
        .args(["--net", "--ipc", "sleep", "60"])
        .spawn()
        .expect("unshare from util-linux");
    let net = format!("/proc/{}/ns/net", holder.id());
    let ipc = format!("/proc/{}/ns/ipc", holder.id());
    // unshare has entered its namespaces once it execs sleep.
    wait_until(
        "unshare to enter a new namespace",
        Duration::from_secs(5),
        || ns_inode(&net) != ns_inode("/proc/self/ns/net"),
    );
    let with_net = format!("network:{net}");
    let with_ipc = format!("ipc:{ipc}");
    let (mut run, pid) = start_sleeper(
        &cd,
        root,
        "ns-join",
        &["--with-ns", &with_net, "--with-ns", &with_ipc],
    );
    assert_eq!(ns_inode(&format!("/proc/{pid}/ns/net")), ns_inode(&net));
    assert_eq!(ns_inode(&format!("/proc/{pid}/ns/ipc")), ns_inode(&ipc));
    cd.kill_and_wait(&mut run, "ns-join");
    let _ = holder.kill();
    let _ = holder.wait();
    cd.assert_nothing_left();
}

#[test]
fn the_guest_runs_as_process_user_with_process_rlimits() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/sleeper.wasm", &read_sample("sleeper"))]);
    let args = cd.run_as_user_args(rootfs.path(), "user1", 1000, 1001, &["/sleeper.wasm"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut run, pid) = start_sleeper_with(&cd, "user1", &args);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(field("Uid:"), ["1000"; 4]);
    assert_eq!(field("Gid:"), ["1001"; 4]);
    // ctr's default spec sets RLIMIT_NOFILE to 1024:1024.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        nofile.split_whitespace().collect::<Vec<_>>()[3..5],
        ["1024", "1024"],
        "{nofile}"
    );
    cd.kill_and_wait(&mut run, "user1");
    cd.assert_nothing_left();
}

#[test]
fn file_permissions_are_checked_as_process_user() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/fsprobe.wasm", &read_sample("fsprobe"))]);
    let r = rootfs.path();
    // Like an image's rootfs: readable and searchable by everyone.
    std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(r.join("rootonly")).unwrap();
    std::fs::set_permissions(r.join("rootonly"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(r.join("mine")).unwrap();
    std::os::unix::fs::chown(r.join("mine"), Some(1000), Some(1000)).unwrap();
    std::fs::write(r.join("secret"), "root only").unwrap();
    std::fs::set_permissions(r.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = cd.run_as_user_args(
        r,
        "perm1",
        1000,
        1000,
        &[
            "/fsprobe.wasm",
            "write:/rootonly/x:no",
            "write:/mine/x:yes",
            "read:/secret",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cd.ctr(&args);
    assert_success(&out, "fsprobe as 1000");
    let text = stdout(&out);
    assert!(text.contains("write /rootonly/x: error"), "{text}");
    assert!(text.contains("write /mine/x: ok"), "{text}");
    assert!(text.contains("read /secret: error"), "{text}");
    assert_eq!(std::fs::metadata(r.join("mine/x")).unwrap().uid(), 1000);
    assert!(!r.join("rootonly/x").exists());
    cd.assert_nothing_left();
}

#[test]
fn the_guest_is_pid_1_of_a_new_pid_namespace_and_still_stops_on_sigterm() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/sleeper.wasm", &read_sample("sleeper"))]);
    let root = rootfs.path().to_str().unwrap();
    // ctr's default spec asks for a new PID namespace.
    let (mut run, task_pid) = start_sleeper(&cd, root, "pid1", &[]);
    // The task's pid is the runner that runs the guest, as runc's is the
    // container's init, and the only process of the task: its parent is
    // the shim.
    let guest = task_pid;
    let cmdline = |pid: &str| {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
            .replace('\0', " ")
    };
    assert!(
        cmdline(&guest.to_string()).contains("wasmbox-runner"),
        "the task is not the runner"
    );
    let parent = std::fs::read_to_string(format!("/proc/{guest}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:").map(|p| p.trim().to_string()))
        .expect("a parent");
    assert!(
        cmdline(&parent).contains("containerd-shim-wasmbox"),
        "the runner's parent is not the shim but {}",
        cmdline(&parent)
    );
    let status = std::fs::read_to_string(format!("/proc/{guest}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "{nspid}");
    assert_ne!(
        ns_inode(&format!("/proc/{guest}/ns/pid")),
        ns_inode("/proc/self/ns/pid")
    );

    // A PID 1 ignores SIGTERM unless it handles it; this one must stop.
    assert_success(&cd.ctr(&["task", "kill", "pid1"]), "kill");
    let exit = wait_with_timeout(&mut run, Duration::from_secs(10));
    assert_eq!(exit.code(), Some(143));
    cd.assert_nothing_left();
}
