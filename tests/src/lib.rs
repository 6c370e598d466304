//! The integration-test harness: a private containerd per test.
//!
//! [`Containerd::start`] runs `scripts/private-containerd.sh`, which gives
//! containerd its own root, state dir, sockets and config under a temp dir,
//! with our shim and runner on its PATH; dropping the handle stops it and
//! removes whatever it left. The containerd version comes from the
//! `WASMBOX_CONTAINERD` environment variable (2.1, 1.7 or 1.6; default 2.1).
//!
//! Tests drive it with the matching `ctr`, as a user would, and can ask
//! which wasmbox processes and mounts of this containerd are still around.

pub mod api;
pub mod cri;
pub mod docker;
pub mod leftovers;
pub mod modules;
pub mod proc_status;
pub mod process;

pub use proc_status::proc_status;
pub use process::{output_with_timeout, wait_for_line, wait_output, wait_with_timeout, Lines};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The runtime type users pass to `ctr run --runtime`.
pub const RUNTIME: &str = "io.containerd.wasmbox.v1";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The sample apps that are components, built for `wasm32-wasip2`.
const COMPONENT_APPS: &[&str] = &["cli-p2", "http-hello", "http-echo"];

/// A sample app's `.wasm`, as the Makefile builds it.
pub fn sample_wasm(name: &str) -> PathBuf {
    let path = if name == "c-hello" {
        repo_root().join("target/wasm/c-hello.wasm")
    } else if COMPONENT_APPS.contains(&name) {
        repo_root().join(format!("target/wasm32-wasip2/release/{name}.wasm"))
    } else {
        repo_root().join(format!("target/wasm32-wasip1/release/{name}.wasm"))
    };
    assert!(
        path.is_file(),
        "{} is missing: run `make build` (the tests need the sample apps)",
        path.display()
    );
    path
}

/// A sample app's bytes.
pub fn read_sample(name: &str) -> Vec<u8> {
    std::fs::read(sample_wasm(name)).expect("read sample")
}

/// Marks the calling test as skipped for `reason`: says so on stdout and
/// adds a line to `target/test-skips.txt`, which `make test` prints at the
/// end, so a test that did not test is never counted silently as a pass.
/// The caller returns right after.
pub fn skip(test: &str, reason: &str) {
    let line = format!(
        "skipped {test} on containerd {}: {reason}",
        containerd_version()
    );
    println!("{line}");
    let path = repo_root().join("target/test-skips.txt");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = writeln!(file, "{line}");
    }
}

/// The containerd version the tests run against (`WASMBOX_CONTAINERD`).
pub fn containerd_version() -> String {
    std::env::var("WASMBOX_CONTAINERD").unwrap_or_else(|_| "2.1".to_string())
}

/// Polls `check` (every 20 ms) until it holds; panics naming `what` after
/// `timeout`.
pub fn wait_until(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    assert!(poll_until(timeout, check), "timed out waiting for {what}");
}

/// Whether `check` holds within `timeout` (looked at every 20 ms), for a
/// caller whose failure message says more than [`wait_until`]'s.
pub fn poll_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Variable `name` of the `env` file the private-containerd and
/// private-docker scripts leave in `dir`.
pub fn env_file_var(dir: &Path, name: &str) -> String {
    let env = std::fs::read_to_string(dir.join("env")).expect("env file");
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} missing from env file"))
        .to_string()
}

/// A running private containerd.
pub struct Containerd {
    dir: tempfile::TempDir,
    pub version: String,
    pub address: PathBuf,
    pub ctr_path: PathBuf,
    pub cache_dir: PathBuf,
}

impl Containerd {
    /// Starts the containerd version named by `WASMBOX_CONTAINERD`.
    pub fn start() -> Self {
        Self::start_with(&containerd_version(), None)
    }

    /// Starts containerd `version` (2.1, 1.7 or 1.6), whatever
    /// `WASMBOX_CONTAINERD` says, with its CRI plugin on if `cri`.
    pub fn start_version(version: &str, cri: bool) -> Self {
        Self::start_with(version, cri.then_some("cri"))
    }

    /// The same with its CRI plugin on: wasmbox as runtime handler
    /// `wasmbox`, CNI pod networking, and the local pause image as the
    /// sandbox image (see scripts/private-containerd.sh).
    pub fn start_cri() -> Self {
        Self::start_with(&containerd_version(), Some("cri"))
    }

    fn start_with(version: &str, mode: Option<&str>) -> Self {
        let version = version.to_string();
        let dir = tempfile::Builder::new()
            .prefix("wasmbox-test-")
            .tempdir()
            .expect("temp dir");
        let script = repo_root().join("scripts/private-containerd.sh");
        let out = Command::new(&script)
            .arg("start")
            .arg(dir.path())
            .arg(&version)
            .args(mode)
            .env_remove("WASMBOX_CACHE_DIR")
            .output()
            .expect("run private-containerd.sh");
        assert!(
            out.status.success(),
            "private containerd {version} did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let var = |name: &str| -> PathBuf { env_file_var(dir.path(), name).into() };
        Self {
            version,
            address: var("CONTAINERD_ADDRESS"),
            ctr_path: var("CTR"),
            cache_dir: var("WASMBOX_CACHE_DIR"),
            dir,
        }
    }

    /// Stops the containerd process alone; its shims and tasks go on
    /// running, as when a node's containerd restarts.
    pub fn down(&self) {
        self.script("down");
    }

    /// Starts containerd again after [`Containerd::down`], and returns once
    /// it answers.
    pub fn up(&self) {
        self.script("up");
    }

    fn script(&self, action: &str) {
        let out = Command::new(repo_root().join("scripts/private-containerd.sh"))
            .arg(action)
            .arg(self.dir.path())
            .env_remove("WASMBOX_CACHE_DIR")
            .output()
            .expect("run private-containerd.sh");
        assert!(
            out.status.success(),
            "private-containerd.sh {action}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The bundle of container `id` (namespace `default`).
    pub fn bundle_of(&self, id: &str) -> PathBuf {
        self.dir()
            .join("state/io.containerd.runtime.v2.task/default")
            .join(id)
    }

    /// The shim socket of container `id`, from its bundle's `address`
    /// file (there while the task exists).
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        let address = std::fs::read_to_string(self.bundle_of(id).join("address"))
            .expect("the bundle's address file");
        address.trim().trim_start_matches("unix://").into()
    }

    /// The temp dir everything of this containerd lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The containerd process's pid, from the pid file
    /// scripts/private-containerd.sh keeps (none once it is stopped).
    pub fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir().join("containerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A `ctr` command aimed at this containerd.
    pub fn ctr_command(&self) -> Command {
        let mut cmd = Command::new(&self.ctr_path);
        cmd.arg("--address").arg(&self.address);
        cmd
    }

    /// Runs `ctr ARGS` to completion (at most `timeout`) and returns its output.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_with_timeout(args, Duration::from_secs(60))
    }

    pub fn ctr_with_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = self.ctr_command();
        cmd.args(args).stdin(Stdio::null());
        output_with_timeout(cmd, timeout)
    }

    /// `ctr run --rm --runtime io.containerd.wasmbox.v1 --rootfs DIR ID ARGS…`
    pub fn run_rootfs(&self, rootfs: &Path, id: &str, args: &[&str]) -> Output {
        self.run_rootfs_with(&[], rootfs, id, args)
    }

    /// The same, with ctr `flags` (`--seccomp`, say) before `--rootfs`.
    pub fn run_rootfs_with(
        &self,
        flags: &[&str],
        rootfs: &Path,
        id: &str,
        args: &[&str],
    ) -> Output {
        let rootfs = rootfs.to_str().expect("utf-8 path");
        let mut all = vec!["run", "--rm", "--runtime", RUNTIME];
        all.extend_from_slice(flags);
        all.extend_from_slice(&["--rootfs", rootfs, id]);
        all.extend_from_slice(args);
        self.ctr(&all)
    }

    /// The shim's create-path line for container `id` in containerd's log:
    /// the runner's cache outcome, timings and confinement.
    pub fn create_line(&self, id: &str) -> String {
        self.log()
            .lines()
            .find(|l| l.contains(&format!("container {id}: create path")))
            .unwrap_or_else(|| panic!("no create-path line for {id} in containerd's log"))
            .to_string()
    }

    /// Packs `wasm` into an image named `name` and imports it.
    pub fn import_wasm_image(&self, wasm: &Path, name: &str, extra: &[&str]) {
        let tar = pack_image(self.dir(), wasm, name, extra);
        self.import_tar(&tar);
    }

    /// `ctr run` arguments that run `args` in `rootfs` as `uid:gid`. ctr
    /// 1.6 has no `--user`: there the spec is written out (ctr's default
    /// spec with the user, args and root set) and passed with `--config`.
    pub fn run_as_user_args(
        &self,
        rootfs: &Path,
        id: &str,
        uid: u32,
        gid: u32,
        args: &[&str],
    ) -> Vec<String> {
        let root = rootfs.to_str().expect("utf-8 path").to_string();
        let mut all: Vec<String> = ["run", "--rm", "--runtime", RUNTIME]
            .map(String::from)
            .to_vec();
        if self.version != "1.6" {
            all.extend([
                "--user".into(),
                format!("{uid}:{gid}"),
                "--rootfs".into(),
                root,
                id.into(),
            ]);
            all.extend(args.iter().map(|a| a.to_string()));
            return all;
        }
        let out = self.ctr(&["oci", "spec"]);
        assert_success(&out, "ctr oci spec");
        let mut spec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("spec JSON");
        spec["process"]["user"] = serde_json::json!({"uid": uid, "gid": gid});
        spec["process"]["args"] = serde_json::json!(args);
        spec["root"] = serde_json::json!({"path": root, "readonly": false});
        // As ctr does for a run: the namespace, then the container's id.
        spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/default/{id}"));
        let path = self.dir().join(format!("{id}-spec.json"));
        std::fs::write(&path, spec.to_string()).expect("write spec");
        all.extend([
            "--config".into(),
            path.to_str().expect("utf-8 path").into(),
            id.into(),
        ]);
        all
    }

    /// Whether `ctr task list` shows task `id` in `status` (RUNNING, …).
    pub fn task_has_status(&self, id: &str, status: &str) -> bool {
        stdout(&self.ctr(&["task", "list"]))
            .lines()
            .any(|l| l.split_whitespace().next() == Some(id) && l.contains(status))
    }

    /// The task's pid, from `ctr task ps`.
    pub fn task_pid(&self, id: &str) -> u32 {
        let ps = stdout(&self.ctr(&["task", "ps", id]));
        ps.lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no task pid in {ps}"))
    }

    /// Sends SIGKILL to task `id` and waits (at most 10 s) for `run`, the
    /// `ctr run` that started it, to exit.
    pub fn kill_and_wait(&self, run: &mut Child, id: &str) -> ExitStatus {
        assert_success(
            &self.ctr(&["task", "kill", "--signal", "SIGKILL", id]),
            "kill",
        );
        wait_with_timeout(run, Duration::from_secs(10))
    }

    /// Kills a detached task and deletes it and its container.
    pub fn remove_detached(&self, id: &str) {
        assert_success(
            &self.ctr(&["task", "kill", "--signal", "SIGKILL", id]),
            "kill",
        );
        wait_until(
            &format!("task {id} to stop"),
            Duration::from_secs(10),
            || self.task_has_status(id, "STOPPED"),
        );
        assert_success(&self.ctr(&["task", "delete", id]), "task delete");
        assert_success(&self.ctr(&["container", "delete", id]), "container delete");
    }

    /// Imports an image tarball (all platforms: wasm images are not the
    /// host's).
    pub fn import_tar(&self, tar: &Path) {
        let tar = tar.to_str().expect("utf-8 path");
        let out = self.ctr(&["images", "import", "--all-platforms", tar]);
        assert_success(&out, "ctr images import");
    }

    /// Starts `ctr run --rm …` in the background, with stdout piped.
    pub fn spawn_ctr(&self, args: &[&str]) -> Child {
        self.ctr_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ctr")
    }

    /// Pids and command lines of this containerd's shims and runners.
    pub fn wasmbox_processes(&self) -> Vec<String> {
        let address = format!("-address {}", self.address.display());
        let cache = format!("WASMBOX_CACHE_DIR={}", self.cache_dir.display());
        let mut found = Vec::new();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in procs.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let ours_shim =
                cmdline.contains("containerd-shim-wasmbox-v1") && cmdline.contains(&address);
            let ours_runner = cmdline.contains("wasmbox-runner")
                && environ.split(|b| *b == 0).any(|v| v == cache.as_bytes());
            if ours_shim || ours_runner {
                found.push(format!("{pid}: {cmdline}"));
            }
        }
        found
    }

    /// The pid of the first of this containerd's shims and runners whose
    /// command line contains `needle`.
    pub fn wasmbox_pid(&self, needle: &str) -> Option<u32> {
        self.wasmbox_processes()
            .into_iter()
            .find(|p| p.contains(needle))
            .and_then(|p| p.split(':').next()?.parse().ok())
    }

    /// Mount points under this containerd's state dir (rootfs mounts).
    pub fn task_mounts(&self) -> Vec<String> {
        let state = format!("{}/", self.dir().join("state").display());
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&state))
            .map(str::to_string)
            .collect()
    }

    /// Waits (at most 10 s) until no shim or runner of ours is left, no
    /// task rootfs is mounted and no cgroup of a container this containerd
    /// ran is there; panics with what is left otherwise.
    pub fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let ids = leftovers::container_ids(&self.log());
        loop {
            let procs = self.wasmbox_processes();
            let mounts = self.task_mounts();
            let cgroups = leftovers::cgroups_of(&ids);
            if procs.is_empty() && mounts.is_empty() && cgroups.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!("left behind after 10 s:\nprocesses: {procs:#?}\nmounts: {mounts:#?}\ncgroups: {cgroups:#?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The compiled-module cache's entries (the `.cwasm` files).
    pub fn cache_entries(&self) -> Vec<PathBuf> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&self.cache_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                    .collect()
            })
            .unwrap_or_default();
        entries.sort();
        entries
    }

    /// containerd's log, the shims' lines included.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/private-containerd.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// `curl ARGS` run inside the network namespace of process `pid` (a
/// task's), at most 20 s, as a user would check a server in a container.
pub fn curl_in_netns(pid: u32, args: &[&str]) -> Output {
    output_with_timeout(curl_in_netns_command(pid, args), Duration::from_secs(30))
}

/// The command [`curl_in_netns`] runs, for callers that start it and wait
/// later (with [`wait_output`]).
pub fn curl_in_netns_command(pid: u32, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["curl", "-sS", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// The sha256 of `bytes`, in hex (a digest without its `sha256:`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A single-threaded tokio runtime and a gRPC channel to the containerd
/// socket at `address`, for the blocking API clients ([`api`], [`cri`]).
pub fn grpc_channel(
    address: &Path,
) -> (
    tokio::runtime::Runtime,
    containerd_client::tonic::transport::Channel,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let channel = runtime
        .block_on(containerd_client::connect(address))
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", address.display()));
    (runtime, channel)
}

/// Packs `wasm` with `wasmbox-image` into `DIR/<name>.tar` (`extra` are
/// more packer flags) and returns the tarball's path.
pub fn pack_image(dir: &Path, wasm: &Path, name: &str, extra: &[&str]) -> PathBuf {
    pack_image_dated(dir, wasm, name, extra, None)
}

/// [`pack_image`] with `SOURCE_DATE_EPOCH` set to `epoch` (the image's
/// `created`), or unset for the build time.
pub fn pack_image_dated(
    dir: &Path,
    wasm: &Path,
    name: &str,
    extra: &[&str],
    epoch: Option<&str>,
) -> PathBuf {
    let tar = dir.join(format!("{}.tar", name.replace(['/', ':'], "_")));
    let mut packer = Command::new(repo_root().join("target/release/wasmbox-image"));
    packer.env_remove("SOURCE_DATE_EPOCH");
    if let Some(epoch) = epoch {
        packer.env("SOURCE_DATE_EPOCH", epoch);
    }
    let out = packer
        .arg("--wasm")
        .arg(wasm)
        .args(["--name", name, "--output"])
        .arg(&tar)
        .args(extra)
        .output()
        .expect("run wasmbox-image");
    assert_success(&out, "wasmbox-image");
    tar
}

/// Panics with stdout and stderr unless `out` succeeded.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A rootfs directory holding the given files.
pub fn rootfs_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("wasmbox-rootfs-")
        .tempdir()
        .expect("temp dir");
    for (name, bytes) in files {
        let path = dir.path().join(name.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, bytes).expect("write rootfs file");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}
