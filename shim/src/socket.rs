//! The shim server's socket under `/run/containerd/s/`, named by a hash of
//! containerd's address, the namespace and the container's group (its pod,
//! or itself), as the runc shim names its own.
//!
//! A shim server that is killed (SIGKILL, the OOM killer) cannot remove its
//! socket file, and the file outlives it. Left there, it would stop every
//! later shim of the same name from listening, so that the same container
//! id could never run again. As the Go shims do, `start` reuses a socket a
//! live server answers on (the pod's shim, for its second container),
//! and removes one nothing answers on; `delete`, after a shim died, removes
//! its socket if nothing answers on it.

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// What `start` finds at a shim socket's path.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// A live shim server answers there: this group's shim, to reuse.
    Served,
    /// Nothing is there (any stale file was removed): spawn a server.
    Free,
}

fn path_of(address: &str) -> &Path {
    Path::new(address.trim_start_matches("unix://"))
}

/// Looks at the socket of `address` (`unix:///run/containerd/s/<hash>`).
pub fn claim(address: &str) -> std::io::Result<Claim> {
    let path = path_of(address);
    match UnixStream::connect(path) {
        Ok(_) => Ok(Claim::Served),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Claim::Free),
        Err(e) => {
            log::warn!(
                "removing the stale shim socket {} ({e}): its server is gone",
                path.display()
            );
            match std::fs::remove_file(path) {
                Ok(()) => Ok(Claim::Free),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(Claim::Free),
                Err(e) => Err(e),
            }
        }
    }
}

/// After a shim died: removes the socket named in the bundle's `address`
/// file unless a live server still answers on it (the pod's shim, which
/// serves its other containers, or one that another container of the pod
/// has started since).
pub async fn remove_stale(bundle: &Path) {
    let address = match std::fs::read_to_string(bundle.join("address")) {
        Ok(address) => address,
        Err(e) => {
            log::warn!(
                "no shim socket to remove: {}/address: {e}",
                bundle.display()
            );
            return;
        }
    };
    let address = address.trim();
    // A socket that takes connections is not yet a live server's: a child
    // the dead shim forked just before it was killed holds the listener
    // until it has exec'd, and the kernel queues connections for it that
    // nobody answers. A live server answers a request at once.
    let deadline = std::time::Instant::now() + STILL_SERVED_FOR;
    loop {
        match claim(address) {
            Ok(Claim::Free) => return,
            Ok(Claim::Served) if answers(address).await => {
                log::info!("the shim socket {address} is a live server's; left in place");
                return;
            }
            Ok(Claim::Served) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Ok(Claim::Served) => {
                log::warn!(
                    "the shim socket {address} still takes connections after {} ms, and nothing answers on it; left in place",
                    STILL_SERVED_FOR.as_millis()
                );
                return;
            }
            Err(e) => {
                log::warn!("cannot remove the shim socket {address}: {e}");
                return;
            }
        }
    }
}

/// How long `delete` waits for a dead shim's socket to stop taking
/// connections.
const STILL_SERVED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a live shim server has to answer.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether a shim server answers a Task API request on `address`: any
/// answer, an error included, is a live server's.
async fn answers(address: &str) -> bool {
    use containerd_shim::protos::shim::shim::ConnectRequest;
    use containerd_shim::protos::shim_async::{Client, TaskClient};
    use containerd_shim::protos::ttrpc::{context, Error};

    let Ok(client) = Client::connect(address).await else {
        return false;
    };
    let request = ConnectRequest::default();
    let ctx = context::with_timeout(ANSWER_WITHIN.as_nanos() as i64);
    match TaskClient::new(client).connect(ctx, &request).await {
        Ok(_) | Err(Error::RpcStatus(_)) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_live_socket_is_reused_a_dead_one_removed_and_none_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let _listener = UnixListener::bind(&live).unwrap();
        let address = format!("unix://{}", live.display());
        assert_eq!(claim(&address).unwrap(), Claim::Served);
        assert!(live.exists());

        let dead = dir.path().join("dead");
        drop(UnixListener::bind(&dead).unwrap());
        assert!(dead.exists(), "a dropped listener leaves its file");
        assert_eq!(
            claim(&format!("unix://{}", dead.display())).unwrap(),
            Claim::Free
        );
        assert!(!dead.exists());

        let none = dir.path().join("none");
        assert_eq!(
            claim(&format!("unix://{}", none.display())).unwrap(),
            Claim::Free
        );
    }

    /// A ttrpc server answers, even with "no such service"; a listener
    /// nobody accepts on (a dead shim's, held by its forked child) does not.
    #[tokio::test]
    async fn only_a_server_that_answers_is_live() {
        use containerd_shim::protos::ttrpc::r#async::transport::Listener;
        use containerd_shim::protos::ttrpc::r#async::Server;

        let dir = tempfile::tempdir().unwrap();
        let served = dir.path().join("served");
        let listener = Listener::try_from(UnixListener::bind(&served).unwrap()).unwrap();
        let mut server = Server::new().add_listener(listener);
        server.start().await.unwrap();
        assert!(answers(&format!("unix://{}", served.display())).await);

        let held = dir.path().join("held");
        let _never_accepted = UnixListener::bind(&held).unwrap();
        let address = format!("unix://{}", held.display());
        assert_eq!(claim(&address).unwrap(), Claim::Served);
        assert!(!answers(&address).await);
        server.shutdown().await.unwrap();
    }
}
