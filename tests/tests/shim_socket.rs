//! The shim server's socket: a file left by a shim that died does not
//! stop the next shim of that name.

use std::time::Duration;
use wasmbox_tests::*;

/// A shim socket whose server is gone (a file nothing listens on, as a
/// shim killed before containerd could clean up leaves) does not stop a
/// container of that name from starting: `start` removes it.
#[test]
fn a_stale_shim_socket_does_not_block_the_next_start() {
    let cd = Containerd::start();
    cd.import_wasm_image(
        &sample_wasm("sleeper"),
        "docker.io/wasmbox/sleeper:test",
        &[],
    );
    let id = "stale-socket";
    let run = [
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "docker.io/wasmbox/sleeper:test",
        id,
    ];
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
