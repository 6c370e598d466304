//! The runner's second wall, seen from outside as an operator would see
//! it: `/proc/<pid>/status` and `/proc/<pid>/root` of a wasm guest beside
//! a runc container made with the same ctr flags, a planted cache, a
//! planted inheritable descriptor, and specs the runner must refuse.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use wasmbox_tests::{
    assert_success, proc_status, read_sample, repo_root, rootfs_with, sample_wasm, stderr, stdout,
    wait_until, Containerd, RUNTIME,
};

const RUNC: &str = "io.containerd.runc.v2";

fn caps(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).unwrap()
}

fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm.split(' ').nth(1).unwrap().parse().unwrap()
}

fn start_detached(cd: &Containerd, runtime: &str, flags: &[&str], image: &str, id: &str) -> u32 {
    let mut args = vec!["run", "-d", "--runtime", runtime];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[image, id]);
    assert_success(&cd.ctr(&args), &format!("ctr run -d {id}"));
    wait_until(&format!("{id} to run"), Duration::from_secs(20), || {
        cd.task_has_status(id, "RUNNING")
    });
    cd.task_pid(id)
}

#[test]
fn a_guest_is_confined_like_a_runc_container_and_tighter() {
    let cd = Containerd::start();
    cd.import_wasm_image(
        &sample_wasm("sleeper"),
        "docker.io/wasmbox/sleeper:test",
        &[],
    );
    cd.import_tar(&repo_root().join("target/images/pause.tar"));
    // A host file the guest must not see through /proc/<pid>/root.
    let marker = tempfile::Builder::new()
        .prefix("wasmbox-host-marker-")
        .tempfile_in("/tmp")
        .unwrap();
    let marker_name = marker.path().file_name().unwrap().to_owned();

    let userns: &[&str] = &["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"];
    let cases: [(&str, &[&str]); 3] = [
        ("default", &[]),
        ("userns", userns),
        (
            "seccomp",
            &[
                "--seccomp",
                "--cap-drop",
                "CAP_NET_RAW",
                "--cap-drop",
                "CAP_DAC_OVERRIDE",
            ],
        ),
    ];
    println!("| ctr flags | | CapEff | CapBnd | NoNewPrivs | Seccomp | host files through /proc/PID/root |");
    println!("|---|---|---|---|---|---|---|");
    for (name, flags) in cases {
        let wasm_id = format!("wasm-{name}");
        let runc_id = format!("runc-{name}");
        let wasm = start_detached(
            &cd,
            RUNTIME,
            flags,
            "docker.io/wasmbox/sleeper:test",
            &wasm_id,
        );
        let runc = start_detached(&cd, RUNC, flags, "docker.io/wasmbox/pause:latest", &runc_id);
        let w = proc_status(wasm);
        let r = proc_status(runc);
        let host_visible = |pid: u32| {
            std::fs::read_dir(format!("/proc/{pid}/root/tmp"))
                .map(|d| d.flatten().any(|e| e.file_name() == marker_name))
                .unwrap_or(false)
        };
        for (who, status, pid) in [("runc", &r, runc), ("wasmbox", &w, wasm)] {
            println!(
                "| {name} {flags:?} | {who} | {} | {} | {} | {} | {} |",
                status["CapEff"],
                status["CapBnd"],
                status["NoNewPrivs"],
                status["Seccomp"],
                if host_visible(pid) {
                    "reachable"
                } else {
                    "not reachable"
                }
            );
        }
        assert_eq!(
            caps(&w["CapEff"]) & !caps(&r["CapEff"]),
            0,
            "{name}: CapEff {} is not within runc's {}",
            w["CapEff"],
            r["CapEff"]
        );
        assert_eq!(
            caps(&w["CapBnd"]) & !caps(&r["CapBnd"]),
            0,
            "{name}: CapBnd {} is not within runc's {}",
            w["CapBnd"],
            r["CapBnd"]
        );
        assert!(w["NoNewPrivs"] >= r["NoNewPrivs"], "{name}: {w:?} vs {r:?}");
        assert_eq!(w["Seccomp"], "2", "{name}: {w:?}");
        // wasmbox's filter, and the spec's profile stacked on it.
        let filters = if flags.contains(&"--seccomp") {
            "2"
        } else {
            "1"
        };
        assert_eq!(w["Seccomp_filters"], filters, "{name}: {w:?}");
        assert!(!host_visible(wasm), "{name}: the host's /tmp is reachable");
        assert!(
            std::fs::metadata(format!("/proc/{wasm}/root/etc")).is_err(),
            "{name}: the guest's root has an /etc"
        );
        // The runner is the task's only process: no second one stays
        // outside the PID namespace, under the shim.
        let shim = parent_of(wasm);
        let shim_cmdline = std::fs::read(format!("/proc/{shim}/cmdline")).unwrap();
        assert!(
            String::from_utf8_lossy(&shim_cmdline).contains("containerd-shim-wasmbox"),
            "{name}: the runner's parent {shim} is not the shim"
        );
        if flags.contains(&"--uidmap") {
            // Container root is host uid 100000, in the same mapping as
            // under runc.
            let uid_map = |pid: u32| {
                let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
                map.split_whitespace().collect::<Vec<_>>().join(" ")
            };
            println!(
                "| {name} uid_map | runc | {} | wasmbox | {} |",
                uid_map(runc),
                uid_map(wasm)
            );
            for pid in [runc, wasm] {
                assert_eq!(uid_map(pid), "0 100000 65536", "{name}: uid_map of {pid}");
            }
            assert_eq!(r["Uid"], "100000\t100000\t100000\t100000", "{r:?}");
            assert_eq!(w["Uid"], r["Uid"], "{name}: {w:?}");
        }
        cd.remove_detached(&wasm_id);
        cd.remove_detached(&runc_id);
    }
    cd.assert_nothing_left();
}

#[test]
fn an_untrusted_cache_is_never_mapped_and_the_guest_still_runs() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/app.wasm", &read_sample("hello"))]);
    let run = |id: &str| {
        let out = cd.run_rootfs(rootfs.path(), id, &["/app.wasm"]);
        assert_success(&out, id);
        assert!(
            stdout(&out).contains("Hello from a wasmbox container!"),
            "{id}"
        );
    };
    let outcome = |id: &str| {
        cd.create_line(id)
            .split_whitespace()
            .find_map(|w| w.strip_prefix("cache="))
            .unwrap_or("none")
            .to_string()
    };
    // The runner's own warnings reach containerd's log, for the container.
    let runner_said = |id: &str| -> Vec<String> {
        let prefix = format!("container {id}: runner: ");
        cd.log()
            .lines()
            .filter(|l| l.contains(&prefix))
            .map(str::to_string)
            .collect()
    };
    run("trust1");
    assert_eq!(outcome("trust1"), "compiled");
    // A first start (a cache miss) is no cause for a warning.
    assert!(
        runner_said("trust1").is_empty(),
        "{:#?}",
        runner_said("trust1")
    );
    let entry = cd.cache_entries().pop().expect("a cache entry");

    // A world-writable cache directory: anyone could have planted code.
    std::fs::set_permissions(&cd.cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    run("trust2");
    assert_eq!(outcome("trust2"), "untrusted-cache");
    std::fs::set_permissions(&cd.cache_dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // An entry owned by another user is not mapped: it is compiled again
    // and replaced by root's own.
    std::os::unix::fs::chown(&entry, Some(1000), Some(1000)).unwrap();
    run("trust3");
    assert_eq!(outcome("trust3"), "compiled");
    assert_eq!(std::fs::metadata(&entry).unwrap().uid(), 0);
    run("trust4");
    assert_eq!(outcome("trust4"), "hit");
    let said = runner_said("trust3");
    assert!(
        said.iter()
            .any(|l| l.contains("not using cache entry") && l.contains("warn")),
        "the runner's cache warning is not in containerd's log: {said:#?}"
    );
    assert!(
        runner_said("trust4").is_empty(),
        "{:#?}",
        runner_said("trust4")
    );
    cd.assert_nothing_left();
}

#[test]
fn specs_the_runner_cannot_honour_fail_create_and_leave_nothing() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/app.wasm", &read_sample("hello"))]);

    // A Localhost-style profile file that does not parse: ctr (like CRI)
    // reads it before anything reaches containerd, and names it.
    let profile = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(profile.path(), "{ not json").unwrap();
    let profile_path = profile.path().to_str().unwrap();
    let out = cd.run_rootfs_with(
        &["--seccomp", "--seccomp-profile", profile_path],
        rootfs.path(),
        "badprofile",
        &["/app.wasm"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains(profile_path), "{}", stderr(&out));

    // A uid mapping the kernel refuses: its host range overflows.
    cd.import_wasm_image(&sample_wasm("hello"), "docker.io/wasmbox/hello:test", &[]);
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--uidmap",
        "0:4294967290:100",
        "--gidmap",
        "0:100000:65536",
        "docker.io/wasmbox/hello:test",
        "badmap",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("linux.uidMappings [0:4294967290:100]: the kernel refused the mapping"),
        "{}",
        stderr(&out)
    );

    // An AppArmor profile on a node without AppArmor: runc's write of it
    // fails, and so does the runner, naming the field.
    if !std::path::Path::new("/sys/module/apparmor/parameters/enabled").exists() {
        let out = cd.run_rootfs_with(
            &["--apparmor-profile", "wasmbox-test"],
            rootfs.path(),
            "badaa",
            &["/app.wasm"],
        );
        assert!(!out.status.success());
        let err = stderr(&out);
        if err.contains("flag provided but not defined") {
            wasmbox_tests::skip(
                "specs_the_runner_cannot_honour (apparmor part)",
                "this ctr has no --apparmor-profile",
            );
            cd.assert_nothing_left();
            return;
        }
        assert!(
            err.contains("process.apparmorProfile \"wasmbox-test\"")
                && err.contains("AppArmor is not enabled"),
            "{err}"
        );
    }
    cd.assert_nothing_left();
}

/// The `pipe:[inode]` targets of `pid`'s open descriptors.
fn open_pipes(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|target| target.display().to_string())
                .filter(|target| target.starts_with("pipe:"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_runner_holds_no_descriptor_it_was_not_given() {
    // A descriptor without close-on-exec in whatever starts containerd
    // goes to containerd, and from it to every shim it starts.
    let (planted_read, planted_write) = nix::unistd::pipe().expect("pipe");
    let planted = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&planted_write)
    ))
    .unwrap()
    .display()
    .to_string();
    let cd = Containerd::start();
    cd.import_wasm_image(
        &sample_wasm("sleeper"),
        "docker.io/wasmbox/sleeper:test",
        &[],
    );
    let runner = start_detached(&cd, RUNTIME, &[], "docker.io/wasmbox/sleeper:test", "fds");
    let shim = parent_of(runner);
    assert!(
        open_pipes(shim).contains(&planted),
        "the planted {planted} did not reach the shim, so this shows nothing"
    );
    let held = open_pipes(runner);
    assert!(
        !held.contains(&planted),
        "the runner holds the shim's inherited {planted}: {held:?}"
    );
    assert_success(&cd.ctr(&["task", "kill", "fds"]), "kill");
    wait_until("fds to stop", Duration::from_secs(20), || {
        cd.task_has_status("fds", "STOPPED")
    });
    assert_success(&cd.ctr(&["task", "delete", "fds"]), "task delete");
    assert_success(&cd.ctr(&["container", "delete", "fds"]), "container delete");
    cd.assert_nothing_left();
    drop((planted_read, planted_write));
}
