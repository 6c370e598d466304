//! Hostile and broken guests, as a tenant of a shared node may ship them.
//! In a pod, each ends with its documented exit code, while the pod's
//! other container (a server) goes on answering and the pod's shim keeps
//! its memory. Under ctr, a gigabyte of stdout with no reader, or a slow
//! one, leaves the shim's memory as it was.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_cri::v1::{ContainerConfig, LinuxContainerResources, PodSandboxConfig};
use wasmbox_tests::cri::{import_for_cri, import_module, read_cri_log, wait_for_log, Cri};
use wasmbox_tests::modules::{FOUR_GIB_MODULE, SELF_CALL_MODULE};
use wasmbox_tests::*;

const HOSTILE: &str = "docker.io/wasmbox/hostile:latest";

fn with_resources(
    mut config: ContainerConfig,
    resources: LinuxContainerResources,
) -> ContainerConfig {
    if let Some(linux) = config.linux.as_mut() {
        linux.resources = Some(resources);
    }
    config
}

/// The pod's one shim: its pid.
fn shim_pid(cd: &Containerd) -> u32 {
    let shims: Vec<String> = cd
        .wasmbox_processes()
        .into_iter()
        .filter(|p| p.contains("containerd-shim-wasmbox-v1"))
        .collect();
    assert_eq!(shims.len(), 1, "one shim for the pod: {shims:#?}");
    shims[0]
        .split(':')
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("a shim pid")
}

/// The shim of container `id` (ctr gives each container its own): its pid.
fn shim_pid_of(id: &str) -> u32 {
    proc_status::shim_of(id).unwrap_or_else(|| panic!("no shim for {id}"))
}

/// What a flood that does not end is doing, for the failure message: its
/// runner's state and kernel wait channel, how its stdout is open, and
/// containerd's last lines about it.
fn flood_state(cd: &Containerd, id: &str) -> String {
    let Some(runner) = cd.wasmbox_pid(&format!("wasmbox-runner --id {id} ")) else {
        return format!("no runner; containerd's log:\n{}", cd.log());
    };
    let read = |file: &str| std::fs::read_to_string(format!("/proc/{runner}/{file}"));
    let state = read("status").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("State:"))
            .map(str::to_string)
    });
    let log = cd.log();
    let about: Vec<&str> = log.lines().filter(|l| l.contains(id)).collect();
    format!(
        "runner {runner} {state:?}, wchan {:?}, stdout {:?} flags {:?}; containerd's lines about it:\n{}",
        read("wchan").unwrap_or_default(),
        std::fs::read_link(format!("/proc/{runner}/fd/1")),
        read("fdinfo/1").unwrap_or_default().lines().find(|l| l.starts_with("flags")),
        about.join("\n")
    )
}

fn rss_kib(pid: u32) -> u64 {
    proc_status::rss_kib(pid).unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// `nr_throttled` of the cpu controller of `pid`'s cgroup (v1 or v2).
fn cpu_throttled(pid: u32) -> u64 {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup file");
    let stat = cgroups
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            if controllers.is_empty() {
                Some(format!("/sys/fs/cgroup{path}/cpu.stat"))
            } else if controllers.split(',').any(|c| c == "cpu") {
                Some(format!("/sys/fs/cgroup/{controllers}{path}/cpu.stat"))
            } else {
                None
            }
        })
        .expect("a cpu cgroup");
    std::fs::read_to_string(&stat)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled ")?.trim().parse().ok())
        .unwrap_or(0)
}

struct Pod<'a> {
    cri: &'a Cri,
    id: String,
    config: PodSandboxConfig,
    ip: String,
}

impl Pod<'_> {
    fn log(&self, name: &str) -> std::path::PathBuf {
        Path::new(&self.config.log_directory).join(format!("{name}.log"))
    }

    fn start(&self, config: ContainerConfig) -> String {
        let name = config.metadata.as_ref().expect("metadata").name.clone();
        let id = self
            .cri
            .create_container(&self.id, config, &self.config)
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"));
        self.cri
            .start_container(&id)
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
        id
    }

    /// Runs a container to its end: its exit code, CRI reason and log.
    fn run(&self, config: ContainerConfig) -> (i32, String, Vec<(String, String)>) {
        let name = config.metadata.as_ref().expect("metadata").name.clone();
        let id = self.start(config);
        let status = self.cri.wait_for_exit(&id);
        let log = read_cri_log(&self.log(&name));
        self.cri.remove_container(&id).expect("RemoveContainer");
        (status.exit_code, status.reason, log)
    }

    /// The server answers `GET /after-<what>`.
    fn neighbour_answers(&self, what: &str) {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                &format!("http://{}:8080/after-{what}", self.ip),
            ])
            .output()
            .expect("curl");
        assert_success(&out, &format!("the neighbour after {what}"));
        assert_eq!(stdout(&out), format!("echo: GET /after-{what} HTTP/1.1\n"));
    }
}

/// How many stdout lines a CRI log has, and its stderr lines, read as a
/// stream (the flood's log is over a gigabyte).
fn stream_counts(path: &Path) -> (usize, Vec<String>) {
    use std::io::BufRead;
    let file = std::fs::File::open(path).expect("open the CRI log");
    let mut stdout_lines = 0;
    let mut stderr = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.expect("read the CRI log");
        let mut parts = line.splitn(4, ' ');
        let (_time, stream, _tag) = (parts.next(), parts.next(), parts.next());
        match stream {
            Some("stdout") => stdout_lines += 1,
            Some("stderr") => stderr.push(parts.next().unwrap_or("").to_string()),
            _ => {}
        }
    }
    (stdout_lines, stderr)
}

fn has_line(log: &[(String, String)], stream: &str, part: &str) -> bool {
    log.iter().any(|(s, l)| s == stream && l.contains(part))
}

#[test]
fn hostile_guests_end_as_documented_while_their_neighbour_answers() {
    let cd = Containerd::start_cri();
    import_for_cri(&cd, &["http-echo", "hostile", "memhog"]);
    import_module(
        &cd,
        "four-gib.wasm",
        FOUR_GIB_MODULE,
        "docker.io/wasmbox/four-gib:latest",
    );
    import_module(
        &cd,
        "self-call.wasm",
        SELF_CALL_MODULE,
        "docker.io/wasmbox/self-call:latest",
    );

    let cri = Cri::connect(&cd.address);
    let logs = cd.dir().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let config = Cri::pod_config("hostile", &logs);
    let id = cri.run_pod_sandbox(&config).expect("RunPodSandbox");
    let ip = cri.pod_ip(&id).expect("PodSandboxStatus");
    let pod = Pod {
        cri: &cri,
        id,
        config,
        ip,
    };

    let server = pod.start(Cri::container_config(
        "server",
        "docker.io/wasmbox/http-echo:latest",
        &["/app.wasm"],
    ));
    wait_for_log(&pod.log("server"), Duration::from_secs(60), |s, l| {
        s == "stderr" && l == "http-echo: listening on 0.0.0.0:8080"
    });
    pod.neighbour_answers("start");
    let shim = shim_pid(&cd);

    // An endless loop under a fifth of a CPU: throttled, it spins until
    // StopContainer's SIGTERM ends it with 143.
    let spinner = pod.start(with_resources(
        Cri::container_config("spin", HOSTILE, &["/app.wasm", "spin"]),
        LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 20_000,
            ..Default::default()
        },
    ));
    wait_for_log(&pod.log("spin"), Duration::from_secs(60), |_, l| {
        l == "hostile: spinning"
    });
    let spinner_pid = cri.container_pid(&spinner).expect("spinner pid");
    wait_until(
        "the spinner to be throttled",
        Duration::from_secs(20),
        || cpu_throttled(spinner_pid) > 0,
    );
    pod.neighbour_answers("spin");
    cri.stop_container(&spinner, 10)
        .expect("StopContainer spin");
    let status = cri.wait_for_exit(&spinner);
    assert_eq!(
        status.exit_code, 143,
        "spin: {} {}",
        status.reason, status.message
    );
    cri.remove_container(&spinner)
        .expect("RemoveContainer spin");

    // A memory bomb under a 64 MiB limit: 137, OOMKilled.
    let limited = |name: &str, image: &str, command: &[&str]| {
        with_resources(
            Cri::container_config(name, image, command),
            LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            },
        )
    };
    let (code, reason, log) = pod.run(limited(
        "bomb",
        "docker.io/wasmbox/memhog:latest",
        &["/app.wasm", "1024"],
    ));
    assert_eq!((code, reason.as_str()), (137, "OOMKilled"), "{log:#?}");
    assert!(
        has_line(&log, "stderr", "stopped: out of memory (exit code 137)"),
        "{log:#?}"
    );
    pod.neighbour_answers("bomb");

    // A module that declares 4 GiB under the same limit: refused as it
    // is instantiated, with the same exit and reason.
    let (code, reason, log) = pod.run(limited(
        "four-gib",
        "docker.io/wasmbox/four-gib:latest",
        &["/app.wasm"],
    ));
    assert_eq!((code, reason.as_str()), (137, "OOMKilled"), "{log:#?}");
    assert!(
        has_line(
            &log,
            "stderr",
            "it asked for 4096 MiB of linear memory, and the container's memory limit is 64 MiB"
        ),
        "{log:#?}"
    );
    pod.neighbour_answers("four-gib");

    // 100,000 files: each is a descriptor of the runner, so the runner's
    // RLIMIT_NOFILE (the node's hard limit, which containerd raises its
    // soft limit to) is where the guest is refused. wasmtime-wasi reports
    // the host's EMFILE to the guest as EIO ("os error 29").
    let (code, _, log) = pod.run(Cri::container_config(
        "files",
        HOSTILE,
        &["/app.wasm", "files", "100000"],
    ));
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    if hard > 100_100 {
        assert_eq!(code, 0, "{log:#?}");
        assert!(
            has_line(&log, "stdout", "hostile: opened 100000 files"),
            "{log:#?}"
        );
    } else {
        assert_eq!(code, 1, "{log:#?}");
        let opened: u64 = log
            .iter()
            .find_map(|(_, l)| {
                l.strip_prefix("hostile: opened ")?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no count in {log:#?}"));
        assert!(
            opened < hard && opened + 64 > hard,
            "opened {opened} files with a limit of {hard}: {log:#?}"
        );
    }
    pod.neighbour_answers("files");

    // Recursion without end. A Rust guest's frames live on its shadow
    // stack in linear memory, which runs out first: an out-of-bounds
    // trap. A module that calls itself exhausts wasm's own call stack.
    // Both are traps: 134.
    let (code, reason, log) = pod.run(Cri::container_config(
        "recurse",
        HOSTILE,
        &["/app.wasm", "recurse"],
    ));
    assert_eq!(code, 134, "{reason} {log:#?}");
    assert!(
        has_line(&log, "stderr", "trapped (exit code 134)"),
        "{log:#?}"
    );
    assert!(
        has_line(&log, "stderr", "out of bounds memory access"),
        "{log:#?}"
    );
    let (code, reason, log) = pod.run(Cri::container_config(
        "self-call",
        "docker.io/wasmbox/self-call:latest",
        &["/app.wasm"],
    ));
    assert_eq!(code, 134, "{reason} {log:#?}");
    assert!(has_line(&log, "stderr", "call stack exhausted"), "{log:#?}");
    pod.neighbour_answers("recurse");

    // 1 GiB to stdout, which containerd writes to the CRI log as fast as
    // it can read: the shim relays it without holding it.
    let rss_before = rss_kib(shim);
    let flood = pod.start(Cri::container_config(
        "flood",
        HOSTILE,
        &["/app.wasm", "flood", "1024"],
    ));
    let status = cri.wait_for_exit(&flood);
    let rss_after = rss_kib(shim);
    let (stdout_lines, stderr) = stream_counts(&pod.log("flood"));
    assert_eq!(status.exit_code, 0, "{stderr:#?}");
    assert_eq!(stderr, ["hostile: wrote 1024 MiB"]);
    assert_eq!(
        stdout_lines,
        1024 * 1024,
        "1 KiB lines of the flood in the CRI log"
    );
    cri.remove_container(&flood).expect("RemoveContainer flood");
    println!("pod shim RSS: {rss_before} KiB before the 1 GiB flood, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "the shim grew from {rss_before} KiB to {rss_after} KiB"
    );
    pod.neighbour_answers("flood");

    cri.stop_container(&server, 10)
        .expect("StopContainer server");
    cri.remove_container(&server)
        .expect("RemoveContainer server");
    cri.stop_pod_sandbox(&pod.id).expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod.id).expect("RemovePodSandbox");
    cd.assert_nothing_left();
}

#[test]
fn a_gigabyte_of_stdout_with_no_reader_or_a_slow_one_leaves_the_shim_as_it_was() {
    let cd = Containerd::start();
    cd.import_tar(&repo_root().join("target/images/hostile.tar"));

    // Detached: ctr is gone, nobody reads the task's stdout.
    let out = cd.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        HOSTILE,
        "unread",
        "/app.wasm",
        "flood",
        "1024",
    ]);
    assert_success(&out, "ctr run -d flood");
    let shim = shim_pid_of("unread");
    let rss_before = rss_kib(shim);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !cd.task_has_status("unread", "STOPPED") {
        assert!(
            std::time::Instant::now() < deadline,
            "the unread flood did not end within 120 s: {}",
            flood_state(&cd, "unread")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss_after = rss_kib(shim);
    let out = cd.ctr(&["task", "delete", "unread"]);
    assert_success(&out, "the unread flood exits 0");
    assert_success(
        &cd.ctr(&["container", "delete", "unread"]),
        "container delete",
    );
    println!("no reader: shim RSS {rss_before} KiB at the start, {rss_after} KiB at the end");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "the shim grew from {rss_before} KiB to {rss_after} KiB"
    );

    // A reader that takes 64 KiB every millisecond at most: the guest is
    // held back by the pipe, the shim keeps nothing.
    let mut run = cd.spawn_ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        HOSTILE,
        "slow",
        "/app.wasm",
        "flood",
        "256",
    ]);
    let mut pipe = run.stdout.take().expect("stdout piped");
    let mut chunk = vec![0u8; 64 << 10];
    let mut read = 0usize;
    let mut shim = None;
    let mut peak = 0;
    let mut first = 0;
    loop {
        use std::io::Read;
        let n = pipe.read(&mut chunk).expect("read the flood");
        if n == 0 {
            break;
        }
        read += n;
        if shim.is_none() {
            shim = Some(shim_pid_of("slow"));
            first = rss_kib(shim.unwrap_or_default());
        }
        // Every 16 MiB read.
        if let Some(rss) = shim
            .filter(|_| read % (16 << 20) < n)
            .and_then(proc_status::rss_kib)
        {
            peak = peak.max(rss);
        }
        // The reader's pace (not a wait for readiness).
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = wait_with_timeout(&mut run, Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "the slowly read flood exits 0");
    assert_eq!(
        read,
        256 << 20,
        "every byte of the flood reached the reader"
    );
    println!("slow reader: shim RSS {first} KiB at the start, at most {peak} KiB while read");
    assert!(
        peak < first + 16 * 1024,
        "the shim grew from {first} KiB to {peak} KiB"
    );
    cd.assert_nothing_left();
}
