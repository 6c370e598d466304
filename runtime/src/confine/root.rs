//! No host filesystem: the runner ends in an empty root, and Landlock
//! limits each preopen to what its mount says.
//!
//! The shim always gives a runner a mount namespace of its own. There the
//! runner makes every mount private (nothing it does reaches the host),
//! mounts a small tmpfs, binds each preopened directory into it at the
//! same path it has on the host (so the paths of the plan stay valid,
//! which a wasi:http server needs: it opens its preopens once per
//! request), read-only where the mount says `ro`, and `nosuid`, `nodev`,
//! `noexec` always; then it pivots into the tmpfs, detaches the old root
//! and makes the new one read-only. `/proc/<pid>/root` of the runner then
//! shows those directories and nothing else of the host: no `/proc`, no
//! `/sys`, no `/dev`, no `/etc`.
//!
//! A preopen whose mount has `uidMappings` is id-mapped first, before
//! anything opens it ([`map_preopens`]): an id-mapped bind of it, through
//! a user namespace made for its mappings, is mounted over its own host
//! path in the runner's namespace, so the guest's descriptor and the bind
//! into the empty root both see the mapped ownership.
//!
//! Landlock (Linux 5.13 and later) then allows reading, and writing where
//! the mount is not `ro`, beneath each preopen, and nothing elsewhere. It
//! also scopes signals and abstract UNIX sockets to the runner itself. On a
//! kernel without it the empty root still holds, and the runner says so.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use wasmbox_idmap::{IdMappings, MountAttributes};
use wasmbox_oci::Preopen;

use super::ConfineError;

/// Where the new root is put together. Any directory that exists will do:
/// the mount is private to the runner's namespace and gone with it.
const ASSEMBLY_POINT: &str = "/tmp";

fn root_error(step: impl Into<String>, e: impl std::fmt::Display) -> ConfineError {
    ConfineError::Root {
        step: step.into(),
        reason: e.to_string(),
    }
}

/// Makes every mount of the runner's namespace private: nothing it mounts
/// reaches the host.
fn make_mounts_private() -> Result<(), ConfineError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| root_error("make mounts private", e))
}

/// Mounts an id-mapped bind of each preopen that has mappings over its own
/// host path, through one user namespace per distinct mapping. Runs before
/// the guest opens its preopens; makes user namespaces, so it forks.
pub fn map_preopens(preopens: &[Preopen]) -> Result<(), ConfineError> {
    if preopens.iter().all(|p| p.id_mappings.is_none()) {
        return Ok(());
    }
    make_mounts_private()?;
    let mut namespaces: Vec<(&IdMappings, OwnedFd)> = Vec::new();
    for preopen in preopens {
        let Some(mappings) = &preopen.id_mappings else {
            continue;
        };
        let index = match namespaces.iter().position(|(made, _)| *made == mappings) {
            Some(index) => index,
            None => {
                let owner = format!("mount {}", preopen.guest_path);
                namespaces.push((mappings, wasmbox_idmap::user_namespace(mappings, &owner)?));
                namespaces.len() - 1
            }
        };
        let path = &preopen.host_path;
        wasmbox_idmap::bind_idmapped(
            path,
            path,
            namespaces[index].1.as_fd(),
            MountAttributes::default(),
            true,
        )
        .map_err(|e| root_error(format!("id-map mount {}", preopen.guest_path), e))?;
    }
    Ok(())
}

/// Pivots into a new, empty, read-only root that holds `preopens` at
/// their host paths.
pub fn enter_empty_root(preopens: &[Preopen]) -> Result<(), ConfineError> {
    // Descriptors first: the tmpfs may hide a preopen's path.
    let mut sources: Vec<(PathBuf, File, bool)> = preopens
        .iter()
        .map(|p| {
            File::options()
                .read(true)
                .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY)
                .open(&p.host_path)
                .map(|fd| (p.host_path.clone(), fd, p.read_only))
                .map_err(|e| root_error(format!("open {}", p.host_path.display()), e))
        })
        .collect::<Result<_, _>>()?;
    // Parents before children, so a nested preopen lands inside its parent.
    sources.sort_by_key(|(path, _, _)| path.components().count());

    make_mounts_private()?;
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        ASSEMBLY_POINT,
        Some("tmpfs"),
        hardened,
        Some("mode=0755,size=64k,nr_inodes=1024"),
    )
    .map_err(|e| root_error(format!("mount a tmpfs on {ASSEMBLY_POINT}"), e))?;
    let new_root = Path::new(ASSEMBLY_POINT);
    for (host_path, fd, read_only) in &sources {
        let relative = host_path.strip_prefix("/").unwrap_or(host_path);
        let target = new_root.join(relative);
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(&target)
            .map_err(|e| root_error(format!("mkdir {}", target.display()), e))?;
        let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
        mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| root_error(format!("bind {}", host_path.display()), e))?;
        let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | hardened;
        if *read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(None::<&str>, &target, None::<&str>, flags, None::<&str>)
            .map_err(|e| root_error(format!("remount {}", host_path.display()), e))?;
    }
    drop(sources);

    nix::unistd::chdir(new_root).map_err(|e| root_error("chdir to the new root", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| root_error("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| root_error("detach the host's root", e))?;
    nix::unistd::chdir("/").map_err(|e| root_error("chdir /", e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | hardened,
        None::<&str>,
    )
    .map_err(|e| root_error("make the new root read-only", e))?;
    Ok(())
}

/// What Landlock gave, for the runner's start line.
pub fn landlock_summary(status: RulesetStatus) -> &'static str {
    match status {
        RulesetStatus::FullyEnforced => "landlock",
        RulesetStatus::PartiallyEnforced => "landlock(partial)",
        RulesetStatus::NotEnforced => "no-landlock",
    }
}

/// File access a WASI guest can ask for under a writable preopen: no
/// execute, no device, fifo or socket nodes.
fn writable(abi: ABI) -> landlock::BitFlags<AccessFs> {
    AccessFs::from_all(abi)
        & !(AccessFs::Execute
            | AccessFs::MakeChar
            | AccessFs::MakeBlock
            | AccessFs::MakeFifo
            | AccessFs::MakeSock
            | AccessFs::IoctlDev)
}

fn readable(abi: ABI) -> landlock::BitFlags<AccessFs> {
    (AccessFs::ReadFile | AccessFs::ReadDir) & AccessFs::from_all(abi)
}

/// Allows file access beneath `preopens` only (none at all for an empty
/// list), and with `scoped`, signals and abstract UNIX sockets only within
/// this process. Must run after [`enter_empty_root`].
pub fn restrict_files(preopens: &[Preopen], scoped: bool) -> Result<RulesetStatus, ConfineError> {
    let abi = ABI::V6;
    let landlock_error = |e: landlock::RulesetError| ConfineError::Landlock(e.to_string());
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(landlock_error)?;
    if scoped {
        ruleset = ruleset
            .scope(Scope::Signal | Scope::AbstractUnixSocket)
            .map_err(landlock_error)?;
    }
    let mut created = ruleset.create().map_err(landlock_error)?;
    for preopen in preopens {
        let dir = PathFd::new(&preopen.host_path)
            .map_err(|e| ConfineError::Landlock(format!("{}: {e}", preopen.host_path.display())))?;
        let access = if preopen.read_only {
            readable(abi)
        } else {
            writable(abi)
        };
        created = created
            .add_rule(PathBeneath::new(dir, access))
            .map_err(landlock_error)?;
    }
    let status = created
        .no_new_privs(true)
        .restrict_self()
        .map_err(landlock_error)?;
    Ok(status.ruleset)
}
