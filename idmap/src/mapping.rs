//! Id mappings as the OCI spec and containerd write them.

use serde::{Deserialize, Serialize};

use crate::IdmapError;

/// `size` ids from `container_id` inside the namespace are `host_id` and
/// on outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// The uid and gid mappings of one user namespace or one mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdMappings {
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

impl IdMapping {
    /// The host id of `id`, if this mapping covers it.
    pub fn host_of(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container_id)?;
        (offset < self.size).then(|| self.host_id.wrapping_add(offset))
    }
}

impl std::fmt::Display for IdMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.container_id, self.host_id, self.size)
    }
}

impl IdMappings {
    /// The host uid of container uid `uid`.
    pub fn host_uid(&self, uid: u32) -> Option<u32> {
        self.uids.iter().find_map(|m| m.host_of(uid))
    }

    /// The host gid of container gid `gid`.
    pub fn host_gid(&self, gid: u32) -> Option<u32> {
        self.gids.iter().find_map(|m| m.host_of(gid))
    }

    /// Reads containerd's `uidmap=`/`gidmap=` mount option values:
    /// `container:host:size` triples, comma-separated.
    pub fn from_mount_options(uidmap: &str, gidmap: &str) -> Result<Self, IdmapError> {
        Ok(Self {
            uids: parse_list("uidmap", uidmap)?,
            gids: parse_list("gidmap", gidmap)?,
        })
    }

    /// The text of a `uid_map` or `gid_map` file: one line per mapping.
    pub fn map_file(mappings: &[IdMapping]) -> String {
        mappings
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
            .collect()
    }
}

/// Shows mappings as `[0:100000:65536, ...]`, for messages.
pub fn show(mappings: &[IdMapping]) -> String {
    let items: Vec<String> = mappings.iter().map(|m| m.to_string()).collect();
    format!("[{}]", items.join(", "))
}

fn parse_list(option: &str, text: &str) -> Result<Vec<IdMapping>, IdmapError> {
    let bad = |reason: String| IdmapError::Parse {
        field: format!("mount option {option}={text}"),
        reason,
    };
    text.split(',')
        .map(|triple| {
            let numbers: Vec<u32> = triple
                .split(':')
                .map(|n| n.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(format!("{triple:?}: {e}")))?;
            match numbers[..] {
                [container_id, host_id, size] => Ok(IdMapping {
                    container_id,
                    host_id,
                    size,
                }),
                _ => Err(bad(format!("{triple:?} is not container:host:size"))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_read_as_containerd_writes_them() {
        let maps =
            IdMappings::from_mount_options("0:65536:65536", "0:65536:1,1:200000:10").unwrap();
        assert_eq!(
            maps.uids,
            [IdMapping {
                container_id: 0,
                host_id: 65536,
                size: 65536
            }]
        );
        assert_eq!(maps.gids.len(), 2);
        assert_eq!(maps.host_uid(1000), Some(66536));
        assert_eq!(maps.host_uid(65536), None);
        assert_eq!(maps.host_gid(5), Some(200004));
        assert_eq!(IdMappings::map_file(&maps.gids), "0 65536 1\n1 200000 10\n");
    }

    #[test]
    fn a_bad_option_is_named() {
        let err = IdMappings::from_mount_options("0:65536", "0:1:1").unwrap_err();
        assert!(err.to_string().contains("uidmap=0:65536"), "{err}");
        let err = IdMappings::from_mount_options("0:1:1", "a:1:1").unwrap_err();
        assert!(err.to_string().contains("gidmap=a:1:1"), "{err}");
    }
}
