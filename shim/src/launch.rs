//! How `start` launches a shim server: it binds the server's socket
//! itself, hands the listener to a new server process as descriptor 3, puts
//! that process in the shim cgroup, and returns at once, as runc's shim
//! does.
//!
//! containerd connects as soon as `start` has answered, and its connection
//! waits in the socket's backlog while the server starts (exec, tokio, the
//! Task service). Before, `start` waited until the server had bound the
//! socket itself, so the server's whole start sat on the path of every
//! RunPodSandbox and `ctr run`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use containerd_shim::protos::shim::oci::Options;
use containerd_shim::StartOpts;

/// The environment variable that tells the server its listener is
/// descriptor [`LISTENER_FD`].
const LISTENER_ENV: &str = "WASMBOX_SHIM_LISTENER_FD";

/// The descriptor the server finds its listener at.
const LISTENER_FD: i32 = 3;

/// Why a server could not be launched.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot create the shim socket directory {dir}: {source}")]
    SocketDir { dir: String, source: std::io::Error },
    #[error("cannot listen on the shim socket {path}: {source}")]
    Bind {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot locate the shim binary: {0}")]
    Binary(std::io::Error),
    #[error("cannot start the shim server: {0}")]
    Spawn(std::io::Error),
    #[error("cannot put the shim server in its cgroup: {0}")]
    Confine(String),
}

/// Launches the server of the shim at `address` (`unix://PATH`) for
/// `opts`. If another `start` of the same group has bound the socket
/// meanwhile, its server is the group's, and nothing is launched.
pub fn launch_server(opts: &StartOpts, address: &str) -> Result<(), LaunchError> {
    let path = address.trim_start_matches("unix://");
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir).map_err(|source| LaunchError::SocketDir {
            dir: dir.display().to_string(),
            source,
        })?;
    }
    let listener = match UnixListener::bind(path) {
        Ok(listener) => listener,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Ok(()),
        Err(source) => {
            return Err(LaunchError::Bind {
                path: path.to_string(),
                source,
            })
        }
    };
    let launched = spawn_server(opts, address, &listener);
    if launched.is_err() {
        let _ = std::fs::remove_file(path);
    }
    launched
}

fn spawn_server(
    opts: &StartOpts,
    address: &str,
    listener: &UnixListener,
) -> Result<(), LaunchError> {
    let binary = std::env::current_exe().map_err(LaunchError::Binary)?;
    let mut command = Command::new(binary);
    command
        .args(["-namespace", &opts.namespace, "-id", &opts.id])
        .args(["-address", &opts.address, "-socket", address])
        .args(opts.debug.then_some("-debug"))
        .env(LISTENER_ENV, LISTENER_FD.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // containerd 2.3 passes its ttrpc address in the bootstrap parameters,
    // the older ones in the environment, which the server inherits.
    if !opts.ttrpc_address.is_empty() {
        command.env("TTRPC_ADDRESS", &opts.ttrpc_address);
    }
    let fd = listener.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe and allocate nothing;
    // `fd` stays open in this process until spawn returns.
    unsafe {
        command.pre_exec(move || {
            let kept = if fd == LISTENER_FD {
                nix::libc::fcntl(fd, nix::libc::F_SETFD, 0)
            } else {
                nix::libc::dup2(fd, LISTENER_FD)
            };
            if kept < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(LaunchError::Spawn)?;
    // As the crate's own spawn and runc's shim do: the shim cgroup of the
    // runtime options, and an OOM score above containerd's.
    let confined = opts
        .extension::<Options>()
        .map_err(|e| e.to_string())
        .and_then(|options| {
            let shim_cgroup = options.map(|o| o.shim_cgroup).unwrap_or_default();
            containerd_shim::cgroup::set_cgroup_and_oom_score(child.id(), &shim_cgroup)
                .map_err(|e| e.to_string())
        });
    if let Err(reason) = confined {
        let _ = child.kill();
        let _ = child.wait();
        return Err(LaunchError::Confine(reason));
    }
    Ok(())
}

/// The listener `start` handed to this server, if it did: it must be a
/// listening socket bound at `path`. It is close-on-exec from here on, so
/// no runner inherits it.
pub fn inherited_listener(path: &str) -> Result<Option<UnixListener>, String> {
    let Some(fd) = std::env::var_os(LISTENER_ENV) else {
        return Ok(None);
    };
    // Not for runc or anything else the server starts. The server is one
    // thread still: nothing reads the environment meanwhile.
    std::env::remove_var(LISTENER_ENV);
    if fd.to_str() != Some(&LISTENER_FD.to_string()) {
        return Err(format!("{LISTENER_ENV} is {fd:?}, not {LISTENER_FD}"));
    }
    // SAFETY: `start` passes descriptor 3 open, and nothing else in this
    // process has taken it yet: it is owned from here on.
    let owned = unsafe { OwnedFd::from_raw_fd(LISTENER_FD) };
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| format!("descriptor {LISTENER_FD} from {LISTENER_ENV}: {e}"))?;
    let listener = UnixListener::from(owned);
    let bound = listener
        .local_addr()
        .map_err(|e| format!("descriptor {LISTENER_FD} from {LISTENER_ENV}: {e}"))?;
    if bound.as_pathname() != Some(Path::new(path)) {
        return Err(format!(
            "descriptor {LISTENER_FD} from {LISTENER_ENV} is not a socket bound at {path}"
        ));
    }
    Ok(Some(listener))
}
