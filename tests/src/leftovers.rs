//! What a container may leave on the node, found from outside: cgroup
//! directories of the containers a containerd ran, on every hierarchy
//! (cgroup v1's controllers, or v2's one tree).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The container ids the shims of a containerd named in its `log`: every
/// create the wasmbox shim handled logs `container ID: …`.
pub fn container_ids(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("msg=\"container ")? + "msg=\"container ".len()..];
            let id = rest.split(':').next()?;
            (!id.is_empty() && !id.contains(' ')).then(|| id.to_string())
        })
        .collect()
}

/// The cgroup directories, at most three levels down in any hierarchy,
/// whose name is one of `ids` (ctr puts a container in `/default/ID`, CRI
/// in `/k8s.io/ID` or a pod's slice).
pub fn cgroups_of(ids: &BTreeSet<String>) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        hierarchies.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    let mut found = Vec::new();
    for hierarchy in hierarchies {
        walk(&hierarchy, 3, ids, &mut found);
    }
    found.sort();
    found.dedup();
    found
}

fn walk(dir: &Path, depth: usize, ids: &BTreeSet<String>, found: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if entry.file_name().to_str().is_some_and(|n| ids.contains(n)) {
            found.push(path.clone());
        }
        walk(&path, depth - 1, ids, found);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_read_from_the_shims_log_lines() {
        let log = "time=x level=info msg=\"container n1: runc init 5 ready\"\n\
                   time=y level=debug msg=\"container web: create path: set-up\"\n\
                   time=z level=info msg=\"shim disconnected\" id=other\n";
        let ids = super::container_ids(log);
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["n1", "web"]);
    }
}
