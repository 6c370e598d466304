//! One tag for both worlds: an image index with a `wasi/wasm` manifest and
//! a `linux/amd64` one (the packer's `--native`), as a migration path from
//! a musl image. `--platform wasi/wasm` picks the wasm entry, run by
//! wasmbox; runc, or any client that asks for the host's platform, gets
//! the native binary.

use wasmbox_tests::*;

#[test]
fn one_multi_platform_tag_runs_as_wasm_and_as_native() {
    let cd = Containerd::start();
    let name = "docker.io/wasmbox/both-worlds:test";
    let native = repo_root().join("target/native/probe");
    let native = native.to_str().expect("utf-8 path");
    let tar = pack_image(
        cd.dir(),
        &sample_wasm("hello"),
        name,
        &["--native", native, "--native-entrypoint", "/probe"],
    );
    cd.import_tar(&tar);
    let images = stdout(&cd.ctr(&["images", "ls"]));
    assert!(
        images
            .lines()
            .any(|l| l.starts_with(name) && l.contains("linux/amd64,wasi/wasm")),
        "{images}"
    );

    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--platform",
        "wasi/wasm",
        name,
        "as-wasm",
    ]);
    assert_success(&out, "the wasm entry under wasmbox");
    assert!(
        stdout(&out).starts_with("Hello from a wasmbox container!"),
        "{}",
        stdout(&out)
    );

    let out = cd.ctr(&[
        "run",
        "--rm",
        "--platform",
        "linux/amd64",
        name,
        "as-native",
        "/probe",
        "echo",
        "both-worlds",
    ]);
    assert_success(&out, "the native entry under runc");
    assert_eq!(stdout(&out), "both-worlds\n");

    // Without --platform, a client gets the host's entry: under wasmbox,
    // that native binary runs through runc too.
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        name,
        "host-platform",
        "/probe",
        "echo",
        "native-by-default",
    ]);
    assert_success(&out, "the host's entry under wasmbox");
    assert_eq!(stdout(&out), "native-by-default\n");
    cd.assert_nothing_left();
}
