//! Mounts become preopens: read-only where the mount says `ro`, and nothing
//! outside the rootfs and the mounts can be reached.

use wasmbox_tests::*;

fn probe(
    cd: &Containerd,
    rootfs: &std::path::Path,
    id: &str,
    mounts: &[String],
    ops: &[String],
) -> String {
    let root = rootfs.to_str().unwrap().to_string();
    let mut args: Vec<String> = ["run", "--rm", "--runtime", RUNTIME]
        .map(String::from)
        .to_vec();
    for m in mounts {
        args.push("--mount".into());
        args.push(m.clone());
    }
    args.extend([
        "--rootfs".to_string(),
        root,
        id.to_string(),
        "/fsprobe.wasm".to_string(),
    ]);
    args.extend(ops.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cd.ctr(&args);
    assert_success(&out, "fsprobe run");
    stdout(&out)
}

fn line<'a>(output: &'a str, prefix: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{output}"))
}

#[test]
fn a_read_only_bind_mount_can_be_read_but_not_written() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/fsprobe.wasm", &read_sample("fsprobe"))]);
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("hello.txt"), "data file").unwrap();
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:ro",
        data.path().display()
    );
    let out = probe(
        &cd,
        rootfs.path(),
        "ro1",
        &[mount],
        &[
            "read:/data/hello.txt".into(),
            "write:/data/hello.txt:changed".into(),
            "write:/data/new.txt:x".into(),
            "ls:/data".into(),
        ],
    );
    assert_eq!(
        line(&out, "read /data/hello.txt"),
        "read /data/hello.txt: ok data file"
    );
    assert!(
        line(&out, "write /data/hello.txt").contains(": error"),
        "{out}"
    );
    assert!(
        line(&out, "write /data/new.txt").contains(": error"),
        "{out}"
    );
    assert_eq!(line(&out, "ls /data"), "ls /data: ok hello.txt");
    assert_eq!(
        std::fs::read_to_string(data.path().join("hello.txt")).unwrap(),
        "data file"
    );
    assert!(!data.path().join("new.txt").exists());
    cd.assert_nothing_left();
}

#[test]
fn a_read_write_bind_mount_takes_writes() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/fsprobe.wasm", &read_sample("fsprobe"))]);
    let data = tempfile::tempdir().unwrap();
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:rw",
        data.path().display()
    );
    let out = probe(
        &cd,
        rootfs.path(),
        "rw1",
        &[mount],
        &["write:/data/out.txt:written by wasm".into()],
    );
    assert_eq!(
        line(&out, "write /data/out.txt"),
        "write /data/out.txt: ok "
    );
    assert_eq!(
        std::fs::read_to_string(data.path().join("out.txt")).unwrap(),
        "written by wasm"
    );
    cd.assert_nothing_left();
}

/// Each way out of the rootfs and the mounts that the guest may try.
#[test]
fn nothing_outside_the_rootfs_and_mounts_can_be_reached() {
    let cd = Containerd::start();
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = format!("TOPSECRET-{}", std::process::id());
    let secret_file = secret_dir.path().join("secret.txt");
    std::fs::write(&secret_file, &secret).unwrap();
    let s = secret_dir.path().display().to_string();

    let rootfs = rootfs_with(&[("/fsprobe.wasm", &read_sample("fsprobe"))]);
    let r = rootfs.path();
    let ups = "../".repeat(20);
    std::os::unix::fs::symlink(&secret_file, r.join("abs-link")).unwrap();
    std::os::unix::fs::symlink(format!("{ups}{s}/secret.txt"), r.join("rel-link")).unwrap();
    std::os::unix::fs::symlink(&s, r.join("abs-dir-link")).unwrap();
    std::os::unix::fs::symlink(format!("{ups}{s}"), r.join("rel-dir-link")).unwrap();
    let data = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&secret_file, data.path().join("abs-link")).unwrap();
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:rw",
        data.path().display()
    );

    let attempts: Vec<String> = vec![
        format!("read:/..{s}/secret.txt"),
        format!("read:/{ups}{s}/secret.txt"),
        format!("read:/data/{ups}{s}/secret.txt"),
        "read:/abs-link".into(),
        "read:/rel-link".into(),
        "read:/abs-dir-link/secret.txt".into(),
        "read:/rel-dir-link/secret.txt".into(),
        "read:/data/abs-link".into(),
        format!("read:/proc/self/root{s}/secret.txt"),
        "read:/proc/self/cwd/etc/hostname".into(),
        format!("link:/{ups}{s}/secret.txt:/data/hardlink"),
        "link:/abs-link:/data/hardlink2".into(),
        format!("ls:/{ups}"),
    ];
    let out = probe(&cd, r, "escape1", &[mount], &attempts);
    assert!(!out.contains(&secret), "the secret leaked:\n{out}");
    for attempt in &attempts {
        let shown = attempt.replacen(':', " ", 1).replacen(':', " ", 1);
        let l = line(&out, &shown);
        if attempt.starts_with("ls:") {
            // `..` at the top is the top: the listing is the rootfs itself.
            assert!(l.contains("fsprobe.wasm") || l.contains(": error"), "{l}");
        } else {
            assert!(l.contains(": error"), "{attempt} was not refused: {l}");
        }
    }
    assert!(!data.path().join("hardlink").exists());
    // Linking the symlink itself may work (the guest holds both dirs), but
    // no hard link to the secret file was made anywhere.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&secret_file).unwrap().nlink(), 1);
    cd.assert_nothing_left();
}

#[test]
fn kernel_mounts_are_skipped_and_bad_binds_are_refused() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/fsprobe.wasm", &read_sample("fsprobe"))]);
    // ctr's default spec carries proc, sysfs, devpts, mqueue and tmpfs
    // mounts: they must not stop the container, and must not appear.
    let out = probe(
        &cd,
        rootfs.path(),
        "kern1",
        &[],
        &["ls:/proc".into(), "ls:/sys".into()],
    );
    assert!(line(&out, "ls /proc").contains(": error"), "{out}");
    assert!(line(&out, "ls /sys").contains(": error"), "{out}");

    let root = rootfs.path().to_str().unwrap();
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--mount",
        "type=bind,src=/nonexistent-wasmbox-dir,dst=/data,options=rbind:ro",
        "--rootfs",
        root,
        "badmount1",
        "/fsprobe.wasm",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent-wasmbox-dir") || err.contains("/data"),
        "{err}"
    );
    cd.assert_nothing_left();
}

/// The WASI p1 filesystem checks of `fssuite` (files, directories, links,
/// the sandbox's refusals, a read-only preopen), under the runner's full
/// confinement: once with ctr's default spec and once with the spec's
/// seccomp profile stacked on wasmbox's own. Every check passes, as it does
/// under `wasmtime run --dir`.
#[test]
fn the_wasi_filesystem_suite_passes_under_confinement() {
    let cd = Containerd::start();
    let rootfs = rootfs_with(&[("/fssuite.wasm", &read_sample("fssuite"))]);
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("given.txt"), "read-only data").unwrap();
    let rw_mount = format!(
        "type=bind,src={},dst=/data,options=rbind:rw",
        rw.path().display()
    );
    let ro_mount = format!(
        "type=bind,src={},dst=/ro,options=rbind:ro",
        ro.path().display()
    );
    for (name, extra) in [("default", &[][..]), ("seccomp", &["--seccomp"][..])] {
        let mut flags = vec!["--mount", &rw_mount, "--mount", &ro_mount];
        flags.extend_from_slice(extra);
        let id = format!("fssuite-{name}");
        let out = cd.run_rootfs_with(
            &flags,
            rootfs.path(),
            &id,
            &["/fssuite.wasm", "/data", "/ro"],
        );
        let (stdout, stderr) = (stdout(&out), stderr(&out));
        println!("{name}:\n{stdout}{stderr}");
        let failed: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("PASS ")).collect();
        assert!(failed.is_empty(), "{name}: {failed:#?}\n{stderr}");
        assert_eq!(stdout.lines().count(), 25, "{name}: {stdout}");
        assert!(
            stderr.contains("fssuite: 25 passed, 0 failed"),
            "{name}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        assert!(
            cd.create_line(&id).contains("landlock"),
            "{name}: not confined: {}",
            cd.create_line(&id)
        );
        // The suite cleans up after itself, and touched nothing read-only.
        assert_eq!(std::fs::read_dir(rw.path()).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(ro.path()).unwrap().count(), 1);
    }
    cd.assert_nothing_left();
}
