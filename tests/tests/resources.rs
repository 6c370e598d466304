//! linux.resources: the memory limit (for the guest's linear memory and the
//! cgroup), CPU limits on the cgroup, metrics, pause and resume.

use std::time::Duration;

use wasmbox_tests::*;

#[test]
fn a_guest_over_its_memory_limit_is_stopped_with_137_and_a_reason() {
    let cd = Containerd::start();
    let mut events_ctr = cd.spawn_ctr(&["events"]);
    let mut events = Lines::of(&mut events_ctr);
    let rootfs = rootfs_with(&[("/memhog.wasm", &read_sample("memhog"))]);
    let root = rootfs.path().to_str().unwrap();

    // Make sure `ctr events` is subscribed before the run we check.
    assert_success(
        &cd.run_rootfs(rootfs.path(), "warmup", &["/memhog.wasm", "1"]),
        "warm-up",
    );
    events.wait_for(|l| l.contains("/tasks/delete"), Duration::from_secs(10));

    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--memory-limit",
        "67108864",
        "--rootfs",
        root,
        "oom1",
        "/memhog.wasm",
        "256",
    ]);
    assert_eq!(out.status.code(), Some(137), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("/memhog.wasm stopped: out of memory (exit code 137)"),
        "{err}"
    );
    assert!(
        err.contains("the container's memory limit is 64 MiB"),
        "{err}"
    );
    let seen = events.wait_for(
        |l| l.contains("/tasks/delete") && l.contains("oom1"),
        Duration::from_secs(10),
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("/tasks/oom") && l.contains("oom1")),
        "no TaskOOM event: {seen:#?}"
    );
    let _ = events_ctr.kill();
    let _ = events_ctr.wait();

    // A guest that checks its allocations sees the failure and handles it.
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--memory-limit",
        "67108864",
        "--rootfs",
        root,
        "oom2",
        "/memhog.wasm",
        "256",
        "--try",
    ]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert!(
        stdout(&out).contains("allocation failed gracefully"),
        "{}",
        stdout(&out)
    );

    // Under the limit, the same program runs to the end.
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--memory-limit",
        "67108864",
        "--rootfs",
        root,
        "oom3",
        "/memhog.wasm",
        "16",
    ]);
    assert_success(&out, "16 MiB under a 64 MiB limit");
    cd.assert_nothing_left();
}

/// Reads a cgroup v1 file of the container, e.g. ("memory", "memory.limit_in_bytes").
fn cgroup_file(controller: &str, path: &str, file: &str) -> String {
    let full = format!("/sys/fs/cgroup/{controller}{path}/{file}");
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("cannot read {full}: {e}"))
        .trim()
        .to_string()
}

/// Removes, deepest first, the parent cgroups a test's `--cgroup` path
/// made on the way to the container's own (which the shim removes): each
/// test has parents of its own, so none is removed under another test.
fn remove_parent_cgroups(relative: &[&str]) {
    let hierarchies = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    for rel in relative {
        for root in hierarchies
            .iter()
            .map(|h| h.as_path())
            .chain([std::path::Path::new("/sys/fs/cgroup")])
        {
            let dir = root.join(rel);
            if dir.is_dir() {
                std::fs::remove_dir(&dir)
                    .unwrap_or_else(|e| panic!("cannot remove {}: {e}", dir.display()));
            }
        }
    }
}

fn cgroup_v1() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory").is_dir()
}

/// The value of one metric of `ctr task metrics`.
fn metric(cd: &Containerd, id: &str, name: &str) -> u64 {
    let out = cd.ctr(&["task", "metrics", id]);
    assert_success(&out, "ctr task metrics");
    let text = stdout(&out);
    text.lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(name))
                .then(|| words.next()?.parse().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

#[test]
fn limits_land_on_the_cgroup_and_metrics_pause_and_resume_work() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/busy.wasm", &read_sample("busy"))]);
    let root = rootfs.path().to_str().unwrap();
    let mut run = cd.spawn_ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--memory-limit",
        "134217728",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        "--cgroup",
        "/wasmbox-test-busy/busy1",
        "--rootfs",
        root,
        "busy1",
        "/busy.wasm",
    ]);
    wait_for_line(&mut run, "busy: up", Duration::from_secs(30));

    let (cpu_metric, memory_metric) = if cgroup_v1() {
        assert_eq!(
            cgroup_file(
                "memory",
                "/wasmbox-test-busy/busy1",
                "memory.limit_in_bytes"
            ),
            "134217728"
        );
        assert_eq!(
            cgroup_file("cpu", "/wasmbox-test-busy/busy1", "cpu.cfs_quota_us"),
            "50000"
        );
        assert_eq!(
            cgroup_file("cpu", "/wasmbox-test-busy/busy1", "cpu.cfs_period_us"),
            "100000"
        );
        ("cpuacct.usage", "memory.usage_in_bytes")
    } else {
        assert_eq!(
            cgroup_file("", "/wasmbox-test-busy/busy1", "memory.max"),
            "134217728"
        );
        assert_eq!(
            cgroup_file("", "/wasmbox-test-busy/busy1", "cpu.max"),
            "50000 100000"
        );
        ("cpu.usage_usec", "memory.usage")
    };

    let first = metric(&cd, "busy1", cpu_metric);
    wait_until("CPU usage to grow", Duration::from_secs(10), || {
        metric(&cd, "busy1", cpu_metric) > first
    });
    assert!(metric(&cd, "busy1", memory_metric) > 0);

    // Pause returns once the kernel says every task is frozen (a busy task
    // that is throttled by its quota, or waiting for a CPU, reaches the
    // freezer only when it runs again; until then v1 reads FREEZING).
    assert_success(&cd.ctr(&["task", "pause", "busy1"]), "pause");
    if cgroup_v1() {
        assert_eq!(
            cgroup_file("freezer", "/wasmbox-test-busy/busy1", "freezer.state"),
            "FROZEN"
        );
    } else {
        let events = cgroup_file("", "/wasmbox-test-busy/busy1", "cgroup.events");
        assert!(events.lines().any(|l| l == "frozen 1"), "{events}");
    }
    let paused = metric(&cd, "busy1", cpu_metric);
    let tasks = stdout(&cd.ctr(&["task", "list"]));
    assert!(
        tasks
            .lines()
            .any(|l| l.starts_with("busy1") && l.contains("PAUSED")),
        "{tasks}"
    );
    // Frozen: over half a second, not a nanosecond more.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        metric(&cd, "busy1", cpu_metric),
        paused,
        "CPU grew while paused"
    );

    assert_success(&cd.ctr(&["task", "resume", "busy1"]), "resume");
    wait_until(
        "CPU usage to grow after resume",
        Duration::from_secs(10),
        || metric(&cd, "busy1", cpu_metric) > paused,
    );

    let status = cd.kill_and_wait(&mut run, "busy1");
    assert_eq!(status.code(), Some(137));
    cd.assert_nothing_left();
    let leftover = if cgroup_v1() {
        "/sys/fs/cgroup/memory/wasmbox-test-busy/busy1"
    } else {
        "/sys/fs/cgroup/wasmbox-test-busy/busy1"
    };
    assert!(
        !std::path::Path::new(leftover).exists(),
        "cgroup {leftover} left behind"
    );
    remove_parent_cgroups(&["wasmbox-test-busy"]);
}

#[test]
fn a_systemd_style_cgroups_path_is_expanded() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/sleeper.wasm", &read_sample("sleeper"))]);
    let root = rootfs.path().to_str().unwrap();
    let mut run = cd.spawn_ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--cgroup",
        "wasmboxtest-pod1.slice:wasmbox:sd1",
        "--rootfs",
        root,
        "sd1",
        "/sleeper.wasm",
    ]);
    wait_for_line(&mut run, "sleeper: up", Duration::from_secs(30));
    let base = if cgroup_v1() {
        "/sys/fs/cgroup/pids"
    } else {
        "/sys/fs/cgroup"
    };
    let dir = format!("{base}/wasmboxtest.slice/wasmboxtest-pod1.slice/wasmbox-sd1.scope");
    let procs = std::fs::read_to_string(format!("{dir}/cgroup.procs"))
        .unwrap_or_else(|e| panic!("cannot read {dir}/cgroup.procs: {e}"));
    let runner = cd.task_pid("sd1").to_string();
    assert!(
        procs.lines().any(|p| p == runner),
        "runner {runner} not in {dir}: {procs}"
    );
    cd.kill_and_wait(&mut run, "sd1");
    cd.assert_nothing_left();
    remove_parent_cgroups(&[
        "wasmboxtest.slice/wasmboxtest-pod1.slice",
        "wasmboxtest.slice",
    ]);
}

#[test]
fn update_applies_new_limits_to_a_running_task() {
    use containerd_client::services::v1::UpdateTaskRequest;
    use containerd_client::tonic::Request;
    use containerd_client::with_namespace;

    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/sleeper.wasm", &read_sample("sleeper"))]);
    let root = rootfs.path().to_str().unwrap();
    let mut run = cd.spawn_ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--memory-limit",
        "134217728",
        "--cgroup",
        "/wasmbox-test-upd/upd1",
        "--rootfs",
        root,
        "upd1",
        "/sleeper.wasm",
    ]);
    wait_for_line(&mut run, "sleeper: up", Duration::from_secs(30));
    let (controller, file, before) = if cgroup_v1() {
        ("memory", "memory.limit_in_bytes", "134217728")
    } else {
        ("", "memory.max", "134217728")
    };
    assert_eq!(
        cgroup_file(controller, "/wasmbox-test-upd/upd1", file),
        before
    );

    // What containerd's Go client sends: LinuxResources as JSON in an Any.
    let resources = r#"{"memory":{"limit":268435456},"cpu":{"quota":20000,"period":100000}}"#;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel = containerd_client::connect(&cd.address)
            .await
            .expect("connect to containerd");
        let mut tasks = containerd_client::services::v1::tasks_client::TasksClient::new(channel);
        let request = UpdateTaskRequest {
            container_id: "upd1".into(),
            resources: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
                value: resources.as_bytes().to_vec(),
            }),
            ..Default::default()
        };
        tasks
            .update(with_namespace!(request, "default"))
            .await
            .expect("Update");
    });
    assert_eq!(
        cgroup_file(controller, "/wasmbox-test-upd/upd1", file),
        "268435456"
    );
    if cgroup_v1() {
        assert_eq!(
            cgroup_file("cpu", "/wasmbox-test-upd/upd1", "cpu.cfs_quota_us"),
            "20000"
        );
    }
    cd.kill_and_wait(&mut run, "upd1");
    cd.assert_nothing_left();
    remove_parent_cgroups(&["wasmbox-test-upd"]);
}
