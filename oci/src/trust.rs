//! Who may have written a file the node runs: the compiled cache holds
//! native code, and the layer files of wasm artifacts are what a container
//! runs. Both are trusted only if no one but root (the user the shim and
//! the runner load them as) could have written them.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

/// Root: the user the shim writes the cache as and the runner loads it as.
const OWNER: u32 = 0;

/// Makes `dir` (0700, with its parents) if it is missing, then checks it
/// as [`check_dir`] does: the node cache, before the runner maps from it
/// or the shim stores a layer in it.
pub fn ensure_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))?;
    check_dir(dir)
}

/// A directory whose compiled code the runner will map: it and every
/// directory above it must be root's
/// and writable by no one else. A sticky directory above it, such as
/// /tmp, may be writable by all: no one can rename what is not theirs.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve it: {e}"))?;
    let me = OWNER;
    for (depth, ancestor) in dir.ancestors().enumerate() {
        let meta = std::fs::metadata(ancestor)
            .map_err(|e| format!("cannot stat {}: {e}", ancestor.display()))?;
        if meta.uid() != me {
            return Err(format!(
                "{} is owned by uid {}, not {me}",
                ancestor.display(),
                meta.uid()
            ));
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && (depth == 0 || !sticky) {
            return Err(format!(
                "{} is writable by group or others (mode {:o})",
                ancestor.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// Why [`check_file`] does not trust a file.
#[derive(Debug, thiserror::Error)]
pub enum FileDistrust {
    /// Nothing is there: for the cache, a plain miss.
    #[error("not there")]
    Missing,
    #[error("cannot stat it: {0}")]
    Unreadable(std::io::Error),
    #[error("not a regular file")]
    NotRegular,
    #[error("owned by uid {0}, not {OWNER}")]
    Owner(u32),
    #[error("writable by group or others (mode {0:o})")]
    Writable(u32),
}

/// An entry the runner will map: a regular file of root's, writable by no one else.
pub fn check_file(path: &Path) -> Result<(), FileDistrust> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FileDistrust::Missing,
        _ => FileDistrust::Unreadable(e),
    })?;
    if !meta.file_type().is_file() {
        return Err(FileDistrust::NotRegular);
    }
    if meta.uid() != OWNER {
        return Err(FileDistrust::Owner(meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(FileDistrust::Writable(meta.mode() & 0o7777));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_directories_and_files_nobody_else_can_write_are_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
        check_dir(&cache).unwrap();

        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let msg = check_dir(&cache).unwrap_err();
        assert!(msg.contains("writable by group or others"), "{msg}");
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();

        // A world-writable parent that is not sticky lets anyone swap the
        // cache directory for their own.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_dir(&cache).is_err());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        check_dir(&cache).unwrap();

        let entry = cache.join("entry.cwasm");
        std::fs::write(&entry, b"code").unwrap();
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o644)).unwrap();
        check_file(&entry).unwrap();
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(check_file(&entry)
            .unwrap_err()
            .to_string()
            .contains("writable"));
        std::os::unix::fs::chown(&entry, Some(1000), None).unwrap();
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_file(&entry)
            .unwrap_err()
            .to_string()
            .contains("owned by uid 1000"));
        let link = cache.join("link.cwasm");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        assert!(check_file(&link)
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
        assert!(matches!(
            check_file(&cache.join("absent.cwasm")),
            Err(FileDistrust::Missing)
        ));
    }
}
