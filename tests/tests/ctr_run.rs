//! `ctr run` through the wasmbox shim, against a private containerd: output,
//! exit codes, signals, bad input, the compiled-module cache, and that
//! nothing is left behind.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use wasmbox_tests::*;

#[test]
fn image_hello_prints_greeting_args_and_env() {
    let cd = Containerd::start();
    cd.import_wasm_image(
        &sample_wasm("hello"),
        "docker.io/wasmbox/hello:test",
        &["--env", "GREETING=bonjour", "--arg", "from-image"],
    );
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "docker.io/wasmbox/hello:test",
        "hello1",
    ]);
    assert_success(&out, "ctr run hello image");
    let text = stdout(&out);
    assert!(text.contains("Hello from a wasmbox container!"), "{text}");
    assert!(
        text.contains(r#"args: ["/app.wasm", "from-image"]"#),
        "{text}"
    );
    assert!(text.contains("env: GREETING=bonjour"), "{text}");

    // Args on the command line replace the image's Cmd.
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--env",
        "EXTRA=1",
        "docker.io/wasmbox/hello:test",
        "hello2",
        "/app.wasm",
        "x",
        "y",
    ]);
    assert_success(&out, "ctr run hello image with args");
    let text = stdout(&out);
    assert!(text.contains(r#"args: ["/app.wasm", "x", "y"]"#), "{text}");
    assert!(text.contains("env: EXTRA=1"), "{text}");
    cd.assert_nothing_left();
}

#[test]
fn plain_rootfs_runs_any_wasip1_program() {
    let cd = Containerd::start();
    // A C program built with clang and wasi-libc, not one of our Rust apps.
    let rootfs = rootfs_with(&[("/app.wasm", &read_sample("c-hello"))]);
    let out = cd.run_rootfs(rootfs.path(), "c1", &["/app.wasm", "a", "b"]);
    assert_success(&out, "ctr run --rootfs c-hello");
    assert_eq!(
        stdout(&out),
        "hello from C\nargv[0]=/app.wasm\nargv[1]=a\nargv[2]=b\n"
    );
    cd.assert_nothing_left();
}

#[test]
fn proc_exit_code_is_the_task_exit_code() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/exit.wasm", &read_sample("exit-code"))]);
    for code in [0, 3, 42] {
        let out = cd.run_rootfs(
            rootfs.path(),
            &format!("exit{code}"),
            &["/exit.wasm", &code.to_string()],
        );
        assert_eq!(out.status.code(), Some(code), "stderr: {}", stderr(&out));
        assert_eq!(stdout(&out), format!("exiting with {code}\n"));
    }
    cd.assert_nothing_left();
}

#[test]
fn trap_exits_134_with_the_message_on_stderr() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/trap.wasm", &read_sample("trap"))]);
    let out = cd.run_rootfs(rootfs.path(), "trap1", &["/trap.wasm"]);
    assert_eq!(out.status.code(), Some(134), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "about to trap\n");
    let err = stderr(&out);
    assert!(err.contains("/trap.wasm trapped (exit code 134)"), "{err}");
    assert!(
        err.contains("wasm `unreachable` instruction executed"),
        "{err}"
    );
    cd.assert_nothing_left();
}

/// Runs the sleeper, waits for it to say it is up, sends `signal` with
/// `ctr task kill`, and returns the exit code `ctr run` reports.
fn kill_sleeper(cd: &Containerd, id: &str, signal: &str) -> Option<i32> {
    let rootfs = rootfs_with(&[("/sleeper.wasm", &read_sample("sleeper"))]);
    let root = rootfs.path().to_str().unwrap().to_string();
    let mut run = cd.spawn_ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--rootfs",
        &root,
        id,
        "/sleeper.wasm",
    ]);
    wait_for_line(&mut run, "sleeper: up", Duration::from_secs(30));
    let out = cd.ctr(&["task", "kill", "--signal", signal, id]);
    assert_success(&out, "ctr task kill");
    let status = wait_with_timeout(&mut run, Duration::from_secs(10));
    status.code()
}

#[test]
fn sigterm_ends_a_busy_guest_with_143() {
    let cd = Containerd::start();
    assert_eq!(kill_sleeper(&cd, "term1", "SIGTERM"), Some(143));
    cd.assert_nothing_left();
}

#[test]
fn sigkill_ends_a_busy_guest_with_137() {
    let cd = Containerd::start();
    assert_eq!(kill_sleeper(&cd, "kill1", "SIGKILL"), Some(137));
    cd.assert_nothing_left();
}

#[test]
fn bad_entrypoints_fail_with_clear_errors_and_leave_nothing() {
    let cd = Containerd::start();
    let elf = std::fs::read("/bin/true").expect("read /bin/true");
    let rootfs = rootfs_with(&[
        ("/bin/true", &elf),
        ("/run.sh", b"#!/bin/sh\necho hi\n"),
        ("/broken.wasm", b"\0asm\x01\0\0\0\x01garbage"),
        ("/hello.wasm", &read_sample("hello")),
    ]);
    let cases: &[(&str, &[&str])] = &[
        (
            "/bin/true",
            &["/bin/true", "is not a WebAssembly module", "ELF executable"],
        ),
        (
            "/run.sh",
            &[
                "/run.sh",
                "is not a WebAssembly module",
                "script (#!/bin/sh)",
            ],
        ),
        ("/missing.wasm", &["/missing.wasm", "no such file"]),
        (
            "/broken.wasm",
            &["/broken.wasm", "is not a valid WebAssembly module"],
        ),
        (
            "/hello.wasm#nope",
            &["/hello.wasm", "no exported function \"nope\"", "_start"],
        ),
    ];
    for (i, (entry, wants)) in cases.iter().enumerate() {
        // Native programs run through runc unless refused, which gives
        // the message they got before wasmbox ran them (see native.rs).
        let out = cd.run_rootfs_with(
            &["--annotation", "wasmbox.io/native=refuse"],
            rootfs.path(),
            &format!("bad{i}"),
            &[entry],
        );
        assert!(!out.status.success(), "{entry} should fail");
        let err = stderr(&out);
        for want in *wants {
            assert!(err.contains(want), "{entry}: stderr lacks {want:?}: {err}");
        }
        cd.assert_nothing_left();
    }
    let containers = stdout(&cd.ctr(&["containers", "list", "--quiet"]));
    assert_eq!(containers.trim(), "", "containers left: {containers}");
}

#[test]
fn bad_image_entrypoint_unmounts_the_rootfs() {
    let cd = Containerd::start();
    cd.import_wasm_image(&sample_wasm("hello"), "docker.io/wasmbox/hello:bad", &[]);
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "docker.io/wasmbox/hello:bad",
        "badimg",
        "/nothing.wasm",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("/nothing.wasm") && err.contains("no such file"),
        "{err}"
    );
    cd.assert_nothing_left();
}

#[test]
fn a_module_is_compiled_once_and_then_loaded_from_the_cache() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/app.wasm", &read_sample("hello"))]);
    assert_success(
        &cd.run_rootfs(rootfs.path(), "cache1", &["/app.wasm"]),
        "first run",
    );
    let entries = cd.cache_entries();
    assert_eq!(entries.len(), 1, "one compiled entry: {entries:?}");
    let before = std::fs::metadata(&entries[0]).unwrap();

    let out = cd.run_rootfs(rootfs.path(), "cache2", &["/app.wasm"]);
    assert_success(&out, "second run");
    assert!(stdout(&out).contains("Hello from a wasmbox container!"));
    assert_eq!(
        cd.cache_entries(),
        entries,
        "no new entry on a cached start"
    );
    let after = std::fs::metadata(&entries[0]).unwrap();
    assert_eq!(
        before.ino(),
        after.ino(),
        "entry replaced: it was compiled again"
    );
    // The runner reports how it got the module; the shim logs it.
    let first = cd.create_line("cache1");
    assert!(first.contains("cache=compiled"), "{first}");
    let second = cd.create_line("cache2");
    assert!(second.contains("cache=hit"), "{second}");
    cd.assert_nothing_left();
}

#[test]
fn stdin_reaches_the_guest() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/cat.wasm", &read_sample("cat"))]);
    let root = rootfs.path().to_str().unwrap();
    let mut cmd = cd.ctr_command();
    cmd.args([
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--rootfs",
        root,
        "stdin1",
        "/cat.wasm",
    ]);
    cmd.stdin(std::process::Stdio::piped());
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ctr");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"line one\nline two\n").unwrap();
    }
    let out = wait_output(child, Duration::from_secs(30));
    assert_success(&out, "ctr run cat with stdin");
    assert_eq!(stdout(&out), "line one\nline two\n");
    cd.assert_nothing_left();
}

#[test]
fn exec_is_refused_clearly_and_detached_tasks_clean_up() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/sleeper.wasm", &read_sample("sleeper"))]);
    let root = rootfs.path().to_str().unwrap();
    assert_success(
        &cd.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            "--rootfs",
            root,
            "exec1",
            "/sleeper.wasm",
        ]),
        "ctr run -d",
    );
    assert!(cd.task_has_status("exec1", "RUNNING"));

    let out = cd.ctr(&["task", "exec", "--exec-id", "e1", "exec1", "/sleeper.wasm"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("exec is not supported for wasm containers"),
        "{}",
        stderr(&out)
    );

    // pids lists the runner.
    let pids = stdout(&cd.ctr(&["task", "ps", "exec1"]));
    assert_eq!(pids.lines().count(), 2, "header and the runner: {pids}");

    // Kill, wait on the task's status, delete task and container.
    cd.remove_detached("exec1");
    cd.assert_nothing_left();
}

#[test]
fn task_events_are_published_in_order() {
    let cd = Containerd::start();
    let mut events_ctr = cd.spawn_ctr(&["events"]);
    let mut events = Lines::of(&mut events_ctr);
    let rootfs = rootfs_with(&[("/exit.wasm", &read_sample("exit-code"))]);
    // `ctr events` says nothing when its subscription is live: run a first
    // container until its delete event shows, then the one we check.
    let warmup = cd.run_rootfs(rootfs.path(), "warmup", &["/exit.wasm", "0"]);
    assert_success(&warmup, "warm-up run");
    events.wait_for(|l| l.contains("/tasks/delete"), Duration::from_secs(10));

    let out = cd.run_rootfs(rootfs.path(), "events1", &["/exit.wasm", "7"]);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", stderr(&out));
    let seen = events.wait_for(
        |l| l.contains("/tasks/delete") && l.contains("events1"),
        Duration::from_secs(10),
    );
    let _ = events_ctr.kill();
    let _ = events_ctr.wait();
    let ours: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("/tasks/") && l.contains("events1"))
        .collect();
    let topics: Vec<&str> = ours
        .iter()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
        .collect();
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "{seen:#?}"
    );
    let exit = ours.iter().find(|l| l.contains("/tasks/exit")).unwrap();
    assert!(exit.contains("\"exit_status\":7"), "{exit}");
    cd.assert_nothing_left();
}

#[test]
fn a_detached_guest_outlives_its_client() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/sleeper.wasm", &read_sample("sleeper"))]);
    let root = rootfs.path().to_str().unwrap();
    // `ctr run -d` exits at once, and with it the reader of the guest's
    // stdout; the guest keeps printing a tick every 100 ms.
    assert_success(
        &cd.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            "--rootfs",
            root,
            "detached1",
            "/sleeper.wasm",
            "tick",
        ]),
        "ctr run -d",
    );
    // Ten ticks with nobody reading: the guest must still be running.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        cd.task_has_status("detached1", "RUNNING"),
        "the guest died when its client went away"
    );
    cd.remove_detached("detached1");
    cd.assert_nothing_left();
}
