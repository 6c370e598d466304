//! Native containers under the wasmbox runtime, run through runc: output
//! and exit codes, signals, exec, a terminal, pause/resume and metrics,
//! runc's confinement side by side with runc's own shim, the operator's
//! refusal, and runc's errors reaching the user.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use wasmbox_tests::{
    assert_success, output_with_timeout, proc_status, repo_root, rootfs_with, stderr, stdout,
    wait_until, Containerd, RUNTIME,
};

const RUNC: &str = "io.containerd.runc.v2";
const PROBE: &str = "docker.io/wasmbox/probe:latest";

fn with_probe() -> Containerd {
    let cd = Containerd::start();
    cd.import_tar(&repo_root().join("target/images/probe.tar"));
    cd
}

fn run(cd: &Containerd, flags: &[&str], id: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["run", "--rm", "--runtime", RUNTIME];
    all.extend_from_slice(flags);
    all.extend_from_slice(&[PROBE, id, "/probe"]);
    all.extend_from_slice(args);
    cd.ctr(&all)
}

fn start_detached(cd: &Containerd, runtime: &str, flags: &[&str], id: &str) -> u32 {
    let mut args = vec!["run", "-d", "--runtime", runtime];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[PROBE, id, "/probe", "sleep"]);
    assert_success(&cd.ctr(&args), &format!("ctr run -d {id}"));
    wait_until(&format!("{id} to run"), Duration::from_secs(20), || {
        cd.task_has_status(id, "RUNNING")
    });
    cd.task_pid(id)
}

fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A TOML settings file for `ctr run --runtime-config-path`, which ctr
/// sends as the runtime's options.
fn settings(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn a_native_binary_runs_through_runc_with_its_output_and_exit_codes() {
    let cd = with_probe();
    let out = run(&cd, &[], "n-echo", &["echo", "hello", "native"]);
    assert_success(&out, "probe echo");
    assert_eq!(stdout(&out), "hello native\n");
    let out = run(&cd, &[], "n-exit", &["exit", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        cd.log()
            .contains("container n-echo: runs through runc: ELF executable"),
        "the decision is not in containerd's log"
    );
    for (signal, code) in [("SIGTERM", 143), ("SIGKILL", 137)] {
        let id = format!("n-{signal}");
        let mut ctr = cd.spawn_ctr(&[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            PROBE,
            &id,
            "/probe",
            "sleep",
        ]);
        wait_until(&format!("{id} to run"), Duration::from_secs(20), || {
            cd.task_has_status(&id, "RUNNING")
        });
        assert_success(&cd.ctr(&["task", "kill", "--signal", signal, &id]), "kill");
        let status = wasmbox_tests::wait_with_timeout(&mut ctr, Duration::from_secs(10));
        assert_eq!(status.code(), Some(code), "{signal}");
    }
    cd.assert_nothing_left();
}

#[test]
fn exec_a_terminal_pause_resume_and_metrics_work_as_under_runc() {
    let cd = with_probe();
    let pid = start_detached(&cd, RUNTIME, &[], "n-life");

    let out = cd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "n-life",
        "/probe",
        "echo",
        "from",
        "exec",
    ]);
    assert_success(&out, "ctr task exec");
    assert_eq!(stdout(&out), "from exec\n");
    let out = cd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        "n-life",
        "/probe",
        "exit",
        "7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));

    // A terminal for an exec, through `script`, which gives ctr one.
    let tty = terminal_run(
        &cd,
        &[
            "task",
            "exec",
            "-t",
            "--exec-id",
            "t1",
            "n-life",
            "/probe",
            "tty",
        ],
    );
    assert!(tty.contains("probe: stdin is a terminal"), "{tty}");
    assert!(tty.contains("got: typed line"), "{tty}");

    assert_success(&cd.ctr(&["task", "pause", "n-life"]), "pause");
    assert!(cd.task_has_status("n-life", "PAUSED"));
    let state = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        state.contains("State:\tD") || state.contains("State:\tS"),
        "{state}"
    );
    assert_success(&cd.ctr(&["task", "resume", "n-life"]), "resume");
    assert!(cd.task_has_status("n-life", "RUNNING"));
    let metrics = stdout(&cd.ctr(&["task", "metrics", "n-life"]));
    let usage: u64 = metrics
        .lines()
        .find(|l| l.starts_with("memory.usage_in_bytes") || l.starts_with("memory.usage "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no memory usage in {metrics}"));
    assert!(usage > 0, "{metrics}");
    let ps = stdout(&cd.ctr(&["task", "ps", "n-life"]));
    assert!(ps.contains(&pid.to_string()), "{ps}");
    cd.remove_detached("n-life");
    assert!(
        gone(pid),
        "{pid} is left: {:?}\n{}",
        std::fs::read_to_string(format!("/proc/{pid}/status")),
        cd.log()
            .lines()
            .filter(|l| l.contains("n-life") && !l.contains("Execute command"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // `ctr run -t`: the container's own terminal.
    let tty = terminal_run(
        &cd,
        &[
            "run",
            "--rm",
            "-t",
            "--runtime",
            RUNTIME,
            PROBE,
            "n-tty",
            "/probe",
            "tty",
        ],
    );
    assert!(tty.contains("probe: stdin is a terminal"), "{tty}");
    assert!(tty.contains("got: typed line"), "{tty}");
    cd.assert_nothing_left();
}

/// Runs ctr `args` under `script`, so that it has a terminal, types a line
/// once the program says it is ready, and returns what the terminal showed.
fn terminal_run(cd: &Containerd, args: &[&str]) -> String {
    let line = cd.ctr_command();
    let command = std::iter::once(line.get_program())
        .chain(line.get_args())
        .chain(args.iter().map(std::ffi::OsStr::new))
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) is needed for the terminal tests");
    let mut stdin = script.stdin.take().unwrap();
    let mut reader = wasmbox_tests::Lines::of(&mut script);
    let mut shown = reader.wait_for(|l| l.contains("probe: stdin is"), Duration::from_secs(20));
    stdin.write_all(b"typed line\n").unwrap();
    drop(stdin);
    shown.extend(reader.wait_for(|l| l.contains("got:"), Duration::from_secs(20)));
    let _ = wasmbox_tests::wait_with_timeout(&mut script, Duration::from_secs(20));
    shown.join("\n")
}

#[test]
fn a_native_container_is_confined_as_runc_confines_it() {
    let cd = with_probe();
    println!("| ctr flags | | CapEff | NoNewPrivs | Seccomp |");
    println!("|---|---|---|---|---|");
    for (name, flags) in [("default", &[][..]), ("seccomp", &["--seccomp"][..])] {
        let (wasmbox_id, runc_id) = (format!("w-{name}"), format!("r-{name}"));
        let w = proc_status(start_detached(&cd, RUNTIME, flags, &wasmbox_id));
        let r = proc_status(start_detached(&cd, RUNC, flags, &runc_id));
        for (who, status) in [("runc", &r), ("wasmbox", &w)] {
            println!(
                "| {name} | {who} | {} | {} | {} |",
                status["CapEff"], status["NoNewPrivs"], status["Seccomp"]
            );
        }
        for field in ["CapEff", "CapBnd", "NoNewPrivs", "Seccomp", "Uid"] {
            assert_eq!(w[field], r[field], "{name}: {field}");
        }
        cd.remove_detached(&wasmbox_id);
        cd.remove_detached(&runc_id);
    }
    cd.assert_nothing_left();
}

#[test]
fn the_operator_can_refuse_native_containers() {
    let cd = with_probe();
    let refuse = settings("native = \"refuse\"\n");
    let path = refuse.path().to_str().unwrap();
    for flags in [
        vec!["--runtime-config-path", path],
        vec!["--annotation", "wasmbox.io/native=refuse"],
    ] {
        let out = run(&cd, &flags, "n-refused", &["echo", "no"]);
        assert!(!out.status.success(), "{flags:?}: it ran");
        let err = stderr(&out);
        assert!(
            err.contains("is not a WebAssembly module: it is an ELF executable")
                && err.contains("run it with runc"),
            "{flags:?}: {err}"
        );
        cd.assert_nothing_left();
    }
    let containers = stdout(&cd.ctr(&["containers", "list", "--quiet"]));
    assert_eq!(containers.trim(), "", "containers left: {containers}");
}

#[test]
fn runcs_errors_reach_the_user_and_nothing_is_left() {
    let cd = with_probe();
    // runc missing: Create names the binary it looked for.
    let missing = settings("BinaryName = \"/nonexistent/runc\"\n");
    let out = run(
        &cd,
        &["--runtime-config-path", missing.path().to_str().unwrap()],
        "n-norunc",
        &["echo", "x"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/runc was not found"),
        "{}",
        stderr(&out)
    );
    cd.assert_nothing_left();

    let probe = std::fs::read(repo_root().join("target/native/probe")).unwrap();
    let rootfs = rootfs_with(&[
        ("/probe", &probe),
        ("/run.sh", b"#!/bin/nosuchshell\necho hi\n"),
    ]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        rootfs.path().join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        rootfs.path().join("probe"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // Not executable: runc's create fails, and its message is the error.
    let out = cd.run_rootfs(rootfs.path(), "n-noexec", &["/probe", "echo", "x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("exec: \"/probe\": permission denied"),
        "{}",
        stderr(&out)
    );
    // A script whose interpreter is missing: runc's exec error.
    let out = output_with_timeout(
        {
            let mut c = cd.ctr_command();
            c.args(["run", "--rm", "--runtime", RUNTIME, "--rootfs"])
                .arg(rootfs.path())
                .args(["n-nointerp", "/run.sh"]);
            c
        },
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no such file or directory"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    cd.assert_nothing_left();
    let containers = stdout(&cd.ctr(&["containers", "list", "--quiet"]));
    assert_eq!(containers.trim(), "", "containers left: {containers}");
}
