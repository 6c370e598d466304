//! Components (WASI 0.2) through `ctr run`: a `wasi:cli/run` command gets
//! its args, env, preopens and exit code; a wasi:http component is served
//! in the container's network namespace over HTTP/1.1 and h2c, makes
//! outgoing requests, logs to the container's stdout, and drains on
//! SIGTERM; its listen address can be set, and a bad one is refused.

use std::process::Child;
use std::time::Duration;

use wasmbox_tests::*;

#[test]
fn a_command_component_gets_args_env_preopens_and_its_exit_code() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[
        ("/app.wasm", &read_sample("cli-p2")),
        ("/data.txt", b"component data\n"),
    ]);
    let root = rootfs.path().to_str().expect("utf-8 path");
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--env",
        "COLOR=blue",
        "--rootfs",
        root,
        "p2-cli",
        "/app.wasm",
        "read",
        "/data.txt",
        "write",
        "/out.txt",
        "written by a component",
        "exit",
        "42",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(42), "{text}\n{}", stderr(&out));
    assert!(text.contains("Hello from a wasmbox component!"), "{text}");
    assert!(
        text.contains(r#"args: ["/app.wasm", "read", "/data.txt", "write", "/out.txt", "written by a component", "exit", "42"]"#),
        "{text}"
    );
    assert!(text.contains("env: COLOR=blue"), "{text}");
    assert!(text.contains("read /data.txt: component data"), "{text}");
    assert!(text.contains("write /out.txt: ok"), "{text}");
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("out.txt")).expect("out.txt written"),
        "written by a component"
    );

    // From an image, with no args: it greets and exits 0; the log shows the
    // runner saw a command component.
    cd.import_wasm_image(&sample_wasm("cli-p2"), "docker.io/wasmbox/cli-p2:test", &[]);
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "docker.io/wasmbox/cli-p2:test",
        "p2-image",
    ]);
    assert_success(&out, "ctr run cli-p2 image");
    assert!(
        stdout(&out).contains(r#"args: ["/app.wasm"]"#),
        "{}",
        stdout(&out)
    );
    assert!(
        cd.log().contains("kind=command-component"),
        "no component in the log"
    );

    // A component with nothing to run (here the smallest valid one) fails
    // at create, saying so, and leaves nothing behind.
    let rootfs = rootfs_with(&[("/empty.wasm", b"\0asm\x0d\0\x01\0")]);
    let out = cd.run_rootfs(rootfs.path(), "p2-empty", &["/empty.wasm"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "/empty.wasm is a component that exports neither wasi:cli/run nor wasi:http/incoming-handler, so there is nothing to run (it exports nothing)"
        ),
        "{}",
        stderr(&out)
    );
    cd.assert_nothing_left();
}

/// An `http-hello` server under `ctr run`.
struct Served {
    run: Child,
    stdout: Lines,
    /// Kept to the end: ctr dies of SIGPIPE if its stderr is closed.
    stderr: Lines,
    pid: u32,
}

/// Starts `http-hello` from an image under `ctr run` and waits (at most
/// 60 s) for the runner's "serving" line.
fn serve(cd: &Containerd, id: &str, extra: &[&str], addr: &str) -> Served {
    let mut args = vec!["run", "--rm", "--runtime", RUNTIME];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["docker.io/wasmbox/http-hello:test", id]);
    let mut run = cd.spawn_ctr(&args);
    let stdout = Lines::of(&mut run);
    let mut stderr = Lines::of_stderr(&mut run);
    let serving = format!("wasmbox: serving /app.wasm (wasi:http) on http://{addr}/");
    stderr.wait_for(|l| l == serving, Duration::from_secs(60));
    let pid = cd.task_pid(id);
    Served {
        run,
        stdout,
        stderr,
        pid,
    }
}

#[test]
fn a_wasi_http_component_is_served_and_drains_on_sigterm() {
    let cd = Containerd::start();
    cd.import_wasm_image(
        &sample_wasm("http-hello"),
        "docker.io/wasmbox/http-hello:test",
        &[],
    );
    // ctr gives the container a network namespace of its own (only `lo`):
    // the server is reachable there, through the task's namespace.
    let Served {
        mut run,
        stdout: mut logs,
        pid,
        stderr: _stderr,
    } = serve(&cd, "web", &[], "0.0.0.0:8080");

    let out = curl_in_netns(pid, &["-i", "http://127.0.0.1:8080/"]);
    assert_success(&out, "curl over HTTP/1.1");
    let text = stdout(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("Hello from a wasmbox wasi:http component!\n"),
        "{text}"
    );

    let out = curl_in_netns(
        pid,
        &["-i", "--http2-prior-knowledge", "http://127.0.0.1:8080/"],
    );
    assert_success(&out, "curl over h2c");
    let text = stdout(&out);
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(
        text.ends_with("Hello from a wasmbox wasi:http component!\n"),
        "{text}"
    );

    let out = curl_in_netns(pid, &["-i", "http://127.0.0.1:8080/nothing-here"]);
    assert!(stdout(&out).starts_with("HTTP/1.1 404"), "{}", stdout(&out));

    // An outgoing request (wasi:http/outgoing-handler), to the server itself.
    let out = curl_in_netns(
        pid,
        &["http://127.0.0.1:8080/fetch?url=http%3A%2F%2F127.0.0.1:8080%2F"],
    );
    assert_success(&out, "curl /fetch");
    assert_eq!(
        stdout(&out),
        "fetched http://127.0.0.1:8080/: 200 (42 bytes)\n"
    );

    // The guest's prints are the container's stdout, one line per request.
    logs.wait_for(
        |l| l.starts_with("http-hello: GET http://127.0.0.1:8080/nothing-here"),
        Duration::from_secs(10),
    );

    // SIGTERM while a request is in flight: it is answered, new connections
    // are refused, and the task exits 0.
    let slow = curl_in_netns_command(pid, &["http://127.0.0.1:8080/slow?ms=1500"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn curl");
    logs.wait_for(|l| l.contains("/slow?ms=1500"), Duration::from_secs(10));
    assert_success(&cd.ctr(&["task", "kill", "web"]), "SIGTERM");
    let slow = wait_output(slow, Duration::from_secs(30));
    assert_success(&slow, "the request in flight");
    assert_eq!(stdout(&slow), "slept 1500 ms\n");
    let status = wait_with_timeout(&mut run, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "a drained server exits 0");
    cd.assert_nothing_left();
}

/// `curl` for the status code alone, started now and waited on later.
fn spawn_status_of(pid: u32, url: &str) -> Child {
    curl_in_netns_command(pid, &["-o", "/dev/null", "-w", "%{http_code}", url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn curl")
}

#[test]
fn a_request_past_its_deadline_gets_a_500_and_gives_its_thread_back() {
    let cd = Containerd::start();
    cd.import_wasm_image(
        &sample_wasm("http-hello"),
        "docker.io/wasmbox/http-hello:test",
        &[],
    );
    let mut served = serve(
        &cd,
        "deadline",
        &["--annotation", "wasmbox.io/http-request-timeout=8s"],
        "0.0.0.0:8080",
    );
    let pid = served.pid;

    // Three handlers that loop in wasm for ever: more than the server's
    // worker threads (one per core here).
    let mut spins: Vec<Child> = (0..3)
        .map(|_| spawn_status_of(pid, "http://127.0.0.1:8080/spin"))
        .collect();
    for _ in 0..3 {
        served.stdout.wait_for(
            |l| l.contains("GET http://127.0.0.1:8080/spin"),
            Duration::from_secs(20),
        );
    }
    // They yield at each epoch tick: another request is answered while
    // they spin.
    let out = curl_in_netns(pid, &["http://127.0.0.1:8080/"]);
    assert_success(&out, "GET / beside three spinning handlers");
    assert_eq!(stdout(&out), "Hello from a wasmbox wasi:http component!\n");
    for spin in &mut spins {
        assert!(
            spin.try_wait().expect("try_wait").is_none(),
            "a /spin request ended before GET / was answered"
        );
    }
    // At their deadline each is stopped with a 500, and the reason is logged.
    for spin in spins {
        let out = wait_output(spin, Duration::from_secs(30));
        assert_eq!(stdout(&out), "500", "{}", stderr(&out));
    }
    for _ in 0..3 {
        served.stderr.wait_for(
            |l| l.contains("/app.wasm: request failed") && l.contains("did not finish within 8s"),
            Duration::from_secs(10),
        );
    }
    // The server goes on.
    let out = curl_in_netns(pid, &["-i", "http://127.0.0.1:8080/"]);
    assert!(stdout(&out).starts_with("HTTP/1.1 200"), "{}", stdout(&out));

    // A handler that waits (here on a 10-minute timer) does not hold the
    // drain after SIGTERM past its deadline.
    let waiting = spawn_status_of(pid, "http://127.0.0.1:8080/slow?ms=600000");
    served
        .stdout
        .wait_for(|l| l.contains("/slow?ms=600000"), Duration::from_secs(20));
    assert_success(&cd.ctr(&["task", "kill", "deadline"]), "SIGTERM");
    let out = wait_output(waiting, Duration::from_secs(30));
    assert_eq!(stdout(&out), "500", "{}", stderr(&out));
    let status = wait_with_timeout(&mut served.run, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "a drained server exits 0");
    cd.assert_nothing_left();
}

#[test]
fn the_listen_address_comes_from_env_or_annotation_and_bad_ones_are_refused() {
    let cd = Containerd::start();
    cd.import_wasm_image(
        &sample_wasm("http-hello"),
        "docker.io/wasmbox/http-hello:test",
        &[],
    );

    for (id, flag, setting, addr) in [
        (
            "by-env",
            "--env",
            "WASMBOX_HTTP_ADDR=127.0.0.1:9000",
            "127.0.0.1:9000",
        ),
        (
            "by-annotation",
            "--annotation",
            "wasmbox.io/http-addr=127.0.0.1:9001",
            "127.0.0.1:9001",
        ),
    ] {
        let Served {
            mut run,
            pid,
            stderr: _stderr,
            ..
        } = serve(&cd, id, &[flag, setting], addr);
        let out = curl_in_netns(pid, &[&format!("http://{addr}/")]);
        assert_success(&out, &format!("curl on the address of {setting}"));
        assert_eq!(cd.kill_and_wait(&mut run, id).code(), Some(137));
    }

    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--env",
        "WASMBOX_HTTP_ADDR=localhost",
        "docker.io/wasmbox/http-hello:test",
        "bad-addr",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains(r#"process.env WASMBOX_HTTP_ADDR "localhost" is not a listen address"#),
        "{}",
        stderr(&out)
    );

    // A port that is taken fails the create call, naming the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let env = format!("WASMBOX_HTTP_ADDR={addr}");
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--net-host",
        "--env",
        &env,
        "docker.io/wasmbox/http-hello:test",
        "taken",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("/app.wasm is a wasi:http component, and it cannot listen on {addr}: Address already in use")),
        "{}",
        stderr(&out)
    );
    cd.assert_nothing_left();
}
