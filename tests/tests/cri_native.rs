//! Mixed pods under the `wasmbox` runtime handler: a wasm wasi:http server
//! and a native client in one pod, talking over the pod's loopback, with
//! ExecSync into the native container and the CRI logs of both; and an
//! all-native pod, which is what a cluster gets when an ordinary pod names
//! the wasmbox RuntimeClass.

use std::time::Duration;

use wasmbox_tests::cri::{import_for_cri, read_cri_log, wait_for_log, Cri};
use wasmbox_tests::*;

fn log_lines(logs: &std::path::Path, name: &str) -> Vec<String> {
    read_cri_log(&logs.join(format!("{name}.log")))
        .into_iter()
        .map(|(_, line)| line)
        .collect()
}

/// The memory limit of `pid`'s cgroup, on cgroup v1 or v2.
fn memory_limit(pid: u32) -> Option<u64> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let file = match controllers {
            "" => format!("/sys/fs/cgroup{path}/memory.max"),
            c if c.split(',').any(|c| c == "memory") => {
                format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
            }
            _ => return None,
        };
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    })
}

#[test]
fn a_pod_mixes_a_wasm_server_and_a_native_client() {
    let cd = Containerd::start_cri();
    import_for_cri(&cd, &["http-hello", "probe"]);
    let cri = Cri::connect(&cd.address);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let pod_config = Cri::pod_config("mixed", &logs);
    let pod = cri.run_pod_sandbox(&pod_config).expect("RunPodSandbox");

    let server = cri
        .create_container(
            &pod,
            Cri::container_config("server", "docker.io/wasmbox/http-hello:latest", &[]),
            &pod_config,
        )
        .expect("CreateContainer server");
    cri.start_container(&server).expect("StartContainer server");
    // The native client retries its connection until the server listens.
    let client = cri
        .create_container(
            &pod,
            Cri::container_config(
                "client",
                "docker.io/wasmbox/probe:latest",
                &["/probe", "get", "8080", ""],
            ),
            &pod_config,
        )
        .expect("CreateContainer client");
    cri.start_container(&client).expect("StartContainer client");
    let status = cri.wait_for_exit(&client);
    let client_log = log_lines(&logs, "client");
    println!("client log: {client_log:#?}");
    assert_eq!(status.exit_code, 0, "{client_log:?}");
    assert!(
        client_log
            .iter()
            .any(|l| l == "probe: got Hello from a wasmbox wasi:http component!"),
        "no answer in {client_log:?}"
    );

    // A long-running native sidecar, for ExecSync.
    let sidecar = cri
        .create_container(
            &pod,
            Cri::container_config(
                "sidecar",
                "docker.io/wasmbox/probe:latest",
                &["/probe", "sleep"],
            ),
            &pod_config,
        )
        .expect("CreateContainer sidecar");
    cri.start_container(&sidecar)
        .expect("StartContainer sidecar");
    wait_for_log(
        &logs.join("sidecar.log"),
        Duration::from_secs(30),
        |_, l| l == "probe: up",
    );
    let (code, out, err) = cri
        .exec_sync(
            &sidecar,
            &["/probe", "echo", "exec", "in", "the", "sidecar"],
        )
        .expect("ExecSync");
    println!("ExecSync: {code} {out:?} {err:?}");
    assert_eq!((code, out.as_str()), (0, "exec in the sidecar\n"), "{err}");
    let (code, _, _) = cri
        .exec_sync(&sidecar, &["/probe", "exit", "4"])
        .expect("ExecSync exit 4");
    assert_eq!(code, 4);
    // The exec probe of a wasm container is refused, saying why.
    let refused = cri.exec_sync(&server, &["/probe", "echo"]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.message().contains("not supported for wasm containers")),
        "{refused:?}"
    );
    // An in-place resize reaches runc's cgroup for the container.
    let sidecar_pid = cri.container_pid(&sidecar).expect("sidecar pid");
    let limit = 48 * 1024 * 1024;
    cri.update_container_resources(
        &sidecar,
        k8s_cri::v1::LinuxContainerResources {
            memory_limit_in_bytes: limit,
            ..Default::default()
        },
    )
    .expect("UpdateContainerResources");
    assert_eq!(memory_limit(sidecar_pid), Some(limit as u64));
    let server_pid = cri.container_pid(&server).expect("server pid");
    let netns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("netns");
    assert_eq!(netns(server_pid), netns(sidecar_pid), "one pod network");

    for id in [&server, &client, &sidecar] {
        let _ = cri.stop_container(id, 2);
        cri.remove_container(id).expect("RemoveContainer");
    }
    cri.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    cd.assert_nothing_left();
    assert!(!std::path::Path::new(&format!("/proc/{sidecar_pid}")).exists());
}

#[test]
fn an_all_native_pod_runs_under_the_wasmbox_handler() {
    let cd = Containerd::start_cri();
    import_for_cri(&cd, &["probe"]);
    let cri = Cri::connect(&cd.address);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    // The sandbox image is the CRI config's pause image, a real one.
    let pod_config = Cri::pod_config("native", &logs);
    let pod = cri.run_pod_sandbox(&pod_config).expect("RunPodSandbox");
    let app = cri
        .create_container(
            &pod,
            Cri::container_config(
                "app",
                "docker.io/wasmbox/probe:latest",
                &["/probe", "echo", "native", "pod"],
            ),
            &pod_config,
        )
        .expect("CreateContainer app");
    cri.start_container(&app).expect("StartContainer app");
    let status = cri.wait_for_exit(&app);
    assert_eq!(status.exit_code, 0);
    assert_eq!(log_lines(&logs, "app"), ["native pod"]);
    cri.remove_container(&app).expect("RemoveContainer");

    // A kernel OOM kill shows as the kubelet shows it: OOMKilled, 137.
    let mut config =
        Cri::container_config("hog", "docker.io/wasmbox/probe:latest", &["/probe", "hog"]);
    if let Some(linux) = config.linux.as_mut() {
        linux.resources = Some(k8s_cri::v1::LinuxContainerResources {
            memory_limit_in_bytes: 32 * 1024 * 1024,
            ..Default::default()
        });
    }
    let hog = cri
        .create_container(&pod, config, &pod_config)
        .expect("CreateContainer hog");
    cri.start_container(&hog).expect("StartContainer hog");
    let status = cri.wait_for_exit(&hog);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "OOMKilled")
    );
    cri.remove_container(&hog).expect("RemoveContainer hog");
    cri.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    cd.assert_nothing_left();
}

/// The operator's refusal through CRI: a runtime handler whose options say
/// `native = "refuse"` (containerd passes the options table to the shim),
/// and the `wasmbox.io/native: refuse` annotation on one container of a
/// pod that allows them.
#[test]
fn cri_refuses_native_containers_where_the_operator_says_so() {
    let cd = Containerd::start_cri();
    import_for_cri(&cd, &["probe", "hello"]);
    let cri = Cri::connect(&cd.address);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    // CreateContainer only records the container; the task, and so the
    // refusal, comes with StartContainer.
    let refused = |created: Result<String, containerd_client::tonic::Status>| {
        let id = created.expect("CreateContainer");
        let message = cri
            .start_container(&id)
            .expect_err("a native container was started")
            .message()
            .to_string();
        cri.remove_container(&id).expect("RemoveContainer");
        assert!(
            message.contains("is not a WebAssembly module: it is an ELF executable")
                && message.contains("run it with runc"),
            "{message}"
        );
    };
    let native = || {
        Cri::container_config(
            "app",
            "docker.io/wasmbox/probe:latest",
            &["/probe", "echo", "x"],
        )
    };

    let pod_config = Cri::pod_config("wasm-only", &logs);
    let pod = cri
        .run_pod_sandbox_with(&pod_config, "wasmbox-wasm-only")
        .expect("RunPodSandbox wasmbox-wasm-only");
    refused(cri.create_container(&pod, native(), &pod_config));
    // Wasm still runs there.
    let hello = cri
        .create_container(
            &pod,
            Cri::container_config("hello", "docker.io/wasmbox/hello:latest", &[]),
            &pod_config,
        )
        .expect("CreateContainer hello");
    cri.start_container(&hello).expect("StartContainer hello");
    assert_eq!(cri.wait_for_exit(&hello).exit_code, 0);
    cri.remove_container(&hello).expect("RemoveContainer");
    cri.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod).expect("RemovePodSandbox");

    let pod_config = Cri::pod_config("annotated", &logs);
    let pod = cri.run_pod_sandbox(&pod_config).expect("RunPodSandbox");
    let mut config = native();
    config
        .annotations
        .insert("wasmbox.io/native".to_string(), "refuse".to_string());
    refused(cri.create_container(&pod, config, &pod_config));
    cri.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    cd.assert_nothing_left();
}
