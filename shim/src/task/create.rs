//! Create, the one Task call that outlives its caller: containerd stops
//! waiting for a Create at its deadline or when the connection closes
//! (ttrpc drops the handler's future), so the container is made in a task
//! of its own, under a reservation of its id, and deleted again if nobody
//! is left to take it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use containerd_shim::api::CreateTaskRequest;
use containerd_shim::protos::events::task::{TaskCreate, TaskIO};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::ttrpc::{self, Code};
use tokio::sync::Mutex;

use super::{error, Entry, Inner, TaskService};
use crate::container::{self, Container, CreateRequest};
use crate::rootfs;

/// An id claimed by a Create under way; given back when dropped.
struct Reservation {
    inner: Arc<Inner>,
    id: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.inner
            .creating
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.id);
    }
}

impl TaskService {
    /// Creates container `req.id` and returns its pid; the container is made
    /// in a task of its own (see the module's doc).
    pub(super) async fn create_container(&self, req: CreateTaskRequest) -> ttrpc::Result<u32> {
        let reservation = self.reserve(&req.id).await?;
        let (answer, created) = tokio::sync::oneshot::channel();
        tokio::spawn(self.clone().create_detached(req, reservation, answer));
        created
            .await
            .map_err(|_| error(Code::INTERNAL, "the create task went away"))?
    }

    /// Claims `id` for a Create, so that a second Create of the same id
    /// fails while the first is still under way.
    async fn reserve(&self, id: &str) -> ttrpc::Result<Reservation> {
        let containers = self.inner.containers.lock().await;
        let mut creating = self
            .inner
            .creating
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if containers.contains_key(id) || !creating.insert(id.to_string()) {
            return Err(error(
                Code::ALREADY_EXISTS,
                format!("container {id} already exists"),
            ));
        }
        Ok(Reservation {
            inner: self.inner.clone(),
            id: id.to_string(),
        })
    }

    /// Creates the container, registers it and publishes TaskCreate, then
    /// hands its pid to the waiting Create call. If that call is gone,
    /// the container is deleted again, as containerd would have.
    async fn create_detached(
        self,
        req: CreateTaskRequest,
        reservation: Reservation,
        answer: tokio::sync::oneshot::Sender<ttrpc::Result<u32>>,
    ) {
        let id = req.id.clone();
        let (container, pod_record) = match self.make_container(&req).await {
            Ok(made) => made,
            Err(e) => {
                if let Err(Err(e)) = answer.send(Err(e)) {
                    log::warn!(
                        "container {id}: its Create, which containerd stopped waiting for, failed: {e:?}"
                    );
                }
                return;
            }
        };
        let pid = container.pid();
        self.inner.containers.lock().await.insert(
            id.clone(),
            Arc::new(Entry {
                pid,
                container: Mutex::new(container),
                pod_record,
            }),
        );
        drop(reservation);
        self.inner
            .shared
            .publish(TaskCreate {
                container_id: id.clone(),
                bundle: req.bundle,
                rootfs: req.rootfs,
                io: MessageField::some(TaskIO {
                    stdin: req.stdin,
                    stdout: req.stdout,
                    stderr: req.stderr,
                    terminal: req.terminal,
                    ..Default::default()
                }),
                pid,
                ..Default::default()
            })
            .await;
        if answer.send(Ok(pid)).is_err() {
            log::warn!(
                "container {id}: containerd stopped waiting for its Create (a deadline passed or the connection closed); deleting it"
            );
            if let Err(e) = self.delete_container(&id, "").await {
                log::warn!("container {id}: cannot delete it: {e:?}");
            }
        }
    }

    /// Mounts the rootfs and creates the container of the kind the
    /// bundle asks for, with its record in its pod sandbox's bundle (see
    /// crate::cleanup); unmounts again if that fails.
    async fn make_container(
        &self,
        req: &CreateTaskRequest,
    ) -> ttrpc::Result<(Box<dyn Container>, Option<PathBuf>)> {
        let id = &req.id;
        let started = Instant::now();
        let bundle = PathBuf::from(&req.bundle);
        let spec = wasmbox_oci::load_spec(&bundle).map_err(|e| error(Code::INVALID_ARGUMENT, e))?;
        let userns = wasmbox_oci::userns::user_namespace_from_spec(&spec)
            .map_err(|e| error(Code::INVALID_ARGUMENT, e))?;
        let mounted_rootfs = rootfs::mount(&bundle, &req.rootfs, userns.as_ref())
            .await
            .map_err(|e| error(Code::INTERNAL, e))?;
        let request = CreateRequest {
            req,
            spec: &spec,
            bundle: &bundle,
            mounted_rootfs: mounted_rootfs.clone(),
        };
        match container::create(&self.inner.shared, request).await {
            Ok(container) => {
                log::debug!(
                    "container {id}: created in {:.2} ms",
                    started.elapsed().as_secs_f64() * 1000.0
                );
                let pod_record = crate::cleanup::record_pod_member(&bundle, &spec, container.pid());
                Ok((container, pod_record))
            }
            Err(e) => {
                if let Some(target) = &mounted_rootfs {
                    rootfs::unmount(target);
                }
                Err(e.into())
            }
        }
    }
}
