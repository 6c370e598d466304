//! Docker as a way in: a private dockerd (Debian sid's docker.io 28.5) on
//! the private containerd, with the containerd image store, running wasm
//! images under wasmbox as a user would with `docker run --runtime wasmbox
//! --platform wasi/wasm`: build, load, run, logs, stats, stop, kill, memory
//! limits, bind mounts, environment, published ports, and one tag for wasm
//! and native.

use std::time::Duration;
use wasmbox_tests::docker::Docker;
use wasmbox_tests::*;

/// The runtime as daemon.json names it (scripts/private-docker.sh).
const WASMBOX: [&str; 4] = ["--runtime", "wasmbox", "--platform", "wasi/wasm"];

/// `docker ARGS`, which must succeed; its stdout.
fn docker_ok(docker: &Docker, args: &[&str]) -> String {
    let out = docker.docker(args);
    assert_success(&out, &format!("docker {}", args.join(" ")));
    stdout(&out)
}

/// `docker load -i` of the sample image NAME's wasmbox-image tarball.
fn load_sample(docker: &Docker, name: &str) {
    let tar = repo_root().join(format!("target/images/{name}.tar"));
    let loaded = docker_ok(docker, &["load", "-i", tar.to_str().expect("utf-8 path")]);
    assert_eq!(
        loaded.trim(),
        format!("Loaded image: wasmbox/{name}:latest")
    );
}

/// `docker run --rm` under wasmbox: the output, the exit code, `-e`, a
/// read-write and a read-only `-v`, `docker kill` (137), a memory limit
/// (the out-of-memory message, 137 and OOMKilled), and what wasm does not
/// do (a terminal, `docker exec`) refused with the reason.
#[test]
fn docker_runs_wasm_modules_and_components() {
    let docker = Docker::start();
    for name in [
        "hello",
        "exit-code",
        "cli-p2",
        "fsprobe",
        "memhog",
        "sleeper",
    ] {
        load_sample(&docker, name);
    }

    let run = |args: &[&str]| docker.docker(&[&["run", "--rm"], &WASMBOX[..], args].concat());
    let out = run(&["-e", "GREETING=hi", "wasmbox/hello", "one", "two"]);
    assert_success(&out, "docker run hello");
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "Hello from a wasmbox container!\nargs: [\"/app.wasm\", \"one\", \"two\"]\n"
        ),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "env: GREETING=hi"), "{text}");

    // The runtime by its shim name alone, without daemon.json's entry.
    let out = docker.docker(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.wasmbox.v1",
        "--platform",
        "wasi/wasm",
        "wasmbox/exit-code",
        "42",
    ]);
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    assert_eq!(stdout(&out), "exiting with 42\n");

    let out = run(&["wasmbox/cli-p2"]);
    assert_success(&out, "docker run cli-p2");
    assert!(
        stdout(&out).starts_with("Hello from a wasmbox component!\n"),
        "{}",
        stdout(&out)
    );

    let rw = tempfile::tempdir_in(docker.dir()).expect("temp dir");
    let ro = tempfile::tempdir_in(docker.dir()).expect("temp dir");
    std::fs::write(ro.path().join("in.txt"), "from the host").expect("write in.txt");
    let rw_mount = format!("{}:/data", rw.path().display());
    let ro_mount = format!("{}:/config:ro", ro.path().display());
    let out = run(&[
        "-v",
        &rw_mount,
        "-v",
        &ro_mount,
        "wasmbox/fsprobe",
        "write:/data/out.txt:from the guest",
        "read:/config/in.txt",
        "write:/config/in.txt:overwritten",
    ]);
    assert_success(&out, "docker run fsprobe");
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "write /data/out.txt: ok ");
    assert_eq!(lines[1], "read /config/in.txt: ok from the host");
    assert!(
        lines[2].starts_with("write /config/in.txt: error"),
        "{lines:?}"
    );
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out.txt")).expect("out.txt on the host"),
        "from the guest"
    );
    assert_eq!(
        std::fs::read_to_string(ro.path().join("in.txt")).expect("in.txt"),
        "from the host"
    );

    let id = docker_ok(
        &docker,
        &[&["run", "-d"], &WASMBOX[..], &["wasmbox/sleeper"]].concat(),
    );
    let id = id.trim();
    docker_ok(&docker, &["kill", id]);
    assert_eq!(docker_ok(&docker, &["wait", id]).trim(), "137");
    docker_ok(&docker, &["rm", id]);

    let out = docker.docker(
        &[
            &["run", "--name", "memhog"],
            &WASMBOX[..],
            &["-m", "32m", "wasmbox/memhog", "200"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("out of memory (exit code 137)")
            && stderr(&out).contains("the container's memory limit is 32 MiB"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        docker_ok(
            &docker,
            &[
                "inspect",
                "-f",
                "{{.State.OOMKilled}} {{.State.ExitCode}}",
                "memhog"
            ]
        )
        .trim(),
        "true 137"
    );
    docker_ok(&docker, &["rm", "memhog"]);

    let out = run(&["-t", "wasmbox/hello"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("wasmbox does not support a terminal yet: run without -t/--tty"),
        "{}",
        stderr(&out)
    );
    let id = docker_ok(
        &docker,
        &[&["run", "-d"], &WASMBOX[..], &["wasmbox/sleeper"]].concat(),
    );
    let id = id.trim();
    let out = docker.docker(&["exec", id, "/app.wasm"]);
    // docker exec prints the daemon's reason on stdout.
    let said = stdout(&out) + &stderr(&out);
    assert!(
        !out.status.success() && said.contains("exec is not supported for wasm containers"),
        "{said}"
    );
    docker_ok(&docker, &["rm", "-f", id]);
    docker.stop_and_assert_nothing_left();
}

/// `docker buildx build --platform wasi/wasm` of a FROM scratch Dockerfile,
/// run; wasmbox-image tarballs show their real creation time in `docker
/// images`, and two builds with one SOURCE_DATE_EPOCH are one image.
#[test]
fn docker_builds_wasm_images_and_shows_when_they_were_made() {
    let docker = Docker::start();
    let context = tempfile::tempdir_in(docker.dir()).expect("temp dir");
    std::fs::copy(sample_wasm("hello"), context.path().join("hello.wasm")).expect("copy wasm");
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.wasm /app.wasm\nENTRYPOINT [\"/app.wasm\"]\n",
    )
    .expect("write Dockerfile");
    let context_path = context.path().to_str().expect("utf-8 path");
    let out = docker.docker(&[
        "buildx",
        "build",
        "--platform",
        "wasi/wasm",
        "-t",
        "example.com/built:1",
        context_path,
    ]);
    assert_success(&out, "docker buildx build");
    let out = docker.docker(
        &[
            &["run", "--rm"],
            &WASMBOX[..],
            &["example.com/built:1", "built"],
        ]
        .concat(),
    );
    assert_success(&out, "docker run of the built image");
    assert!(
        stdout(&out)
            .starts_with("Hello from a wasmbox container!\nargs: [\"/app.wasm\", \"built\"]"),
        "{}",
        stdout(&out)
    );

    // Packed now: `docker images` says seconds ago, not "56 years ago".
    let now = pack_image(
        docker.dir(),
        &sample_wasm("hello"),
        "example.com/now:1",
        &[],
    );
    docker_ok(&docker, &["load", "-i", now.to_str().expect("utf-8 path")]);
    let since = docker_ok(
        &docker,
        &[
            "images",
            "--format",
            "{{.CreatedSince}}",
            "example.com/now:1",
        ],
    );
    assert!(
        since.contains("second") || since.contains("minute"),
        "docker images says the image was made {since}"
    );

    // Two builds with one SOURCE_DATE_EPOCH: one image ID, made then.
    let ids: Vec<String> = ["example.com/dated:a", "example.com/dated:b"]
        .iter()
        .map(|name| {
            let tar = pack_image_dated(
                docker.dir(),
                &sample_wasm("hello"),
                name,
                &[],
                Some("1700000000"),
            );
            docker_ok(&docker, &["load", "-i", tar.to_str().expect("utf-8 path")]);
            docker_ok(
                &docker,
                &["image", "inspect", "-f", "{{.Id}} {{.Created}}", name],
            )
        })
        .collect();
    assert_eq!(ids[0], ids[1], "two builds with SOURCE_DATE_EPOCH differ");
    assert!(
        ids[0].trim().ends_with(" 2023-11-14T22:13:20Z"),
        "{}",
        ids[0]
    );
    docker.stop_and_assert_nothing_left();
}

/// `docker run -d -p` of a wasi:http component on Docker's default bridge:
/// curl reaches the published port, `docker logs` has the server's lines,
/// `docker stats` its memory, and `docker stop` drains it to exit 0.
#[test]
fn a_wasi_http_server_under_docker_serves_its_published_port_and_stops_cleanly() {
    let docker = Docker::start();
    load_sample(&docker, "http-hello");
    let id = docker_ok(
        &docker,
        &[
            &["run", "-d", "--name", "web", "-p", "127.0.0.1:18080:8080"],
            &WASMBOX[..],
            &["wasmbox/http-hello"],
        ]
        .concat(),
    );
    let url = "http://127.0.0.1:18080/";
    let mut body = String::new();
    wait_until(
        "the published port to answer",
        Duration::from_secs(30),
        || {
            let out = docker.curl(&["--fail", url]);
            body = stdout(&out);
            out.status.success()
        },
    );
    assert_eq!(body, "Hello from a wasmbox wasi:http component!\n");
    // The same server from inside the bridge network, at its own address.
    let address = docker_ok(
        &docker,
        &["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"],
    );
    let direct = docker.curl(&["--fail", &format!("http://{}:8080/", address.trim())]);
    assert_success(&direct, "curl of the container's bridge address");

    let logs = docker.docker(&["logs", "web"]);
    assert_success(&logs, "docker logs");
    let all = stdout(&logs) + &stderr(&logs);
    assert!(
        all.contains("serving /app.wasm (wasi:http) on http://0.0.0.0:8080/")
            && all.contains("http-hello: GET http://127.0.0.1:18080/"),
        "{all}"
    );

    let usage = docker_ok(
        &docker,
        &["stats", "--no-stream", "--format", "{{.MemUsage}}", "web"],
    );
    let used = usage.split(" / ").next().unwrap_or_default();
    assert!(
        used.ends_with("MiB") || used.ends_with("KiB"),
        "docker stats says {usage}"
    );
    let amount: f64 = used
        .trim_end_matches("MiB")
        .trim_end_matches("KiB")
        .parse()
        .unwrap_or(0.0);
    assert!(amount > 0.0, "docker stats says {usage}");

    docker_ok(&docker, &["stop", "web"]);
    assert_eq!(
        docker_ok(
            &docker,
            &["inspect", "-f", "{{.State.ExitCode}}", id.trim()]
        )
        .trim(),
        "0"
    );
    let logs = docker.docker(&["logs", "web"]);
    assert!(
        stderr(&logs).contains("stopping: no new connections"),
        "{}",
        stderr(&logs)
    );
    docker_ok(&docker, &["rm", "web"]);
    docker.stop_and_assert_nothing_left();
}

/// One multi-platform tag under Docker, made by the packer (`--native`)
/// and by `docker buildx build --platform wasi/wasm,linux/amd64`:
/// `--platform wasi/wasm` runs the wasm under wasmbox, `--platform
/// linux/amd64` the native binary under runc.
#[test]
fn one_multi_platform_tag_runs_under_docker_both_ways() {
    let docker = Docker::start();
    let native = repo_root().join("target/native/probe");
    let tar = pack_image(
        docker.dir(),
        &sample_wasm("hello"),
        "example.com/packed-both:1",
        &[
            "--native",
            native.to_str().expect("utf-8 path"),
            "--native-entrypoint",
            "/app",
        ],
    );
    docker_ok(&docker, &["load", "-i", tar.to_str().expect("utf-8 path")]);

    // The same program for each platform, picked by TARGETOS.
    let context = tempfile::tempdir_in(docker.dir()).expect("temp dir");
    for (os, program) in [("wasi", sample_wasm("hello")), ("linux", native.clone())] {
        std::fs::create_dir(context.path().join(os)).expect("mkdir");
        std::fs::copy(program, context.path().join(os).join("app")).expect("copy program");
    }
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nARG TARGETOS\nCOPY ${TARGETOS}/app /app\nENTRYPOINT [\"/app\"]\n",
    )
    .expect("write Dockerfile");
    let out = docker.docker(&[
        "buildx",
        "build",
        "--platform",
        "wasi/wasm,linux/amd64",
        "-t",
        "example.com/built-both:1",
        context.path().to_str().expect("utf-8 path"),
    ]);
    assert_success(&out, "docker buildx build of two platforms");

    for tag in ["example.com/packed-both:1", "example.com/built-both:1"] {
        let out = docker.docker(&[&["run", "--rm"], &WASMBOX[..], &[tag]].concat());
        assert_success(&out, &format!("{tag}'s wasm entry under wasmbox"));
        assert!(
            stdout(&out).starts_with("Hello from a wasmbox container!"),
            "{tag}: {}",
            stdout(&out)
        );
        let out = docker.docker(&[
            "run",
            "--rm",
            "--platform",
            "linux/amd64",
            tag,
            "echo",
            "native under runc",
        ]);
        assert_success(&out, &format!("{tag}'s native entry under runc"));
        assert_eq!(stdout(&out), "native under runc\n", "{tag}");
    }
    docker.stop_and_assert_nothing_left();
}
