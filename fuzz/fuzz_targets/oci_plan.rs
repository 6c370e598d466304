//! The OCI runtime spec (a bundle's `config.json`, as containerd or a
//! hostile client writes it) mapped onto a RunPlan, a SandboxPlan and an
//! artifact's plan: any bytes give a plan or a typed error, never a panic.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasmbox_oci::{plan_for_layer, plan_from_spec, LayerModule, SandboxPlan};

/// A bundle with a rootfs holding a module, a component, a script and a
/// symlink loop, made once per process.
fn bundle() -> &'static PathBuf {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wasmbox-fuzz-bundle-{}", std::process::id()));
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("data")).expect("rootfs");
        std::fs::write(rootfs.join("app.wasm"), b"\0asm\x01\0\0\0").expect("module");
        std::fs::write(rootfs.join("c.wasm"), b"\0asm\x0d\0\x01\0").expect("component");
        std::fs::write(rootfs.join("run.sh"), b"#!/bin/sh\n").expect("script");
        let _ = std::os::unix::fs::symlink("loop", rootfs.join("loop"));
        std::fs::write(dir.join("layer.wasm"), b"\0asm\x01\0\0\0").expect("layer");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<oci_spec::runtime::Spec>(data) else {
        return;
    };
    let bundle = bundle();
    let _ = plan_from_spec(&spec, bundle);
    let _ = SandboxPlan::from_spec(&spec);
    let _ = plan_for_layer(
        &spec,
        bundle,
        LayerModule {
            host_path: &bundle.join("layer.wasm"),
            image: "docker.io/fuzz/app:latest",
        },
    );
});
