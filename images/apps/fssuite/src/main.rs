//! `fssuite RW_DIR [RO_DIR]`: the WASI preview 1 filesystem checks that
//! matter to a container, each on one line as `PASS name` or
//! `FAIL name: what happened`, then `fssuite: N passed, M failed` on stderr;
//! the exit code is the number of failures.
//!
//! The checks follow the areas of the WASI testsuite's p1 filesystem
//! tests: files (create, append, truncate, seek, times), directories
//! (create, remove, list, rename), links (hard, symbolic, loops,
//! dangling), the sandbox's refusals (`..` out of a preopen, absolute and
//! escaping symlinks, trailing slashes on files), and a read-only preopen.
//! Each expects what WASI specifies, as `wasmtime run --dir` gives it;
//! wasmbox must give the same under its confinement.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// WASI errno values (wasi_snapshot_preview1), as `raw_os_error` gives them.
mod errno {
    pub const EEXIST: i32 = 20;
    pub const EISDIR: i32 = 31;
    pub const ELOOP: i32 = 32;
    pub const ENAMETOOLONG: i32 = 37;
    pub const ENOENT: i32 = 44;
    pub const ENOTDIR: i32 = 54;
    pub const ENOTEMPTY: i32 = 55;
    pub const EPERM: i32 = 63;
    pub const EROFS: i32 = 69;
    pub const ENOTCAPABLE: i32 = 76;
}

type Check = Result<(), String>;
/// One named check, run in a fresh directory of its own.
type NamedCheck = (&'static str, Box<dyn Fn(&Path) -> Check>);

/// symlink(2) through wasi-libc (`path_symlink`); std's is unstable on WASI.
fn symlink_path(target: impl AsRef<Path>, link: impl AsRef<Path>) -> std::io::Result<()> {
    let c = |p: &Path| {
        std::ffi::CString::new(p.to_string_lossy().into_owned())
            .map_err(|_| std::io::Error::from(ErrorKind::InvalidInput))
    };
    let (target, link) = (c(target.as_ref())?, c(link.as_ref())?);
    // SAFETY: two NUL-terminated strings that live across the call.
    if unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(rw) = args.next().map(PathBuf::from) else {
        eprintln!("usage: fssuite RW_DIR [RO_DIR]");
        std::process::exit(125);
    };
    let ro = args.next().map(PathBuf::from);
    let base = rw.join("fssuite");
    let _ = fs::remove_dir_all(&base);
    if let Err(e) = fs::create_dir(&base) {
        eprintln!("fssuite: cannot create {}: {e}", base.display());
        std::process::exit(125);
    }
    let mut checks: Vec<NamedCheck> = vec![
        ("file_create_write_read", Box::new(file_create_write_read)),
        ("file_append", Box::new(file_append)),
        ("file_create_new_exists", Box::new(file_create_new_exists)),
        ("file_truncate", Box::new(file_truncate)),
        ("file_seek_tell", Box::new(file_seek_tell)),
        ("file_set_times", Box::new(file_set_times)),
        ("dir_create_remove", Box::new(dir_create_remove)),
        ("dir_remove_nonempty", Box::new(dir_remove_nonempty)),
        ("dir_list", Box::new(dir_list)),
        ("dir_unlink_refused", Box::new(dir_unlink_refused)),
        ("dir_open_as_file", Box::new(dir_open_as_file)),
        ("rename_file", Box::new(rename_file)),
        ("rename_over_existing", Box::new(rename_over_existing)),
        ("rename_dir", Box::new(rename_dir)),
        ("hard_link", Box::new(hard_link)),
        ("symlink_relative", Box::new(symlink_relative)),
        (
            "symlink_nofollow_metadata",
            Box::new(symlink_nofollow_metadata),
        ),
        ("symlink_dangling", Box::new(symlink_dangling)),
        ("symlink_loop", Box::new(symlink_loop)),
        ("symlink_escape_refused", Box::new(symlink_escape_refused)),
        (
            "symlink_absolute_refused",
            Box::new(symlink_absolute_refused),
        ),
        ("dotdot_escape_refused", Box::new(dotdot_escape_refused)),
        ("trailing_slash_on_file", Box::new(trailing_slash_on_file)),
        ("name_too_long", Box::new(name_too_long)),
    ];
    if let Some(ro) = ro {
        checks.push((
            "readonly_preopen",
            Box::new(move |_: &Path| readonly_preopen(&ro)),
        ));
    }
    let (mut passed, mut failed) = (0, 0);
    for (index, (name, check)) in checks.iter().enumerate() {
        let dir = base.join(format!("{index:02}"));
        let outcome = fs::create_dir(&dir)
            .map_err(|e| format!("mkdir {}: {e}", dir.display()))
            .and_then(|()| check(&dir));
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("PASS {name}");
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {name}: {why}");
            }
        }
    }
    let _ = fs::remove_dir_all(&base);
    eprintln!("fssuite: {passed} passed, {failed} failed");
    std::process::exit(failed);
}

fn io<T>(what: &str, result: std::io::Result<T>) -> Result<T, String> {
    result.map_err(|e| format!("{what}: {e}"))
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Check {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

/// The operation must fail with one of `codes`.
fn expect_errno<T: std::fmt::Debug>(
    what: &str,
    result: std::io::Result<T>,
    codes: &[i32],
) -> Check {
    match result {
        Ok(value) => Err(format!(
            "{what}: succeeded ({value:?}); want errno {codes:?}"
        )),
        Err(e) if e.raw_os_error().is_some_and(|c| codes.contains(&c)) => Ok(()),
        Err(e) => Err(format!("{what}: {e}; want errno {codes:?}")),
    }
}

fn read(path: &Path) -> std::io::Result<String> {
    fs::read_to_string(path)
}

fn file_create_write_read(dir: &Path) -> Check {
    let path = dir.join("f");
    io("write", fs::write(&path, "hello"))?;
    expect_eq("contents", io("read", read(&path))?, "hello".into())?;
    expect_eq("size", io("stat", fs::metadata(&path))?.len(), 5)
}

fn file_append(dir: &Path) -> Check {
    let path = dir.join("f");
    io("write", fs::write(&path, "hello"))?;
    let mut file = io("open append", OpenOptions::new().append(true).open(&path))?;
    io("append", file.write_all(b" world"))?;
    expect_eq("contents", io("read", read(&path))?, "hello world".into())
}

fn file_create_new_exists(dir: &Path) -> Check {
    let path = dir.join("f");
    io("write", fs::write(&path, "x"))?;
    let again = OpenOptions::new().write(true).create_new(true).open(&path);
    expect_errno("create_new on an existing file", again, &[errno::EEXIST])
}

fn file_truncate(dir: &Path) -> Check {
    let path = dir.join("f");
    io("write", fs::write(&path, "hello"))?;
    let file = io("open", OpenOptions::new().write(true).open(&path))?;
    io("set_len 2", file.set_len(2))?;
    expect_eq("contents", io("read", read(&path))?, "he".into())?;
    io("set_len 4", file.set_len(4))?;
    expect_eq(
        "size after growing",
        io("stat", fs::metadata(&path))?.len(),
        4,
    )
}

fn file_seek_tell(dir: &Path) -> Check {
    let path = dir.join("f");
    io("write", fs::write(&path, "0123456789"))?;
    let mut file = io("open", File::open(&path))?;
    io("seek", file.seek(SeekFrom::Start(3)))?;
    let mut two = [0u8; 2];
    io("read", file.read_exact(&mut two))?;
    expect_eq("bytes at 3", &two, b"34")?;
    expect_eq("position", io("tell", file.stream_position())?, 5)?;
    expect_eq(
        "seek from end",
        io("seek", file.seek(SeekFrom::End(-1)))?,
        9,
    )
}

fn file_set_times(dir: &Path) -> Check {
    let path = dir.join("f");
    io("write", fs::write(&path, "x"))?;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let file = io("open", OpenOptions::new().write(true).open(&path))?;
    io("set_modified", file.set_modified(when))?;
    expect_eq(
        "mtime",
        io("stat", fs::metadata(&path))?.modified().ok(),
        Some(when),
    )
}

fn dir_create_remove(dir: &Path) -> Check {
    let sub = dir.join("d");
    io("mkdir", fs::create_dir(&sub))?;
    expect_eq("is_dir", io("stat", fs::metadata(&sub))?.is_dir(), true)?;
    expect_errno("mkdir again", fs::create_dir(&sub), &[errno::EEXIST])?;
    io("rmdir", fs::remove_dir(&sub))?;
    expect_errno("stat after rmdir", fs::metadata(&sub), &[errno::ENOENT])
}

fn dir_remove_nonempty(dir: &Path) -> Check {
    let sub = dir.join("d");
    io("mkdir", fs::create_dir(&sub))?;
    io("write", fs::write(sub.join("f"), "x"))?;
    expect_errno(
        "rmdir of a non-empty dir",
        fs::remove_dir(&sub),
        &[errno::ENOTEMPTY],
    )
}

fn dir_list(dir: &Path) -> Check {
    for name in ["c", "a", "b"] {
        io("write", fs::write(dir.join(name), name))?;
    }
    io("mkdir", fs::create_dir(dir.join("sub")))?;
    let mut names: Vec<String> = io("read_dir", fs::read_dir(dir))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read_dir entry: {e}"))?;
    names.sort();
    expect_eq(
        "names",
        names,
        vec!["a".into(), "b".into(), "c".into(), "sub".into()],
    )
}

fn dir_unlink_refused(dir: &Path) -> Check {
    let sub = dir.join("d");
    io("mkdir", fs::create_dir(&sub))?;
    expect_errno(
        "unlink a directory",
        fs::remove_file(&sub),
        &[errno::EISDIR, errno::EPERM],
    )
}

fn dir_open_as_file(dir: &Path) -> Check {
    let sub = dir.join("d");
    io("mkdir", fs::create_dir(&sub))?;
    expect_errno(
        "open a directory for writing",
        File::create(&sub),
        &[errno::EISDIR],
    )
}

fn rename_file(dir: &Path) -> Check {
    let (a, b) = (dir.join("a"), dir.join("b"));
    io("write", fs::write(&a, "moved"))?;
    io("rename", fs::rename(&a, &b))?;
    expect_errno("the old name", fs::metadata(&a), &[errno::ENOENT])?;
    expect_eq("contents", io("read", read(&b))?, "moved".into())
}

fn rename_over_existing(dir: &Path) -> Check {
    let (a, b) = (dir.join("a"), dir.join("b"));
    io("write a", fs::write(&a, "new"))?;
    io("write b", fs::write(&b, "old"))?;
    io("rename", fs::rename(&a, &b))?;
    expect_eq("contents", io("read", read(&b))?, "new".into())
}

fn rename_dir(dir: &Path) -> Check {
    let (a, b) = (dir.join("a"), dir.join("b"));
    io("mkdir", fs::create_dir(&a))?;
    io("write", fs::write(a.join("f"), "inside"))?;
    io("rename", fs::rename(&a, &b))?;
    expect_eq("contents", io("read", read(&b.join("f")))?, "inside".into())?;
    let c = dir.join("c");
    io("mkdir c", fs::create_dir(&c))?;
    io("write c/f", fs::write(c.join("f"), "x"))?;
    expect_errno(
        "rename over a non-empty dir",
        fs::rename(&b, &c),
        &[errno::ENOTEMPTY],
    )
}

fn hard_link(dir: &Path) -> Check {
    let (a, b) = (dir.join("a"), dir.join("b"));
    io("write", fs::write(&a, "shared"))?;
    io("link", fs::hard_link(&a, &b))?;
    io("remove the first name", fs::remove_file(&a))?;
    expect_eq("contents", io("read", read(&b))?, "shared".into())
}

fn symlink_relative(dir: &Path) -> Check {
    io("write", fs::write(dir.join("target"), "through"))?;
    let link = dir.join("link");
    io("symlink", symlink_path("target", &link))?;
    expect_eq(
        "readlink",
        io("readlink", fs::read_link(&link))?,
        PathBuf::from("target"),
    )?;
    expect_eq("contents", io("read", read(&link))?, "through".into())
}

fn symlink_nofollow_metadata(dir: &Path) -> Check {
    io("write", fs::write(dir.join("target"), "12345"))?;
    let link = dir.join("link");
    io("symlink", symlink_path("target", &link))?;
    expect_eq(
        "lstat is a symlink",
        io("lstat", fs::symlink_metadata(&link))?.is_symlink(),
        true,
    )?;
    expect_eq("stat follows", io("stat", fs::metadata(&link))?.len(), 5)
}

fn symlink_dangling(dir: &Path) -> Check {
    let link = dir.join("link");
    io("symlink", symlink_path("nowhere", &link))?;
    expect_errno("read", read(&link), &[errno::ENOENT])
}

fn symlink_loop(dir: &Path) -> Check {
    io("symlink a", symlink_path("b", dir.join("a")))?;
    io("symlink b", symlink_path("a", dir.join("b")))?;
    expect_errno("read a", read(&dir.join("a")), &[errno::ELOOP])
}

fn symlink_escape_refused(dir: &Path) -> Check {
    let depth = dir.components().count() + 2;
    let target = format!("{}etc/passwd", "../".repeat(depth));
    let link = dir.join("escape");
    io("symlink", symlink_path(&target, &link))?;
    expect_errno(
        "read through a symlink out of the preopen",
        read(&link),
        &[errno::ENOTCAPABLE, errno::EPERM],
    )
}

fn symlink_absolute_refused(dir: &Path) -> Check {
    // WASI refuses to make an absolute symlink; were one there, it would
    // refuse to follow it.
    let link = dir.join("absolute");
    let refused = [errno::ENOTCAPABLE, errno::EPERM];
    match symlink_path("/etc/passwd", &link) {
        Err(e) if e.raw_os_error().is_some_and(|c| refused.contains(&c)) => Ok(()),
        Err(e) => Err(format!(
            "symlink to /etc/passwd: {e}; want errno {refused:?}"
        )),
        Ok(()) => expect_errno("read through an absolute symlink", read(&link), &refused),
    }
}

fn dotdot_escape_refused(dir: &Path) -> Check {
    let depth = dir.components().count() + 2;
    let path = dir.join(format!("{}etc/passwd", "../".repeat(depth)));
    match read(&path) {
        Ok(text) if text.contains("root:") => {
            Err(format!("{} gave the host's passwd", path.display()))
        }
        // Resolved inside the sandbox (wasi-libc may pick another
        // preopen): whatever it is, it is not the host's file.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(errno::ENOTCAPABLE | errno::EPERM)) => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn trailing_slash_on_file(dir: &Path) -> Check {
    let path = dir.join("f");
    io("write", fs::write(&path, "x"))?;
    let slashed = PathBuf::from(format!("{}/", path.display()));
    expect_errno("open file/", File::open(&slashed), &[errno::ENOTDIR])?;
    expect_errno(
        "create file/",
        File::create(&slashed),
        &[errno::ENOTDIR, errno::EISDIR],
    )
}

fn name_too_long(dir: &Path) -> Check {
    let path = dir.join("n".repeat(300));
    expect_errno(
        "a 300-byte name",
        fs::write(&path, "x"),
        &[errno::ENAMETOOLONG],
    )
}

fn readonly_preopen(ro: &Path) -> Check {
    let names: Vec<String> = io("read_dir", fs::read_dir(ro))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let first = names.first().ok_or("the read-only dir is empty")?;
    io("read a file", fs::read(ro.join(first)))?;
    let refused = [errno::EROFS, errno::EPERM, errno::ENOTCAPABLE];
    expect_errno("write a new file", fs::write(ro.join("new"), "x"), &refused)?;
    expect_errno(
        "open a file for writing",
        OpenOptions::new().write(true).open(ro.join(first)),
        &refused,
    )?;
    expect_errno("mkdir", fs::create_dir(ro.join("newdir")), &refused)?;
    expect_errno("unlink", fs::remove_file(ro.join(first)), &refused)
}
