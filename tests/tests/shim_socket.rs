//! The shim server's socket: a file left by a shim that died does not
//! stop the next shim of that name.

use std::time::Duration;
use wasmbox_tests::*;

const SLEEPER: &str = "docker.io/wasmbox/sleeper:test";

/// Imports the sleeper image into `cd`; returns the `ctr` arguments that
/// run it detached as container `id`.
fn detached_sleeper<'a>(cd: &Containerd, id: &'a str) -> [&'a str; 6] {
    cd.import_wasm_image(&sample_wasm("sleeper"), SLEEPER, &[]);
    ["run", "-d", "--runtime", RUNTIME, SLEEPER, id]
}

/// A shim socket whose server is gone (a file nothing listens on, as a
/// shim killed before containerd could clean up leaves) does not stop a
/// container of that name from starting: `start` removes it.
#[test]
fn a_stale_shim_socket_does_not_block_the_next_start() {
    let cd = Containerd::start();
    let id = "stale-socket";
    let run = detached_sleeper(&cd, id);
    assert_success(&cd.ctr(&run), "the first run");
    // The socket the next shim of this id will take.
    let socket = cd.shim_socket(id);
    cd.remove_detached(id);
    // Left as a dead server's: a socket file nothing listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind a dead socket"));
    assert!(socket.exists());
    assert_success(&cd.ctr(&run), "the run over a stale socket");
    wait_until("the task to run", Duration::from_secs(20), || {
        cd.task_has_status(id, "RUNNING")
    });
    cd.remove_detached(id);
    wait_until(
        "the socket to go with its shim",
        Duration::from_secs(10),
        || !socket.exists(),
    );
    cd.assert_nothing_left();
}

/// The inode of the listening socket bound at `path`, from /proc/net/unix.
fn listener_inode(path: &std::path::Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let path = path.to_str()?;
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path; flags 00010000
        // is __SO_ACCEPTCON, a listener.
        (fields.len() == 8 && fields[7] == path && fields[3] == "00010000")
            .then(|| fields[6].to_string())
    })
}

/// Whether process `pid` holds the socket with inode `inode`.
fn holds_socket(pid: u32, inode: &str) -> bool {
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == &*wanted)
            })
        })
        .unwrap_or(false)
}

/// `start` binds the shim socket and hands the listener to the shim
/// server: the server serves on it, and the runner it starts does not
/// hold it (a runner that did could take containerd's connections).
#[test]
fn the_server_serves_on_the_socket_start_bound_and_no_runner_holds_it() {
    let cd = Containerd::start();
    let id = "handed-socket";
    let run = detached_sleeper(&cd, id);
    assert_success(&cd.ctr(&run), "the run");
    wait_until("the task to run", Duration::from_secs(20), || {
        cd.task_has_status(id, "RUNNING")
    });
    let socket = cd.shim_socket(id);
    let inode = listener_inode(&socket)
        .unwrap_or_else(|| panic!("no listener at {} in /proc/net/unix", socket.display()));
    let shim = cd
        .wasmbox_pid("containerd-shim-wasmbox-v1")
        .expect("the shim server");
    let runner = cd.task_pid(id);
    // Descriptor 3, where `start` put it.
    let handed = std::fs::read_link(format!("/proc/{shim}/fd/3")).expect("the server's fd 3");
    assert_eq!(
        handed.to_string_lossy(),
        format!("socket:[{inode}]"),
        "the shim server {shim} does not serve on the listener start bound at {}",
        socket.display()
    );
    assert!(
        !holds_socket(runner, &inode),
        "runner {runner} holds the shim's listener at {}",
        socket.display()
    );
    cd.remove_detached(id);
    cd.assert_nothing_left();
}
