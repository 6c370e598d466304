//! A cache file sealed by its checksum: the file, and `<file>.sha256` with
//! the sha256 of its bytes beside it, each written whole or not at all, the
//! checksum last (so a file without its checksum is one being written).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Writes `bytes` to `path`, then its checksum beside it.
pub(super) fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically(path, bytes)?;
    write_atomically(&checksum_path(path), hex(&Sha256::digest(bytes)).as_bytes())
}

/// Removes a sealed file and its checksum (by unlinking: a process that
/// has the file mapped keeps its pages).
pub(super) fn remove(path: &Path) {
    let _ = std::fs::remove_file(checksum_path(path));
    let _ = std::fs::remove_file(path);
}

/// `<file>.sha256`, beside the file it checks.
pub(super) fn checksum_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` through a temporary file in the same
/// directory (0644, synced, renamed into place): a reader sees all of it or
/// none.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        // Never group- or world-writable, whatever the umask.
        let mut file = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The sha256 of the file at `path`, in hex.
pub(super) fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
