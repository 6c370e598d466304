//! k8s/: the manifests parse and fit together (RuntimeClass handler, pod
//! templates on it, Service selecting the Deployment, our images), the
//! containerd snippets are valid TOML with the runtime at the right path,
//! and the node installer adds its block once, changes nothing when run
//! again, keeps every other setting, and uninstalls back to the original
//! byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use wasmbox_tests::repo_root;

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read manifest");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let value: serde_yaml_ng::Value = serde_yaml_ng::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::to_value(value).expect("yaml as json")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn manifests() -> Vec<(PathBuf, Value)> {
    let k8s = repo_root().join("k8s");
    let mut files: Vec<PathBuf> = ["runtimeclass.yaml", "installer/daemonset.yaml"]
        .iter()
        .map(|f| k8s.join(f))
        .collect();
    for entry in std::fs::read_dir(k8s.join("examples")).expect("k8s/examples") {
        files.push(entry.expect("entry").path());
    }
    files
        .into_iter()
        .flat_map(|f| yaml_documents(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

#[test]
fn the_manifests_parse_and_fit_together() {
    let docs = manifests();
    for (file, doc) in &docs {
        for field in ["apiVersion", "kind"] {
            assert!(doc[field].is_string(), "{}: no {field}", file.display());
        }
        assert!(
            doc["metadata"]["name"].is_string(),
            "{}: no name",
            file.display()
        );
    }
    fn of_kind<'a>(docs: &'a [(PathBuf, Value)], kind: &'a str) -> impl Iterator<Item = &'a Value> {
        docs.iter()
            .filter(move |(_, d)| d["kind"] == kind)
            .map(|(_, d)| d)
    }
    let kind = |k: &'static str| of_kind(&docs, k);

    let class = kind("RuntimeClass").next().expect("a RuntimeClass");
    assert_eq!(class["apiVersion"], "node.k8s.io/v1");
    assert_eq!(class["metadata"]["name"], "wasmbox");
    assert_eq!(class["handler"], "wasmbox");

    // Every workload runs on the RuntimeClass, with images we build.
    let mut workloads = 0;
    for doc in kind("Deployment").chain(kind("Job")) {
        let pod = &doc["spec"]["template"]["spec"];
        assert_eq!(
            pod["runtimeClassName"], "wasmbox",
            "{}",
            doc["metadata"]["name"]
        );
        for container in pod["containers"].as_array().expect("containers") {
            let image = container["image"].as_str().expect("image");
            let app = image
                .strip_prefix("docker.io/wasmbox/")
                .and_then(|i| i.strip_suffix(":latest"))
                .unwrap_or_else(|| panic!("{image} is not one of our images"));
            assert!(
                repo_root().join("images/apps").join(app).is_dir(),
                "{image}: no sample app {app}"
            );
            assert_eq!(container["command"][0], "/app.wasm");
        }
        workloads += 1;
    }
    assert!(workloads >= 2, "a Deployment and a Job");

    // The Service selects the Deployment's pods and targets its port.
    let deployment = kind("Deployment").next().expect("a Deployment");
    let service = kind("Service").next().expect("a Service");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&labels[key], value, "selector {key}");
    }
    let target = &service["spec"]["ports"][0]["targetPort"];
    let ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .expect("ports");
    assert!(ports
        .iter()
        .any(|p| &p["name"] == target || &p["containerPort"] == target));
    assert_eq!(ports[0]["containerPort"], 8080);

    let installer = kind("DaemonSet").next().expect("the installer DaemonSet");
    let init = &installer["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["args"][0], "install");
    assert_eq!(installer["spec"]["template"]["spec"]["hostPID"], true);
}

#[test]
fn the_containerd_snippets_name_the_runtime() {
    for (file, version, table) in [
        ("config-v2.toml", 2, "io.containerd.grpc.v1.cri"),
        ("config-v3.toml", 3, "io.containerd.cri.v1.runtime"),
    ] {
        let path = repo_root().join("k8s/containerd").join(file);
        let config: toml::Table = std::fs::read_to_string(&path)
            .expect("read snippet")
            .parse()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(config["version"].as_integer(), Some(version));
        let runtime = &config["plugins"][table]["containerd"]["runtimes"]["wasmbox"];
        assert_eq!(
            runtime["pod_annotations"].as_array().map(|a| a.len()),
            Some(1),
            "{file}: wasmbox.io annotations pass through"
        );
        assert_eq!(
            runtime["runtime_type"].as_str(),
            Some("io.containerd.wasmbox.v1"),
            "{file}"
        );
    }
}

/// Runs the installer against a fake node root in `host`.
fn installer(host: &Path, action: &str) -> (bool, String) {
    let out = Command::new(repo_root().join("k8s/installer/wasmbox-node.sh"))
        .arg(action)
        .env("HOST_ROOT", host)
        .env("SOURCE_DIR", host.join("source"))
        .env(
            "RESTART_CMD",
            format!("echo restart >> {}", host.join("restarts").display()),
        )
        .output()
        .expect("run wasmbox-node.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn restarts(host: &Path) -> usize {
    std::fs::read_to_string(host.join("restarts"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn the_installer_is_idempotent_keeps_other_settings_and_uninstalls_cleanly() {
    let host = tempfile::tempdir().expect("temp dir");
    let host = host.path();
    std::fs::create_dir_all(host.join("source")).unwrap();
    for b in ["containerd-shim-wasmbox-v1", "wasmbox-runner"] {
        std::fs::write(host.join("source").join(b), format!("#!/bin/sh\n# {b}\n")).unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(host.join("source").join(b))
            .status()
            .unwrap();
    }
    let config = host.join("etc/containerd/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let original = "version = 2\nroot = \"/var/lib/containerd\"\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.10\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n";
    std::fs::write(&config, original).unwrap();

    let (ok, out) = installer(host, "install");
    assert!(ok, "{out}");
    let installed = std::fs::read_to_string(&config).unwrap();
    assert!(
        installed.starts_with(original),
        "the old settings were changed:\n{installed}"
    );
    let parsed: toml::Table = installed.parse().expect("still valid TOML");
    let cri = &parsed["plugins"]["io.containerd.grpc.v1.cri"];
    assert_eq!(
        cri["sandbox_image"].as_str(),
        Some("registry.k8s.io/pause:3.10")
    );
    assert_eq!(
        cri["containerd"]["runtimes"]["runc"]["runtime_type"].as_str(),
        Some("io.containerd.runc.v2")
    );
    assert_eq!(
        cri["containerd"]["runtimes"]["wasmbox"]["runtime_type"].as_str(),
        Some("io.containerd.wasmbox.v1")
    );
    assert!(host
        .join("usr/local/bin/containerd-shim-wasmbox-v1")
        .is_file());
    assert!(host.join("usr/local/bin/wasmbox-runner").is_file());
    assert_eq!(restarts(host), 1);

    // Twice: nothing changes, no restart.
    let (ok, out) = installer(host, "install");
    assert!(ok, "{out}");
    assert!(out.contains("nothing to change"), "{out}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), installed);
    assert_eq!(restarts(host), 1);

    let (ok, out) = installer(host, "uninstall");
    assert!(ok, "{out}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    assert!(!host
        .join("usr/local/bin/containerd-shim-wasmbox-v1")
        .exists());
    assert!(!host.join("usr/local/bin/wasmbox-runner").exists());
    assert_eq!(restarts(host), 2);

    // A version 3 config gets the version 3 table.
    std::fs::write(&config, "version = 3\n").unwrap();
    let (ok, out) = installer(host, "install");
    assert!(ok, "{out}");
    let parsed: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    assert_eq!(
        parsed["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["wasmbox"]
            ["runtime_type"]
            .as_str(),
        Some("io.containerd.wasmbox.v1")
    );

    // No config at all: one is created, with the block alone.
    std::fs::remove_file(&config).unwrap();
    let (ok, out) = installer(host, "install");
    assert!(ok, "{out}");
    let parsed: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    assert_eq!(parsed["version"].as_integer(), Some(2));
}
