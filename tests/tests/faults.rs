//! Faults a node sees on its worst day, and what they must not leave
//! behind: a shim killed with SIGKILL, for a wasm and a native container.

use std::time::Duration;

use wasmbox_tests::proc_status::shim_of;
use wasmbox_tests::{
    assert_success, leftovers, poll_until, repo_root, sample_wasm, skip, stdout, wait_until,
    Containerd, RUNTIME,
};

/// Whether `pid` runs (a zombie no longer does: here nobody may reap it).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn a_shim_killed_with_sigkill_leaves_no_cgroup_process_or_mount() {
    let cd = Containerd::start();
    cd.import_wasm_image(
        &sample_wasm("sleeper"),
        "docker.io/wasmbox/sleeper:test",
        &[],
    );
    cd.import_tar(&repo_root().join("target/images/probe.tar"));
    for (id, image, args) in [
        ("killed-wasm", "docker.io/wasmbox/sleeper:test", &[][..]),
        (
            "killed-native",
            "docker.io/wasmbox/probe:latest",
            &["/probe", "sleep"][..],
        ),
    ] {
        let mut run = vec!["run", "-d", "--runtime", RUNTIME, image, id];
        run.extend_from_slice(args);
        assert_success(&cd.ctr(&run), id);
        wait_until(&format!("{id} to run"), Duration::from_secs(20), || {
            cd.task_has_status(id, "RUNNING")
        });
        let task = cd.task_pid(id);
        let ids = [id.to_string()].into_iter().collect();
        let before = leftovers::cgroups_of(&ids);
        assert!(!before.is_empty(), "{id} has no cgroup to leave");
        let shim = shim_of(id).unwrap_or_else(|| panic!("no shim for {id}"));
        let socket = cd.shim_socket(id);
        assert!(socket.exists(), "{id}'s shim socket {}", socket.display());
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shim as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the shim");
        // containerd notices, runs `containerd-shim-wasmbox-v1 delete` in
        // the bundle, and forgets the task.
        wait_until(
            &format!("{id}'s task to go"),
            Duration::from_secs(20),
            || !stdout(&cd.ctr(&["task", "list"])).contains(id),
        );
        assert_success(&cd.ctr(&["container", "delete", id]), "container delete");
        wait_until(
            &format!("{id}'s process to go"),
            Duration::from_secs(10),
            || !alive(task),
        );
        // containerd removes the old bundle once the shim's `delete` has
        // returned: that is when the cleanup is over. (The killed process
        // is gone a moment before: `runc delete --force` removes its
        // cgroup after that.) The same id can then run again.
        wait_until(
            &format!("{id}'s old bundle to go"),
            Duration::from_secs(20),
            || !cd.bundle_of(id).exists(),
        );
        let after = leftovers::cgroups_of(&ids);
        println!(
            "{id}: {} cgroup directories before the kill, {} after",
            before.len(),
            after.len()
        );
        assert!(
            after.is_empty(),
            "{id}'s dead shim left {after:?}; the cleanup's warnings, as containerd logged them:\n{}",
            cd.log()
                .lines()
                .filter(|l| l.contains("cleaning up dead shim") && l.contains(id))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            poll_until(Duration::from_secs(10), || !socket.exists()),
            "{id}'s dead shim left its socket {} (a server answers there: {}); containerd's log:\n{}",
            socket.display(),
            std::os::unix::net::UnixStream::connect(&socket).is_ok(),
            cd.log()
                .lines()
                .filter(|l| l.contains(id) || l.contains("shim socket"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        // The killed shim could not remove its socket; containerd's
        // `delete` did, and said so on stderr, which containerd logs as
        // the cleanup's warnings (once that `delete` has returned).
        let socket_name = socket.display().to_string();
        let warned = || {
            cd.log()
                .lines()
                .any(|l| l.contains("removing the stale shim socket") && l.contains(&socket_name))
        };
        assert!(
            poll_until(Duration::from_secs(10), warned),
            "containerd did not log the cleanup's warning about {socket_name}; its log of {id}:\n{}",
            cd.log()
                .lines()
                .filter(|l| l.contains(id) || l.contains(&socket_name))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_success(&cd.ctr(&run), &format!("{id} run again"));
        wait_until(
            &format!("{id} to run again"),
            Duration::from_secs(20),
            || cd.task_has_status(id, "RUNNING"),
        );
        cd.remove_detached(id);
    }
    cd.assert_nothing_left();
}

/// The kernel's OOM killer ends a process of a container's cgroup: the
/// task exits with 137 and a TaskOOM event comes first, which CRI turns
/// into the reason OOMKilled.
#[test]
fn a_kernel_oom_kill_is_reported_as_task_oom() {
    let cd = Containerd::start();
    cd.import_tar(&repo_root().join("target/images/probe.tar"));
    let mut events = cd.spawn_ctr(&["events"]);
    let mut lines = wasmbox_tests::Lines::of(&mut events);
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--memory-limit",
        "33554432",
        "--runtime",
        RUNTIME,
        "docker.io/wasmbox/probe:latest",
        "oom-native",
        "/probe",
        "hog",
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "{}",
        wasmbox_tests::stderr(&out)
    );
    let seen = lines.wait_for(
        |l| l.contains("/tasks/exit") && l.contains("\"oom-native\""),
        Duration::from_secs(20),
    );
    let oom = seen
        .iter()
        .position(|l| l.contains("/tasks/oom") && l.contains("\"oom-native\""));
    let exit = seen.iter().position(|l| l.contains("/tasks/exit"));
    assert!(
        oom.is_some() && oom < exit,
        "no TaskOOM before TaskExit: {seen:#?}"
    );
    let _ = events.kill();
    let _ = events.wait();
    cd.assert_nothing_left();
}

/// The status of every task, from one `ctr task list`.
fn task_statuses(cd: &Containerd) -> std::collections::HashMap<String, String> {
    stdout(&cd.ctr(&["task", "list"]))
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let id = fields.next()?.to_string();
            Some((id, fields.nth(1)?.to_string()))
        })
        .collect()
}

/// containerd restarts while a hundred tasks run, and three of them end
/// while it is away: the other 97 still run afterwards, and the three
/// exits (code and time) reach containerd when it is back, as `ctr task ls`
/// and a client's Delete see them.
#[test]
fn exits_while_containerd_is_down_reach_it_when_it_is_back() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let cd = Containerd::start();
    cd.import_wasm_image(
        &sample_wasm("sleeper"),
        "docker.io/wasmbox/sleeper:test",
        &[],
    );
    let ids: Vec<String> = (0..100).map(|i| format!("restart-{i}")).collect();
    std::thread::scope(|scope| {
        for chunk in ids.chunks(13) {
            let cd = &cd;
            scope.spawn(move || {
                for id in chunk {
                    let out = cd.ctr(&[
                        "run",
                        "-d",
                        "--runtime",
                        RUNTIME,
                        "docker.io/wasmbox/sleeper:test",
                        id,
                    ]);
                    assert_success(&out, id);
                }
            });
        }
    });
    wait_until("the 100 tasks to run", Duration::from_secs(60), || {
        let statuses = task_statuses(&cd);
        ids.iter()
            .all(|id| statuses.get(id).map(String::as_str) == Some("RUNNING"))
    });
    let pids: Vec<u32> = ids.iter().map(|id| cd.task_pid(id)).collect();

    // Each task's process is its runner (PID 1 of the task's PID
    // namespace), which the shim reaps and takes the exit time of.
    cd.down();
    let killed_at = std::time::SystemTime::now();
    // Three ways to end: SIGKILL, and the SIGTERM and SIGHUP a PID 1 would
    // ignore if it did not handle them.
    kill(Pid::from_raw(pids[0] as i32), Signal::SIGKILL).expect("kill restart-0");
    kill(Pid::from_raw(pids[1] as i32), Signal::SIGTERM).expect("kill restart-1");
    kill(Pid::from_raw(pids[2] as i32), Signal::SIGHUP).expect("kill restart-2");
    for pid in &pids[..3] {
        wait_until(
            "the killed tasks and their runners to be reaped",
            Duration::from_secs(20),
            || !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        );
    }
    // The outage lasts long enough for the shims' retries to back off to
    // seconds (the length of the outage, not a wait for anything): the
    // Deletes below then come while a retry is still pending, and each
    // shim must hand over its held TaskExit before it exits.
    std::thread::sleep(Duration::from_secs(8));
    // The exits happened while containerd was away: before it is back.
    let back_at = std::time::SystemTime::now();
    cd.up();

    wait_until(
        "3 STOPPED and 97 RUNNING after the restart",
        Duration::from_secs(30),
        || {
            let statuses = task_statuses(&cd);
            ids.iter().enumerate().all(|(i, id)| {
                let expected = if i < 3 { "STOPPED" } else { "RUNNING" };
                statuses.get(id).map(String::as_str) == Some(expected)
            })
        },
    );
    let api = wasmbox_tests::api::Api::connect(&cd.address);
    for (id, code) in [("restart-0", 137), ("restart-1", 143), ("restart-2", 129)] {
        let (status, at) = api.delete_task(id);
        assert_eq!(status, code, "{id}'s exit status");
        assert!(
            at >= killed_at && at <= back_at,
            "{id} exited at {at:?}, not between the kill ({killed_at:?}) and containerd's return ({back_at:?})"
        );
    }
    // The TaskExit events the shims could not publish while containerd
    // was away are held and sent when it is back, at the latest as the
    // shim exits: one per killed task (each has a shim of its own under
    // ctr), none dropped.
    wait_until(
        "the three held TaskExit events to reach containerd",
        Duration::from_secs(30),
        || {
            cd.log()
                .matches("containerd took the /tasks/exit event it missed")
                .count()
                == 3
        },
    );
    assert!(
        !cd.log().contains("dropping the"),
        "an event was dropped:\n{}",
        cd.log()
    );
    std::thread::scope(|scope| {
        for chunk in ids[3..].chunks(13) {
            let cd = &cd;
            scope.spawn(move || chunk.iter().for_each(|id| cd.remove_detached(id)));
        }
    });
    for id in &ids[..3] {
        assert_success(&cd.ctr(&["container", "delete", id]), "container delete");
    }
    cd.assert_nothing_left();
}

/// Runs `mount ARGS` and asserts it worked.
fn mount(args: &[&str]) {
    let out = std::process::Command::new("mount")
        .args(args)
        .output()
        .expect("run mount");
    assert_success(&out, &format!("mount {args:?}"));
}

/// The names in the cache `dir`, sorted, but for its lock files (empty,
/// kept by design: a lock file is never an entry).
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the cache dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".lock"))
        .collect();
    names.sort();
    names
}

/// The node cache is read-only, or its disk is full: containers still
/// run (their modules compiled in memory, an artifact's layer kept in its
/// bundle), with a warning, and the cache is left as it was: no entry,
/// whole or half-written.
#[test]
fn a_read_only_or_full_cache_still_runs_containers() {
    for mode in ["read-only", "full"] {
        let cd = Containerd::start();
        let cache = cd.cache_dir.clone();
        std::fs::create_dir_all(&cache).expect("cache dir");
        let cache_arg = cache.to_str().expect("utf-8 path");
        let mut expected = Vec::new();
        match mode {
            "read-only" => {
                mount(&["--bind", cache_arg, cache_arg]);
                mount(&["-o", "remount,bind,ro", cache_arg]);
            }
            _ => {
                mount(&[
                    "-t",
                    "tmpfs",
                    "-o",
                    "size=256k,mode=0700",
                    "tmpfs",
                    cache_arg,
                ]);
                // Fill it: the write stops at ENOSPC.
                let filler = vec![0u8; 1 << 20];
                let _ = std::fs::write(cache.join("filler"), &filler);
                expected.push("filler".to_string());
            }
        }
        let before = names_in(&cache);
        assert_eq!(before, expected);

        cd.import_wasm_image(&sample_wasm("hello"), "docker.io/wasmbox/hello:test", &[]);
        let id = format!("cache-{mode}");
        let out = cd.ctr(&[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "docker.io/wasmbox/hello:test",
            &id,
        ]);
        assert_success(&out, &format!("hello with a {mode} cache"));
        assert!(
            stdout(&out).starts_with("Hello from a wasmbox container!"),
            "{}",
            stdout(&out)
        );
        assert!(
            cd.log().contains(&format!(
                "cannot store compiled module in {}",
                cache.display()
            )),
            "no warning of the {mode} cache in containerd's log"
        );

        if cd.version == "1.6" {
            skip(
                "a_read_only_or_full_cache_still_runs_containers (artifact)",
                "ctr 1.6 cannot import an image with wasm layers",
            );
        } else {
            let name = "docker.io/wasmbox/hello-artifact:test";
            let tar = wasmbox_tests::pack_image(
                cd.dir(),
                &sample_wasm("hello"),
                name,
                &["--artifact", "wasm", "--artifact-config", "oci"],
            );
            cd.import_tar(&tar);
            let id = format!("cache-{mode}-artifact");
            let out = cd.ctr(&["run", "--rm", "--runtime", RUNTIME, name, &id]);
            assert_success(&out, &format!("an artifact with a {mode} cache"));
            assert!(
                stdout(&out).starts_with("Hello from a wasmbox container!"),
                "{}",
                stdout(&out)
            );
            assert!(
                cd.log().contains("cannot keep its wasm layer in"),
                "no warning of the {mode} cache for the artifact's layer"
            );
        }
        assert_eq!(names_in(&cache), expected, "the {mode} cache changed");
        cd.assert_nothing_left();
    }
}

/// Fifty first starts of one new module at once: one compiles it, under
/// the entry's lock; the other 49 wait and map what it stored.
#[test]
fn fifty_first_starts_at_once_compile_once() {
    let cd = Containerd::start();
    cd.import_wasm_image(&sample_wasm("hello"), "docker.io/wasmbox/hello:test", &[]);
    let ids: Vec<String> = (0..50).map(|i| format!("first-{i}")).collect();
    let runs: Vec<_> = ids
        .iter()
        .map(|id| {
            cd.spawn_ctr(&[
                "run",
                "--rm",
                "--runtime",
                RUNTIME,
                "docker.io/wasmbox/hello:test",
                id,
            ])
        })
        .collect();
    for (id, run) in ids.iter().zip(runs) {
        let out = wasmbox_tests::wait_output(run, Duration::from_secs(120));
        assert_success(&out, id);
    }
    let outcomes: Vec<String> = ids
        .iter()
        .map(|id| {
            let line = cd.create_line(id);
            line.split_whitespace()
                .find_map(|w| w.strip_prefix("cache="))
                .unwrap_or_else(|| panic!("no cache outcome in {line}"))
                .to_string()
        })
        .collect();
    let compiled = outcomes.iter().filter(|o| *o == "compiled").count();
    let hits = outcomes.iter().filter(|o| *o == "hit").count();
    assert_eq!((compiled, hits), (1, 49), "{outcomes:?}");
    cd.assert_nothing_left();
}

/// The cgroup v2 path of the shim's `delete` (what containerd runs for a
/// shim that died), for a container that never started, twice: on a host
/// with cgroup v1, in a mount namespace of the
/// test's own where /sys/fs/cgroup is a cgroup2 mount. The same hierarchy
/// is the host's /sys/fs/cgroup/unified, where the test looks.
#[test]
fn the_shims_delete_removes_a_container_cgroup_on_cgroup_v2() {
    let unified = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        std::path::PathBuf::from("/sys/fs/cgroup")
    } else if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        std::path::PathBuf::from("/sys/fs/cgroup/unified")
    } else {
        skip(
            "the_shims_delete_removes_a_container_cgroup_on_cgroup_v2",
            "this host has no cgroup2 hierarchy to mount",
        );
        return;
    };
    let parent = format!("wasmbox-v2-test-{}", std::process::id());
    let id = "dead-shim";
    let bundle = tempfile::tempdir().expect("temp dir");
    let bundle = bundle.path().join(id);
    std::fs::create_dir_all(bundle.join("rootfs")).expect("bundle");
    let spec = serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {"args": ["/app.wasm"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "linux": {"cgroupsPath": format!("/{parent}/{id}")},
    });
    std::fs::write(bundle.join("config.json"), spec.to_string()).expect("config.json");
    let cgroup = unified.join(&parent).join(id);
    std::fs::create_dir_all(&cgroup).expect("the container's cgroup");

    let shim = repo_root().join("target/release/containerd-shim-wasmbox-v1");
    let script = format!(
        "mount -t cgroup2 none /sys/fs/cgroup && exec {} -namespace default -id {id} -address /nonexistent -bundle {} delete",
        shim.display(),
        bundle.display()
    );
    let mut command = std::process::Command::new("unshare");
    command
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .current_dir(&bundle);
    let out = wasmbox_tests::output_with_timeout(command, Duration::from_secs(30));
    assert_success(&out, "containerd-shim-wasmbox-v1 delete under cgroup v2");
    let left = cgroup.exists();
    // Again, with nothing left to remove: delete is idempotent.
    let mut again = std::process::Command::new("unshare");
    again
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .current_dir(&bundle);
    let out = wasmbox_tests::output_with_timeout(again, Duration::from_secs(30));
    assert_success(&out, "a second delete of the same bundle");
    let _ = std::fs::remove_dir(&cgroup);
    let _ = std::fs::remove_dir(unified.join(&parent));
    assert!(!left, "{} is still there", cgroup.display());
}

/// A pod's shim killed with SIGKILL: containerd runs the shim's delete for
/// each of the pod's containers, the sandbox's included, and nothing of
/// any of them is left.
#[test]
fn a_pod_shim_killed_with_sigkill_leaves_nothing_of_its_containers() {
    use wasmbox_tests::cri::{import_for_cri, wait_for_log, Cri};

    let cd = Containerd::start_cri();
    import_for_cri(&cd, &["http-echo"]);
    let cri = Cri::connect(&cd.address);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let config = Cri::pod_config("killed-pod", &logs);
    let pod = cri.run_pod_sandbox(&config).expect("RunPodSandbox");
    let mut ids = vec![pod.clone()];
    for name in ["one", "two"] {
        let container =
            Cri::container_config(name, "docker.io/wasmbox/http-echo:latest", &["/app.wasm"]);
        let id = cri
            .create_container(&pod, container, &config)
            .expect("CreateContainer");
        cri.start_container(&id).expect("StartContainer");
        ids.push(id);
    }
    wait_for_log(&logs.join("one.log"), Duration::from_secs(60), |_, l| {
        l.contains("listening")
    });
    let ids: std::collections::BTreeSet<String> = ids.into_iter().collect();
    let before = leftovers::cgroups_of(&ids);
    assert!(!before.is_empty(), "the pod has no cgroups");
    let shim = shim_of(&pod).expect("the pod's shim");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the pod's shim");
    wait_until("the pod's runners to go", Duration::from_secs(30), || {
        !cd.wasmbox_processes()
            .iter()
            .any(|p| p.contains("wasmbox-runner"))
    });
    wait_until("the pod's cgroups to go", Duration::from_secs(30), || {
        leftovers::cgroups_of(&ids).is_empty()
    });
    println!(
        "pod shim SIGKILL: {} cgroup directories before, {} after",
        before.len(),
        leftovers::cgroups_of(&ids).len()
    );
    // CRI learns of the exits from containerd's TaskExit for each task of
    // the dead shim, as the kubelet would see them.
    for id in ids.iter().filter(|id| **id != pod) {
        wait_until(
            &format!("CRI to see {id} exited"),
            Duration::from_secs(30),
            || {
                cri.container_status(id)
                    .is_ok_and(|s| s.state == k8s_cri::v1::ContainerState::ContainerExited as i32)
            },
        );
    }
    cri.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    cd.assert_nothing_left();
}
