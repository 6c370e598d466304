//! The first start of a big module on baseline code, with the optimized
//! compile beside it: what runs, where the compile runs and as whom, what
//! the next start gets, the container's say in it, and a shim killed
//! mid-compile.

use std::time::Duration;

use wasmbox_tests::modules::big_module;
use wasmbox_tests::*;

/// The running `wasmbox-runner --optimize` of this containerd, if any.
fn compile_process(cd: &Containerd) -> Option<u32> {
    cd.wasmbox_pid("wasmbox-runner --optimize ")
}

/// A field of /proc/PID/status, such as `CapEff`.
fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| Some(l.strip_prefix(field)?.strip_prefix(':')?.trim().to_string()))
}

/// The scheduling policy (field 41 of /proc/PID/stat; 5 is SCHED_IDLE)
/// and the parent's pid.
fn policy_and_parent(pid: u32) -> Option<(u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    Some((fields.get(38)?.parse().ok()?, fields.get(1)?.parse().ok()?))
}

/// How the compile process of `id`'s module looked while it ran.
#[derive(Debug, PartialEq)]
struct Confined {
    capabilities: String,
    no_new_privs: String,
    seccomp: String,
    policy: u32,
    in_the_containers_cgroup: bool,
}

/// Waits for a compile process and reads how it is confined, once it has
/// confined itself (it reads and hashes the module first, unconfined as
/// the shim's child); the last look if it never does within the bound.
fn watch_compile(cd: &Containerd, id: &str) -> (u32, Confined) {
    let look = || {
        let pid = compile_process(cd)?;
        let (policy, _) = policy_and_parent(pid)?;
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        Some((
            pid,
            Confined {
                capabilities: status_field(pid, "CapEff")?,
                no_new_privs: status_field(pid, "NoNewPrivs")?,
                seccomp: status_field(pid, "Seccomp")?,
                policy,
                in_the_containers_cgroup: cgroup.contains(id),
            },
        ))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while std::time::Instant::now() < deadline {
        last = look().or(last);
        if last.as_ref().is_some_and(|(_, c)| c.seccomp == "2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    last.expect("no optimized compile seen within 60 s")
}

#[test]
fn a_big_modules_first_start_runs_baseline_code_and_the_next_one_optimized_code() {
    let cd = Containerd::start();
    // About 6 s of Cranelift on this machine, well under one of Winch.
    let rootfs = rootfs_with(&[("/app.wasm", &big_module(40 << 20))]);

    // Detached, so that the shim, and containerd's copy of its log, stay
    // until the task is deleted (the compile's line comes after the run).
    let dir = rootfs.path().to_str().expect("utf-8 path");
    let run = [
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--rootfs",
        dir,
        "first",
        "/app.wasm",
    ];
    assert_success(&cd.ctr(&run), "the first start");
    wait_until("the first start to end", Duration::from_secs(60), || {
        cd.task_has_status("first", "STOPPED")
    });
    let first = cd.create_line("first");
    assert!(first.contains("cache=baseline"), "{first}");
    // The optimized compile runs beside the container, which is done.
    let (pid, confined) = watch_compile(&cd, "first");
    assert_eq!(
        confined,
        Confined {
            capabilities: "0000000000000000".into(),
            no_new_privs: "1".into(),
            seccomp: "2".into(),
            policy: 5,
            in_the_containers_cgroup: false,
        },
        "compile process {pid}"
    );
    wait_until(
        "the optimized compile to end",
        Duration::from_secs(300),
        || compile_process(&cd).is_none(),
    );
    assert_eq!(cd.cache_entries().len(), 1, "{:?}", cd.cache_entries());
    // The compile's line reaches containerd's log after the compile has
    // exited: through the shim's reader of its stdout, then containerd.
    let compile_logged = || {
        let logged = cd.log();
        logged.contains("container first: optimized code for ")
            && logged.contains(
                "cache=compiled confined=landlock,seccomp=wasmbox-compile,caps=none,nnp=1,sched=idle",
            )
    };
    assert!(
        poll_until(Duration::from_secs(10), compile_logged),
        "no line of the compile in containerd's log within 10 s"
    );
    assert_success(&cd.ctr(&["task", "delete", "first"]), "task delete");
    assert_success(
        &cd.ctr(&["container", "delete", "first"]),
        "container delete",
    );

    let out = cd.run_rootfs(rootfs.path(), "second", &["/app.wasm"]);
    assert_success(&out, "the second start");
    let second = cd.create_line("second");
    assert!(second.contains("cache=hit"), "{second}");
    cd.assert_nothing_left();
}

#[test]
fn the_container_can_turn_tiering_off_and_a_bad_setting_is_named() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/app.wasm", &big_module(8 << 20))]);
    let off = ["--env", "WASMBOX_TIERED_COMPILE=off"];
    let out = cd.run_rootfs_with(&off, rootfs.path(), "off", &["/app.wasm"]);
    assert_success(&out, "a start with tiering off");
    let line = cd.create_line("off");
    assert!(line.contains("cache=compiled"), "{line}");
    assert!(compile_process(&cd).is_none(), "a compile beside it");

    let bad = ["--env", "WASMBOX_TIERED_COMPILE=fast"];
    let out = cd.run_rootfs_with(&bad, rootfs.path(), "bad", &["/app.wasm"]);
    assert!(!out.status.success(), "a bad setting ran");
    assert!(
        stderr(&out).contains(
            "process.env WASMBOX_TIERED_COMPILE \"fast\": it is neither auto, on nor off"
        ),
        "{}",
        stderr(&out)
    );
    cd.assert_nothing_left();
}

#[test]
fn a_shim_killed_mid_compile_takes_its_compile_with_it() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/app.wasm", &big_module(40 << 20))]);
    let out = cd.run_rootfs(rootfs.path(), "orphan", &["/app.wasm"]);
    assert_success(&out, "the first start");
    let (pid, _) = watch_compile(&cd, "orphan");
    let (_, shim) = policy_and_parent(pid).expect("the compile's parent");
    assert!(
        cd.wasmbox_processes()
            .iter()
            .any(|p| p.starts_with(&format!("{shim}: ")) && p.contains("containerd-shim-wasmbox")),
        "the compile's parent {shim} is not the shim: {:#?}",
        cd.wasmbox_processes()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the shim");
    wait_until(
        "the compile to end with its shim",
        Duration::from_secs(10),
        || compile_process(&cd).is_none(),
    );
    // Whole or nothing: no entry, checksum or temporary file.
    let left: Vec<String> = std::fs::read_dir(&cd.cache_dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the cache: {left:?}");
    cd.assert_nothing_left();
}
