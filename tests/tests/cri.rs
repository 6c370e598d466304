//! Kubernetes' path, end to end: a kubelet-like CRI client against the
//! private containerd's CRI plugin, for pods whose RuntimeClass handler is
//! `wasmbox`. RunPodSandbox, CreateContainer, StartContainer,
//! ContainerStatus, ContainerStats, the CRI log files, StopContainer,
//! RemoveContainer, StopPodSandbox and RemovePodSandbox, as the kubelet
//! calls them, with real CNI pod networking.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wasmbox_tests::cri::{import_for_cri, read_cri_log, wait_for_log, Cri};
use wasmbox_tests::*;

/// Creates and starts container `name` of `image` running `command` in the
/// pod, and waits (at most 60 s) for `ready` in its CRI log.
fn start_in_pod(
    cri: &Cri,
    pod: &str,
    pod_config: &k8s_cri::v1::PodSandboxConfig,
    (name, image, command): (&str, &str, &[&str]),
    ready: impl Fn(&str, &str) -> bool,
) -> String {
    let id = cri
        .create_container(pod, Cri::container_config(name, image, command), pod_config)
        .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"));
    cri.start_container(&id)
        .unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
    let log = Path::new(&pod_config.log_directory).join(format!("{name}.log"));
    wait_for_log(&log, Duration::from_secs(60), ready);
    id
}

fn shims(cd: &Containerd) -> Vec<String> {
    cd.wasmbox_processes()
        .into_iter()
        .filter(|p| p.contains("containerd-shim-wasmbox-v1"))
        .collect()
}

#[test]
fn a_pod_of_two_wasm_containers_shares_one_shim_and_one_network() {
    let cd = Containerd::start_cri();
    import_for_cri(&cd, &["http-echo"]);
    let cri = Cri::connect(&cd.address);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");

    let pod_config = Cri::pod_config("echo", &logs);
    let pod = cri.run_pod_sandbox(&pod_config).expect("RunPodSandbox");
    let pod_ip = cri.pod_ip(&pod).expect("PodSandboxStatus");
    assert!(!pod_ip.is_empty(), "the pod has no IP");

    let image = "docker.io/wasmbox/http-echo:latest";
    let server = start_in_pod(
        &cri,
        &pod,
        &pod_config,
        ("server", image, &["/app.wasm"]),
        |stream, line| stream == "stderr" && line == "http-echo: listening on 0.0.0.0:8080",
    );

    // From the host, at the pod's IP.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            &format!("http://{pod_ip}:8080/from-host"),
        ])
        .output()
        .expect("curl");
    assert_success(&out, "curl to the pod IP");
    assert_eq!(stdout(&out), "echo: GET /from-host HTTP/1.1\n");
    eprintln!("$ curl http://{pod_ip}:8080/from-host\n{}", stdout(&out));

    // From a second container of the pod, at 127.0.0.1: one network.
    let client = cri
        .create_container(
            &pod,
            Cri::container_config(
                "client",
                image,
                &["/app.wasm", "get", "127.0.0.1:8080", "/from-neighbour"],
            ),
            &pod_config,
        )
        .expect("CreateContainer client");
    cri.start_container(&client).expect("StartContainer client");
    let status = cri.wait_for_exit(&client);
    assert_eq!(
        status.exit_code, 0,
        "client: {} {}",
        status.reason, status.message
    );
    assert_eq!(status.reason, "Completed");
    let client_log = read_cri_log(&logs.join("client.log"));
    assert!(
        client_log.contains(&(
            "stdout".to_string(),
            "echo: GET /from-neighbour HTTP/1.1".to_string()
        )),
        "{client_log:?}"
    );

    // The sandbox is a wasmbox runner holding the pod's namespaces (the
    // pause binary never ran); the server's process is in its network,
    // ipc and uts namespaces, and in a PID namespace of its own.
    let sandbox_pid = cri.sandbox_pid(&pod).expect("sandbox pid");
    let server_pid = cri.container_pid(&server).expect("server pid");
    // RunPodSandbox does not wait for the sandbox's move into its cgroup
    // (it runs no guest code); the move ends soon after.
    wait_until(
        "the sandbox runner in the pod's cgroup",
        Duration::from_secs(10),
        || {
            // v1's memory hierarchy, or v2's one.
            let cgroups =
                std::fs::read_to_string(format!("/proc/{sandbox_pid}/cgroup")).unwrap_or_default();
            let memory = cgroups.lines().find(|l| l.contains(":memory:"));
            memory
                .or_else(|| cgroups.lines().find(|l| l.starts_with("0::")))
                .is_some_and(|line| line.contains(&pod))
        },
    );
    let cmdline = std::fs::read(format!("/proc/{sandbox_pid}/cmdline")).expect("sandbox cmdline");
    assert!(
        String::from_utf8_lossy(&cmdline).contains("wasmbox-runner"),
        "the sandbox process is not a runner: {}",
        String::from_utf8_lossy(&cmdline)
    );
    let ns = |pid: u32, kind: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("ns link")
    };
    for kind in ["net", "ipc", "uts"] {
        assert_eq!(
            ns(sandbox_pid, kind),
            ns(server_pid, kind),
            "{kind} namespace"
        );
    }
    assert_ne!(
        ns(sandbox_pid, "pid"),
        ns(server_pid, "pid"),
        "pid namespace"
    );
    assert_ne!(
        ns(sandbox_pid, "net"),
        ns(std::process::id(), "net"),
        "the pod has its own network"
    );

    // The sandbox's runner and the server's are confined: no_new_privs,
    // seccomp, and no capability the pod's spec did not give.
    for (who, pid) in [("sandbox", sandbox_pid), ("server", server_pid)] {
        let status = proc_status(pid);
        eprintln!("{who} {pid}: {status:?}");
        assert_eq!(status["NoNewPrivs"], "1", "{who}: {status:?}");
        assert_eq!(status["Seccomp"], "2", "{who}: {status:?}");
        let bounding = u64::from_str_radix(&status["CapBnd"], 16).unwrap();
        assert_eq!(bounding & !0x40a, 0, "{who}: {status:?}");
    }

    // One shim serves the sandbox and both containers.
    assert_eq!(shims(&cd).len(), 1, "{:#?}", cd.wasmbox_processes());
    eprintln!(
        "wasmbox processes of the pod:\n{}",
        cd.wasmbox_processes().join("\n")
    );

    // The server's log, line by line, as kubectl reads it.
    let server_log = wait_for_log(
        &logs.join("server.log"),
        Duration::from_secs(10),
        |_, line| line.starts_with("http-echo: GET /from-neighbour HTTP/1.1 from 127.0.0.1:"),
    );
    assert!(
        server_log.iter().any(
            |(s, l)| s == "stdout" && l.starts_with("http-echo: GET /from-host HTTP/1.1 from ")
        ),
        "{server_log:?}"
    );

    eprintln!(
        "$ cat {}\n{}",
        logs.join("server.log").display(),
        std::fs::read_to_string(logs.join("server.log")).unwrap_or_default()
    );
    let stats = cri.container_stats(&server).expect("ContainerStats");
    let cpu = stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map(|v| v.value)
        .unwrap_or(0);
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes.or(m.usage_bytes))
        .map(|v| v.value)
        .unwrap_or(0);
    assert!(cpu > 0, "no CPU usage reported");
    assert!(memory > 0, "no memory usage reported");

    cri.stop_container(&server, 10).expect("StopContainer");
    let status = cri.wait_for_exit(&server);
    assert_eq!(
        status.exit_code, 143,
        "SIGTERM ends the server: {}",
        status.reason
    );
    cri.remove_container(&server)
        .expect("RemoveContainer server");
    cri.remove_container(&client)
        .expect("RemoveContainer client");
    cri.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    // containerd 1.x runs the shim binary's `delete` after each
    // container's task is gone. While the pod's shim served on, that
    // delete found its socket answering and must leave it at once: it used
    // to wait a second for it to stop, which held up every container's
    // exit in a pod, and then warned.
    let log = cd.log();
    assert!(
        !log.contains("left in place"),
        "{}",
        log.lines()
            .filter(|l| l.contains("left in place"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // containerd 2.x reaches the pod's shim directly for each container
    // (the shim announces task API v3, see shim/src/bootstrap.rs): it runs
    // the shim binary for the sandbox alone, and no `delete` (nor `start`)
    // for a container of the pod.
    if !containerd_version().starts_with("1.") {
        let dead_shim_cleanups = |id: &str| {
            log.lines()
                .filter(|l| l.contains("msg=\"cleaning up dead shim\"") && l.contains(id))
                .count()
        };
        assert_eq!(dead_shim_cleanups(&pod), 1, "the sandbox's shim went");
        for (name, id) in [("server", &server), ("client", &client)] {
            assert_eq!(
                dead_shim_cleanups(id),
                0,
                "containerd ran the shim binary's delete for the {name} container"
            );
        }
    }
    // The pod went, so its shim went.
    cd.assert_nothing_left();
}

#[test]
fn a_failing_container_and_one_that_will_not_stop() {
    let cd = Containerd::start_cri();
    import_for_cri(&cd, &["exit-code", "http-hello"]);
    let cri = Cri::connect(&cd.address);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    // The pod's annotation sets where its wasi:http servers listen.
    let mut pod_config = Cri::pod_config("mixed", &logs);
    pod_config.annotations.insert(
        "wasmbox.io/http-addr".to_string(),
        "0.0.0.0:9090".to_string(),
    );
    let pod = cri.run_pod_sandbox(&pod_config).expect("RunPodSandbox");

    // Non-zero exit: code and reason.
    let failing = cri
        .create_container(
            &pod,
            Cri::container_config(
                "failing",
                "docker.io/wasmbox/exit-code:latest",
                &["/app.wasm", "3"],
            ),
            &pod_config,
        )
        .expect("CreateContainer failing");
    cri.start_container(&failing)
        .expect("StartContainer failing");
    let status = cri.wait_for_exit(&failing);
    assert_eq!(status.exit_code, 3);
    assert_eq!(status.reason, "Error");

    // A wasi:http server with a request in flight drains on SIGTERM; a
    // request that outlasts the stop timeout gets it SIGKILLed.
    let server = start_in_pod(
        &cri,
        &pod,
        &pod_config,
        (
            "server",
            "docker.io/wasmbox/http-hello:latest",
            &["/app.wasm"],
        ),
        |_, line| line == "wasmbox: serving /app.wasm (wasi:http) on http://0.0.0.0:9090/",
    );
    let pod_ip = cri.pod_ip(&pod).expect("pod IP");
    let mut slow = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            &format!("http://{pod_ip}:9090/slow?ms=50000"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("curl");
    wait_for_log(
        &logs.join("server.log"),
        Duration::from_secs(10),
        |_, line| line.contains("/slow?ms=50000"),
    );
    let stop_started = std::time::Instant::now();
    cri.stop_container(&server, 2).expect("StopContainer");
    let status = cri.wait_for_exit(&server);
    assert_eq!(status.exit_code, 137, "the timeout's SIGKILL ends it");
    assert!(
        stop_started.elapsed() >= Duration::from_secs(2),
        "SIGKILL came before the timeout"
    );
    let server_log = read_cri_log(&logs.join("server.log"));
    assert!(
        server_log
            .iter()
            .any(|(_, l)| l.starts_with("wasmbox: stopping: no new connections")),
        "SIGTERM came first: {server_log:?}"
    );
    let _ = slow.kill();
    let _ = slow.wait();

    for id in [&failing, &server] {
        cri.remove_container(id).expect("RemoveContainer");
    }
    cri.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    cd.assert_nothing_left();
}

/// A pod under the "restricted" Pod Security Standard, as the kubelet
/// hands it to CRI: seccomp RuntimeDefault, capabilities drop ALL,
/// runAsUser 1000, allowPrivilegeEscalation false (no_new_privs).
#[test]
fn a_restricted_pod_has_no_capabilities_seccomp_and_its_user() {
    use k8s_cri::v1::security_profile::ProfileType;
    use k8s_cri::v1::{Capability, Int64Value, SecurityProfile};

    let cd = Containerd::start_cri();
    import_for_cri(&cd, &["sleeper"]);
    let cri = Cri::connect(&cd.address);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let runtime_default = || {
        Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            ..Default::default()
        })
    };
    let mut pod_config = Cri::pod_config("restricted", &logs);
    let sandbox_context = pod_config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .expect("a sandbox security context");
    sandbox_context.seccomp = runtime_default();
    // registry.k8s.io/pause's user.
    sandbox_context.run_as_user = Some(Int64Value { value: 65535 });
    let pod = cri.run_pod_sandbox(&pod_config).expect("RunPodSandbox");

    let mut config = Cri::container_config("app", "docker.io/wasmbox/sleeper:latest", &[]);
    let context = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .expect("a container security context");
    context.capabilities = Some(Capability {
        drop_capabilities: vec!["ALL".to_string()],
        ..Default::default()
    });
    context.run_as_user = Some(Int64Value { value: 1000 });
    context.run_as_group = Some(Int64Value { value: 1000 });
    context.no_new_privs = true;
    context.seccomp = runtime_default();
    let app = cri
        .create_container(&pod, config, &pod_config)
        .expect("CreateContainer app");
    cri.start_container(&app).expect("StartContainer app");
    wait_for_log(&logs.join("app.log"), Duration::from_secs(60), |_, line| {
        line == "sleeper: up"
    });

    let app_pid = cri.container_pid(&app).expect("app pid");
    let sandbox_pid = cri.sandbox_pid(&pod).expect("sandbox pid");
    let app_status = proc_status(app_pid);
    let sandbox_status = proc_status(sandbox_pid);
    eprintln!("restricted app {app_pid}: {app_status:?}");
    eprintln!("restricted sandbox {sandbox_pid}: {sandbox_status:?}");
    for (field, want) in [
        ("CapEff", "0000000000000000"),
        ("CapBnd", "0000000000000000"),
        ("CapPrm", "0000000000000000"),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
        // wasmbox's filter and RuntimeDefault stacked on it.
        ("Seccomp_filters", "2"),
        ("Uid", "1000\t1000\t1000\t1000"),
    ] {
        assert_eq!(app_status[field], want, "app {field}: {app_status:?}");
    }
    assert_eq!(sandbox_status["Seccomp"], "2", "{sandbox_status:?}");
    assert_eq!(sandbox_status["NoNewPrivs"], "1", "{sandbox_status:?}");
    assert_eq!(
        sandbox_status["Uid"], "65535\t65535\t65535\t65535",
        "{sandbox_status:?}"
    );

    cri.stop_container(&app, 2).expect("StopContainer");
    cri.remove_container(&app).expect("RemoveContainer");
    cri.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    cd.assert_nothing_left();
}

/// `hostUsers: false`: the pod's user namespace, which containerd 2.x
/// makes and pins, is joined by the sandbox's runner and every container's;
/// container root is host uid 165536; a volume with the pod's mappings is
/// id-mapped, so what container root writes there is the host's root's.
#[test]
fn a_pod_without_host_users_runs_in_its_own_user_namespace() {
    use k8s_cri::v1::{IdMapping, Mount, NamespaceMode, UserNamespace};

    let cd = Containerd::start_cri();
    if !cd.version.starts_with('2') {
        skip(
            "a_pod_without_host_users_runs_in_its_own_user_namespace",
            "hostUsers: false needs containerd 2.x",
        );
        return;
    }
    import_for_cri(&cd, &["sleeper", "fsprobe"]);
    let cri = Cri::connect(&cd.address);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let mapping = || {
        vec![IdMapping {
            host_id: 165536,
            container_id: 0,
            length: 65536,
        }]
    };
    let userns = || {
        Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: mapping(),
            gids: mapping(),
        })
    };
    let mut pod_config = Cri::pod_config("userns", &logs);
    if let Some(options) = pod_config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|c| c.namespace_options.as_mut())
    {
        options.userns_options = userns();
    }
    let pod = cri.run_pod_sandbox(&pod_config).expect("RunPodSandbox");
    let with_userns = |config: &mut k8s_cri::v1::ContainerConfig| {
        let context = config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .expect("a container security context");
        context
            .namespace_options
            .get_or_insert_with(Default::default)
            .userns_options = userns();
    };

    let mut config = Cri::container_config("app", "docker.io/wasmbox/sleeper:latest", &[]);
    with_userns(&mut config);
    let app = cri
        .create_container(&pod, config, &pod_config)
        .expect("CreateContainer app");
    cri.start_container(&app).expect("StartContainer app");
    wait_for_log(&logs.join("app.log"), Duration::from_secs(60), |_, line| {
        line == "sleeper: up"
    });
    let app_pid = cri.container_pid(&app).expect("app pid");
    let sandbox_pid = cri.sandbox_pid(&pod).expect("sandbox pid");
    for (who, pid) in [("app", app_pid), ("sandbox", sandbox_pid)] {
        let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map");
        eprintln!("{who} {pid} uid_map: {uid_map}");
        let fields: Vec<&str> = uid_map.split_whitespace().collect();
        assert_eq!(fields, ["0", "165536", "65536"], "{who} uid_map: {uid_map}");
    }
    let userns_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/user")).expect("ns");
    assert_eq!(userns_of(app_pid), userns_of(sandbox_pid));
    assert_ne!(userns_of(app_pid), userns_of(std::process::id()));
    let app_status = proc_status(app_pid);
    eprintln!("userns app {app_pid}: {app_status:?}");
    assert_eq!(app_status["Uid"], "165536\t165536\t165536\t165536");
    assert_eq!(app_status["NoNewPrivs"], "1");
    assert_eq!(app_status["Seccomp"], "2");

    // A volume with the pod's mappings, as the kubelet sends it for
    // hostUsers: false: container root writes as the host's root.
    let volume = cd.dir().join("userns-volume");
    std::fs::create_dir_all(&volume).expect("volume dir");
    let mut config = Cri::container_config(
        "probe",
        "docker.io/wasmbox/fsprobe:latest",
        &[
            "/app.wasm",
            "write:/data/out.txt:from-userns",
            "read:/data/out.txt",
            "write:/made-in-rootfs:x",
            "read:/made-in-rootfs",
        ],
    );
    with_userns(&mut config);
    config.mounts.push(Mount {
        container_path: "/data".to_string(),
        host_path: volume.display().to_string(),
        uid_mappings: mapping(),
        gid_mappings: mapping(),
        ..Default::default()
    });
    let probe = cri
        .create_container(&pod, config, &pod_config)
        .expect("CreateContainer probe");
    cri.start_container(&probe).expect("StartContainer probe");
    let status = cri.wait_for_exit(&probe);
    let lines: Vec<String> = read_cri_log(&logs.join("probe.log"))
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    eprintln!("probe: {lines:#?}");
    assert_eq!(status.exit_code, 0, "{lines:?}");
    for want in [
        "write /data/out.txt: ok ",
        "read /data/out.txt: ok from-userns",
        "write /made-in-rootfs: ok ",
        "read /made-in-rootfs: ok x",
    ] {
        assert!(lines.iter().any(|l| l == want), "no {want:?} in {lines:?}");
    }
    let written = std::fs::metadata(volume.join("out.txt")).expect("the file the probe wrote");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (written.uid(), written.gid()),
        (0, 0),
        "id-mapped: container root writes as host root"
    );

    for id in [&app, &probe] {
        let _ = cri.stop_container(id, 2);
        cri.remove_container(id).expect("RemoveContainer");
    }
    cri.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    cd.assert_nothing_left();
}

/// The last pid of a process's `NSpid` line: its pid in its own PID
/// namespace.
fn pid_inside(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .expect("NSpid");
    line.split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string()
}

fn pid_namespace(pid: u32) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).expect("ns/pid")
}

/// `shareProcessNamespace: true`: the sandbox's runner is PID 1 of the
/// pod's PID namespace, each container's runner starts in it as a member
/// (the shim joins it on the thread that forks the runner), and a member
/// stops on SIGTERM by the default action.
#[test]
fn a_pod_that_shares_its_process_namespace_runs_its_containers_in_it() {
    let cd = Containerd::start_cri();
    import_for_cri(&cd, &["sleeper"]);
    let cri = Cri::connect(&cd.address);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let pod_pid = || {
        Some(k8s_cri::v1::NamespaceOption {
            network: k8s_cri::v1::NamespaceMode::Pod as i32,
            pid: k8s_cri::v1::NamespaceMode::Pod as i32,
            ipc: k8s_cri::v1::NamespaceMode::Pod as i32,
            ..Default::default()
        })
    };
    let mut pod_config = Cri::pod_config("shared-pid", &logs);
    if let Some(context) = pod_config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        context.namespace_options = pod_pid();
    }
    let pod = cri.run_pod_sandbox(&pod_config).expect("RunPodSandbox");
    let sandbox = cri.sandbox_pid(&pod).expect("sandbox pid");

    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let mut config = Cri::container_config(name, "docker.io/wasmbox/sleeper:latest", &[]);
        if let Some(context) = config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
        {
            context.namespace_options = pod_pid();
        }
        let id = cri
            .create_container(&pod, config, &pod_config)
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"));
        cri.start_container(&id)
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
        wait_for_log(
            &logs.join(format!("{name}.log")),
            Duration::from_secs(60),
            |_, line| line == "sleeper: up",
        );
        ids.push(id);
    }
    assert_eq!(pid_inside(sandbox), "1", "the sandbox is the pod's init");
    let mut inside = Vec::new();
    for id in &ids {
        let pid = cri.container_pid(id).expect("container pid");
        assert_eq!(
            pid_namespace(pid),
            pid_namespace(sandbox),
            "{id} is not in the pod's PID namespace"
        );
        inside.push(pid_inside(pid));
    }
    println!("shared PID namespace: sandbox 1, containers {inside:?}");
    assert!(
        inside.iter().all(|pid| pid != "1") && inside[0] != inside[1],
        "{inside:?}"
    );

    for id in &ids {
        cri.stop_container(id, 10).expect("StopContainer");
        let status = cri.wait_for_exit(id);
        assert_eq!(status.exit_code, 143, "{id} stops on SIGTERM");
        cri.remove_container(id).expect("RemoveContainer");
    }
    cri.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    cd.assert_nothing_left();
}
