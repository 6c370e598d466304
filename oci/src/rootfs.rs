//! Resolving a container path inside its rootfs, as if the rootfs were `/`.
//!
//! Images often make `/app.wasm` a symlink (absolute or relative). Following
//! it on the host would leave the rootfs, so every component is resolved
//! here by hand: an absolute link target restarts at the rootfs, `..` never
//! climbs above it, and link loops are cut off like the kernel does.

use std::path::{Component, Path, PathBuf};

/// As many symlinks as Linux follows in one lookup.
const MAX_SYMLINKS: usize = 40;

/// Why a path could not be resolved.
#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// A component does not exist. Carries the host path that was missing.
    NotFound(PathBuf),
    /// Too many levels of symbolic links.
    TooManyLinks,
    /// Another I/O error, as text.
    Io(String),
}

/// Resolves the container path `guest` inside `rootfs` and returns the host
/// path it names, which is always inside `rootfs`.
pub fn resolve_in_rootfs(rootfs: &Path, guest: &str) -> Result<PathBuf, ResolveError> {
    // Components still to walk, in reverse order so that pop() gives the next.
    let mut pending: Vec<String> = Vec::new();
    push_components(&mut pending, Path::new(guest));
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;

    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = join(rootfs, &resolved).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(ResolveError::TooManyLinks);
                }
                let target =
                    std::fs::read_link(&candidate).map_err(|e| ResolveError::Io(e.to_string()))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                push_components(&mut pending, &target);
            }
            Ok(_) => resolved.push(part),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ResolveError::NotFound(candidate));
            }
            Err(e) => return Err(ResolveError::Io(e.to_string())),
        }
    }
    Ok(join(rootfs, &resolved))
}

fn push_components(pending: &mut Vec<String>, path: &Path) {
    let parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(parts.into_iter().rev());
}

fn join(rootfs: &Path, parts: &[String]) -> PathBuf {
    let mut path = rootfs.to_path_buf();
    for part in parts {
        path.push(part);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_links_without_leaving_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/app.wasm"), b"x").unwrap();
        symlink("/usr/lib/app.wasm", root.join("abs.wasm")).unwrap();
        symlink("usr/lib/app.wasm", root.join("rel.wasm")).unwrap();
        symlink(
            "../../../../../../usr/lib/app.wasm",
            root.join("usr/up.wasm"),
        )
        .unwrap();
        let want = root.join("usr/lib/app.wasm");
        assert_eq!(resolve_in_rootfs(root, "/abs.wasm").unwrap(), want);
        assert_eq!(resolve_in_rootfs(root, "/rel.wasm").unwrap(), want);
        assert_eq!(resolve_in_rootfs(root, "/usr/up.wasm").unwrap(), want);
        assert_eq!(
            resolve_in_rootfs(root, "/../../usr/lib/app.wasm").unwrap(),
            want
        );
    }

    #[test]
    fn missing_files_and_loops_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        symlink("/loop", root.join("loop")).unwrap();
        assert_eq!(
            resolve_in_rootfs(root, "/nope.wasm"),
            Err(ResolveError::NotFound(root.join("nope.wasm")))
        );
        assert_eq!(
            resolve_in_rootfs(root, "/loop"),
            Err(ResolveError::TooManyLinks)
        );
    }
}
