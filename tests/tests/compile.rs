//! A module that takes seconds to compile, under CRI, with tiering off
//! (`WASMBOX_TIERED_COMPILE=off`): its compile is the container's (cgroup), the pod's shim answers meanwhile, and a start the
//! kubelet gives up on leaves nothing behind.

use std::time::Duration;

use wasmbox_tests::cri::{import_module, Cri};
use wasmbox_tests::modules::big_module;
use wasmbox_tests::*;

/// The runner of container `id`, if one runs.
fn runner_of(cd: &Containerd, id: &str) -> Option<u32> {
    cd.wasmbox_pid(&format!("wasmbox-runner --id {id} "))
}

/// CPU time (ns) the cpu accounting of `pid`'s cgroup has counted, and
/// the cgroup, if `pid` runs.
fn cgroup_cpu_ns(pid: u32) -> Option<(u64, String)> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.is_empty() {
            let stat = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cpu.stat")).ok()?;
            let usec: u64 = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())?;
            Some((usec * 1000, path.to_string()))
        } else if controllers.split(',').any(|c| c == "cpuacct") {
            let usage = std::fs::read_to_string(format!(
                "/sys/fs/cgroup/{controllers}{path}/cpuacct.usage"
            ))
            .ok()?;
            Some((usage.trim().parse().ok()?, path.to_string()))
        } else {
            None
        }
    })
}

/// A container whose first start waits for the optimized code (tiered
/// compiles are tests/tiered.rs's), limited to half a core: the compile
/// runs in its cgroup, so the quota holds it to half speed, and it lasts
/// past the 2 s deadline below however fast the machine's cores are (it
/// needs over 1 s of CPU).
fn optimizing(mut config: k8s_cri::v1::ContainerConfig) -> k8s_cri::v1::ContainerConfig {
    config.envs.push(k8s_cri::v1::KeyValue {
        key: "WASMBOX_TIERED_COMPILE".into(),
        value: "off".into(),
    });
    if let Some(linux) = config.linux.as_mut() {
        linux.resources = Some(k8s_cri::v1::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            ..Default::default()
        });
    }
    config
}

/// A 100 MiB module takes seconds to compile. The compile runs in the
/// container's cgroup, so its CPU is the container's, and the pod's shim
/// goes on answering for its other containers meanwhile. A StartContainer
/// that the kubelet gives up on (its deadline passes mid-compile) leaves no
/// runner, cgroup or mount behind; the compile it started is finished and
/// kept, so the kubelet's next try starts from the cache.
#[test]
fn a_long_compile_is_the_containers_and_a_start_given_up_on_leaves_nothing() {
    let cd = Containerd::start_cri();
    let image = "docker.io/wasmbox/big:latest";
    import_module(&cd, "big.wasm", &big_module(100 << 20), image);
    let cri = Cri::connect(&cd.address);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let config = Cri::pod_config("big", &logs);
    let pod = cri.run_pod_sandbox(&config).expect("RunPodSandbox");

    // Given up on after 2 s, mid-compile; the compile's CPU is counted
    // in the container's cgroup meanwhile.
    let container = optimizing(Cri::container_config("given-up", image, &["/app.wasm"]));
    let given_up = cri
        .create_container(&pod, container, &config)
        .expect("CreateContainer");
    let mut counted = None;
    let mut sandbox_answered = None;
    let started = std::thread::scope(|scope| {
        let start = scope.spawn(|| {
            Cri::connect(&cd.address)
                .start_container_within(&given_up, Some(Duration::from_secs(2)))
        });
        while !start.is_finished() {
            if let Some((ns, path)) = runner_of(&cd, &given_up).and_then(cgroup_cpu_ns) {
                if path.contains(&given_up) {
                    counted = Some((ns, path));
                }
            }
            // The same shim serves the pod's sandbox: while it waits for
            // the compile, its calls for the sandbox are answered.
            if counted.is_some() && sandbox_answered.is_none() {
                let out = cd.ctr(&["-n", "k8s.io", "task", "ps", &pod]);
                assert_success(&out, "ctr task ps of the sandbox during the compile");
                sandbox_answered =
                    Some(!start.is_finished() && runner_of(&cd, &given_up).is_some());
            }
            // How often the cgroup is looked at.
            std::thread::sleep(Duration::from_millis(50));
        }
        start.join().expect("StartContainer thread")
    });
    let status =
        started.expect_err("StartContainer finished within 2 s: the compile is too quick to test");
    println!("StartContainer given up: {status}");
    assert_eq!(
        sandbox_answered,
        Some(true),
        "the sandbox's Pids was not answered while the compile ran"
    );
    let (ns, path) = counted.expect("the runner was never seen in the container's cgroup");
    println!(
        "the compile's CPU in {path} by then: {:.1} s",
        ns as f64 / 1e9
    );
    // Half a core for 2 s is at most 1 s of CPU.
    assert!(
        ns > 500_000_000,
        "only {ns} ns of CPU in the container's cgroup"
    );
    wait_until("the given-up runner to go", Duration::from_secs(60), || {
        runner_of(&cd, &given_up).is_none()
    });
    // containerd finishes the start it was asked for, then its clean-up;
    // until then the container is "starting" and cannot be removed.
    wait_until(
        "the given-up container to be removable",
        Duration::from_secs(60),
        || match cri.remove_container(&given_up) {
            Ok(()) => true,
            Err(e) if e.message().contains("starting state") => false,
            Err(e) => panic!("RemoveContainer: {e}"),
        },
    );

    // The kubelet's next try.
    let container = optimizing(Cri::container_config("retried", image, &["/app.wasm"]));
    let retried = cri
        .create_container(&pod, container, &config)
        .expect("CreateContainer");
    cri.start_container(&retried).expect("StartContainer");
    let status = cri.wait_for_exit(&retried);
    assert_eq!(status.exit_code, 0, "{} {}", status.reason, status.message);
    assert!(
        cd.create_line(&retried).contains("cache=hit"),
        "{}",
        cd.create_line(&retried)
    );
    cri.remove_container(&retried).expect("RemoveContainer");
    cri.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    cd.assert_nothing_left();
}
