//! Wasm OCI artifacts: images whose one layer is the `.wasm` itself (media
//! types `application/vnd.wasm.content.layer.v1+wasm`,
//! `application/vnd.bytecodealliance.wasm.component.layer.v0+wasm` and
//! `application/wasm`), with no rootfs tar. They are imported with
//! `ctr images import` and through the containerd API, and run through the
//! containerd API (as CRI does) and, with an OCI image config, with plain
//! `ctr run`.
//!
//! containerd 1.6.20 (Debian bookworm) cannot unpack such images at import
//! ("mismatched image rootfs and manifest layers", fixed upstream in 1.6.25
//! and 1.7.7); there the tests check that it says so, and that the
//! containerd API path, which does not unpack, still runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmbox_tests::api::Api;
use wasmbox_tests::*;

/// Packs `app` as an artifact image; `extra` are more packer flags.
fn pack(cd: &Containerd, app: &str, name: &str, extra: &[&str]) -> PathBuf {
    pack_image(cd.dir(), &sample_wasm(app), name, extra)
}

/// The spec `ctr oci spec` prints: what a client would start from.
fn default_spec(cd: &Containerd) -> serde_json::Value {
    let out = cd.ctr(&["oci", "spec"]);
    assert_success(&out, "ctr oci spec");
    serde_json::from_slice(&out.stdout).expect("spec json")
}

/// `ctr images import`, which 1.6.20 refuses for wasm layers: there the
/// refusal is checked, and the calling `test` is skipped.
fn ctr_import(cd: &Containerd, tar: &Path, test: &str) -> bool {
    let out = cd.ctr(&[
        "images",
        "import",
        "--all-platforms",
        tar.to_str().expect("utf-8"),
    ]);
    if cd.version == "1.6" {
        assert!(!out.status.success(), "1.6.20 imported a wasm-layer image");
        assert!(
            stderr(&out).contains("mismatched image rootfs and manifest layers"),
            "{}",
            stderr(&out)
        );
        skip(test, "ctr 1.6 cannot import an image with wasm layers");
        return false;
    }
    assert_success(&out, "ctr images import");
    true
}

#[test]
fn a_cncf_wasm_artifact_imported_with_ctr_runs_and_its_layer_is_cached() {
    let cd = Containerd::start();
    let name = "docker.io/wasmbox/hello-artifact:test";
    let tar = pack(&cd, "hello", name, &["--artifact", "wasm"]);
    if !ctr_import(
        &cd,
        &tar,
        "a_cncf_wasm_artifact_imported_with_ctr_runs_and_its_layer_is_cached",
    ) {
        return;
    }
    let api = Api::connect(&cd.address);
    let spec = default_spec(&cd);
    let run = api
        .run(
            RUNTIME,
            &spec,
            name,
            "artifact1",
            &["hello-artifact", "x"],
            cd.dir(),
        )
        .expect("the artifact runs");
    assert_eq!(run.exit_status, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("Hello from a wasmbox container!"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(r#"args: ["hello-artifact", "x"]"#),
        "{}",
        run.stdout
    );

    // The layer is kept in the node cache under its digest, and the second
    // start maps the compiled module.
    let digest = sha256_hex(&read_sample("hello"));
    assert!(cd.cache_dir.join(format!("{digest}.wasm")).is_file());
    let run = api
        .run(RUNTIME, &spec, name, "artifact2", &[], cd.dir())
        .expect("the artifact runs again");
    assert_eq!(run.exit_status, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!(r#"args: ["{name}"]"#)),
        "{}",
        run.stdout
    );
    let log = cd.log();
    assert!(
        log.contains(&format!(
            "container artifact2: runs wasm layer sha256:{digest} of image {name}"
        )),
        "no layer line in the log"
    );
    let second = cd.create_line("artifact2");
    assert!(
        second.contains("cache=hit"),
        "the second start was not a cache hit: {second}"
    );
    cd.assert_nothing_left();
}

#[test]
fn every_wasm_layer_media_type_runs_when_imported_through_the_api() {
    let cd = Containerd::start();
    let api = Api::connect(&cd.address);
    let spec = default_spec(&cd);
    for (kind, app, greeting) in [
        ("wasm", "hello", "Hello from a wasmbox container!"),
        ("component", "cli-p2", "Hello from a wasmbox component!"),
        (
            "application-wasm",
            "hello",
            "Hello from a wasmbox container!",
        ),
    ] {
        let tar = pack(
            &cd,
            app,
            &format!("docker.io/wasmbox/{app}-{kind}:test"),
            &["--artifact", kind],
        );
        let name = api.import(&tar);
        let run = api
            .run(
                RUNTIME,
                &spec,
                &name,
                &format!("via-api-{kind}"),
                &["app"],
                cd.dir(),
            )
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(run.exit_status, 0, "{kind}: {}", run.stderr);
        assert!(run.stdout.contains(greeting), "{kind}: {}", run.stdout);
    }
    cd.assert_nothing_left();
}

#[test]
fn an_artifact_with_an_oci_config_runs_with_plain_ctr_run() {
    let cd = Containerd::start();
    let name = "docker.io/wasmbox/hello-oci-artifact:test";
    let tar = pack(
        &cd,
        "hello",
        name,
        &[
            "--artifact",
            "wasm",
            "--artifact-config",
            "oci",
            "--arg",
            "greeter",
            "--env",
            "GREETING=hi",
        ],
    );
    if !ctr_import(
        &cd,
        &tar,
        "an_artifact_with_an_oci_config_runs_with_plain_ctr_run",
    ) {
        return;
    }
    let out = cd.ctr(&["run", "--rm", "--runtime", RUNTIME, name, "oci-artifact1"]);
    assert_success(&out, "ctr run of the artifact");
    let text = stdout(&out);
    assert!(text.contains(r#"args: ["greeter"]"#), "{text}");
    assert!(text.contains("env: GREETING=hi"), "{text}");

    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        name,
        "oci-artifact2",
        "prog",
        "a",
    ]);
    assert_success(&out, "ctr run of the artifact with args");
    assert!(
        stdout(&out).contains(r#"args: ["prog", "a"]"#),
        "{}",
        stdout(&out)
    );
    cd.assert_nothing_left();
}

#[test]
fn an_artifact_whose_layer_is_not_wasm_is_refused_naming_the_image() {
    let cd = Containerd::start();
    let api = Api::connect(&cd.address);
    let name = "docker.io/wasmbox/not-wasm:test";
    // A native binary in a wasm layer, through the packer's native mode.
    let tar = cd.dir().join("not-wasm.tar");
    let out = Command::new(repo_root().join("target/release/wasmbox-image"))
        .args(["--wasm", "/bin/true", "--name", name, "--output"])
        .arg(&tar)
        .args(["--platform", "wasi/wasm", "--artifact", "wasm"])
        .output()
        .expect("run wasmbox-image");
    // The packer itself refuses it...
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/bin/true is not a WebAssembly binary"));
    // ...so build one by hand: an artifact with an ELF in its wasm layer.
    let out = Command::new(repo_root().join("target/release/wasmbox-image"))
        .args(["--wasm", "/bin/true", "--name", name, "--output"])
        .arg(&tar)
        .args(["--platform", "linux/amd64", "--artifact", "wasm"])
        .output()
        .expect("run wasmbox-image");
    assert_success(&out, "pack a native binary as a wasm layer");
    let name = api.import(&tar);
    let err = match api.run(
        RUNTIME,
        &default_spec(&cd),
        &name,
        "not-wasm",
        &["x"],
        cd.dir(),
    ) {
        Ok(run) => panic!("a native layer ran (exit {})", run.exit_status),
        Err(e) => e,
    };
    assert!(
        err.contains(&format!("entrypoint {name}"))
            && err.contains("is not a WebAssembly module: it is an ELF executable"),
        "{err}"
    );
    cd.assert_nothing_left();
}
