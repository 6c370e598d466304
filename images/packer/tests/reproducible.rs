//! The packer as a user runs it: `created` is the build time, or
//! `SOURCE_DATE_EPOCH` when set, so that two builds with it are
//! byte-identical; annotations and labels land where tools look.

use std::path::Path;
use std::process::Command;

const PACKER: &str = env!("CARGO_BIN_EXE_wasmbox-image");

fn pack(dir: &Path, output: &str, epoch: Option<&str>, extra: &[&str]) -> std::process::Output {
    let wasm = dir.join("app.wasm");
    std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
    let mut command = Command::new(PACKER);
    command
        .arg("--wasm")
        .arg(&wasm)
        .args(["--name", "docker.io/example/app:1", "--output"])
        .arg(dir.join(output))
        .args(extra)
        .env_remove("SOURCE_DATE_EPOCH");
    if let Some(epoch) = epoch {
        command.env("SOURCE_DATE_EPOCH", epoch);
    }
    command.output().unwrap()
}

/// The JSON blobs of a tarball (index, manifest, config), by media type or
/// file name.
fn json_files(tar: &Path) -> Vec<serde_json::Value> {
    let mut archive = tar::Archive::new(std::fs::File::open(tar).unwrap());
    let mut found = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            found.push(json);
        }
    }
    found
}

fn config(files: &[serde_json::Value]) -> &serde_json::Value {
    files
        .iter()
        .find(|j| j.get("rootfs").is_some())
        .expect("an image config")
}

#[test]
fn source_date_epoch_makes_two_builds_identical() {
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        "--annotation",
        "org.opencontainers.image.source=https://example.com/app",
        "--label",
        "team=wasm",
    ];
    for output in ["a.tar", "b.tar"] {
        let out = pack(dir.path(), output, Some("1700000000"), &extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let a = std::fs::read(dir.path().join("a.tar")).unwrap();
    let b = std::fs::read(dir.path().join("b.tar")).unwrap();
    assert!(a == b, "two builds with SOURCE_DATE_EPOCH differ");

    let files = json_files(&dir.path().join("a.tar"));
    let config = config(&files);
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["config"]["Labels"]["team"], "wasm");
    let manifest = files
        .iter()
        .find(|j| j.get("layers").is_some())
        .expect("a manifest");
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.source"],
        "https://example.com/app"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
}

#[test]
fn created_is_the_build_time_without_source_date_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let out = pack(dir.path(), "now.tar", None, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = json_files(&dir.path().join("now.tar"));
    let created = config(&files)["created"].as_str().unwrap().to_string();
    let year: i32 = created[..4].parse().unwrap();
    let now_year = 1970
        + (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 31_556_952) as i32;
    assert!((year - now_year).abs() <= 1, "created {created}");
}

#[test]
fn a_bad_source_date_epoch_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = pack(dir.path(), "bad.tar", Some("yesterday"), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"SOURCE_DATE_EPOCH="yesterday" is not a number of seconds since 1970"#),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "app.wasm")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
