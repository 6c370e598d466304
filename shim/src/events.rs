//! Events to containerd: in order, and retried until containerd takes them.
//!
//! containerd's own shims queue an event they cannot forward and retry it
//! five times, 1 s, 2 s, … 5 s apart, reconnecting when the connection is
//! closed, then drop it. The containerd-shim crate's publisher copies that,
//! but the error a closed connection gives here is not one it reconnects
//! on, so every event published while containerd restarted was lost (a
//! TaskExit among them, which CRI needs to record an exit).
//!
//! This publisher keeps events in a bounded queue and forwards them one at
//! a time, in order. A failed forward drops the connection; the next try
//! makes a new one, after a back-off from 100 ms up to 5 s. An event is
//! given up only after [`GIVE_UP_AFTER`], far longer than a containerd
//! restart takes, and that is logged. Before the shim exits, it flushes
//! the queue ([`EventPublisher::flush`]): the TaskExit it held while
//! containerd was away would otherwise go with it.
//!
//! An event's type URL is written from its message's name, not from
//! protobuf's reflection (as the crate's `convert_to_any` does): the first
//! reflection of containerd's event types builds the descriptors of their
//! whole import tree, `descriptor.proto` among them, and keeps them on the
//! heap of every shim for good.

use std::time::{Duration, Instant};

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::{Client, EventsClient};
use containerd_shim::protos::ttrpc::context;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Notify};

/// How many events may wait for containerd at once; more are dropped, with
/// a warning.
const QUEUE_SIZE: usize = 4096;
/// How long one event is retried before it is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
/// How long one forward may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Publishes events to containerd's ttrpc event service. Clones share
/// the queue.
#[derive(Clone)]
pub struct EventPublisher {
    /// Each event with when it was published: it is given up
    /// [`GIVE_UP_AFTER`] from then, however long the events before it took.
    queue: mpsc::Sender<(Instant, Envelope)>,
    /// How many events are queued or being forwarded.
    pending: watch::Sender<usize>,
    /// Cuts the current back-off short.
    hurry: Arc<Notify>,
}

impl EventPublisher {
    /// A publisher to containerd's ttrpc `address` (`TTRPC_ADDRESS`). It
    /// connects when it first has an event to send.
    pub fn new(address: &str) -> Self {
        let (queue, events) = mpsc::channel(QUEUE_SIZE);
        let (pending, _) = watch::channel(0);
        let hurry = Arc::new(Notify::new());
        tokio::spawn(forward_all(
            address.to_string(),
            events,
            pending.clone(),
            hurry.clone(),
        ));
        Self {
            queue,
            pending,
            hurry,
        }
    }

    /// Waits (at most `timeout`) until containerd has taken every queued
    /// event, retrying at once rather than after the current back-off;
    /// false if some are still held.
    pub async fn flush(&self, timeout: std::time::Duration) -> bool {
        self.hurry.notify_one();
        let mut pending = self.pending.subscribe();
        tokio::time::timeout(timeout, pending.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    /// Queues `event` for containerd, stamped now, in `namespace`.
    pub fn publish<E: Event + Message>(&self, namespace: &str, event: E) {
        let topic = event.topic();
        let envelope = match envelope(namespace, &topic, &event) {
            Ok(envelope) => envelope,
            Err(e) => {
                log::error!("cannot encode the {topic} event: {e}");
                return;
            }
        };
        self.pending.send_modify(|n| *n += 1);
        if let Err(e) = self.queue.try_send((Instant::now(), envelope)) {
            self.pending.send_modify(|n| *n -= 1);
            log::warn!("dropping the {topic} event: {e} (containerd is not taking events)");
        }
    }
}

/// The protobuf package of containerd's events (`containerd.events.TaskExit`).
const EVENTS_PACKAGE: &str = "containerd.events";

/// The type URL containerd's `typeurl` gives event `E`.
fn type_url<E: Message>() -> String {
    format!("{EVENTS_PACKAGE}.{}", E::NAME)
}

fn envelope<E: Event + Message>(
    namespace: &str,
    topic: &str,
    event: &E,
) -> Result<Envelope, String> {
    let mut envelope = Envelope::new();
    envelope.set_topic(topic.to_string());
    envelope.set_namespace(namespace.to_string());
    envelope.set_timestamp(containerd_shim::util::timestamp().map_err(|e| e.to_string())?);
    envelope.set_event(Any {
        type_url: type_url::<E>(),
        value: event.write_to_bytes().map_err(|e| e.to_string())?,
        ..Default::default()
    });
    Ok(envelope)
}

async fn connect(address: &str) -> Result<EventsClient, String> {
    let address = address.to_string();
    let fd = tokio::task::spawn_blocking(move || containerd_shim::util::connect(address))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    // SAFETY: `fd` is a connected Unix socket that nothing else owns.
    Ok(EventsClient::new(unsafe {
        Client::from_raw_unix_socket_fd(fd)
    }))
}

/// Forwards the queue's events one by one, each until containerd takes it
/// or [`GIVE_UP_AFTER`] has passed since it was published.
async fn forward_all(
    address: String,
    mut events: mpsc::Receiver<(Instant, Envelope)>,
    pending: watch::Sender<usize>,
    hurry: Arc<Notify>,
) {
    let mut client: Option<EventsClient> = None;
    // Whether the last forward failed: events are being held.
    let mut away = false;
    while let Some((published, envelope)) = events.recv().await {
        let mut tries = 0u32;
        let mut backoff = FIRST_BACKOFF;
        let mut request = ForwardRequest::new();
        request.set_envelope(envelope);
        let topic = request.envelope().topic.clone();
        loop {
            let Some(events_client) = client.as_ref() else {
                match connect(&address).await {
                    Ok(connected) => client = Some(connected),
                    Err(e) => {
                        let failure = format!("cannot connect to {address}: {e}");
                        if !held(&topic, &failure, published, &mut away) {
                            break;
                        }
                        back_off(&mut backoff, &hurry).await;
                    }
                }
                continue;
            };
            tries += 1;
            let timeout = context::with_timeout(FORWARD_TIMEOUT.as_nanos() as i64);
            match events_client.forward(timeout, &request).await {
                Ok(_) => {
                    if tries > 1 || away {
                        log::info!(
                            "containerd took the {topic} event it missed, {:.1} s late",
                            published.elapsed().as_secs_f64()
                        );
                    }
                    away = false;
                    break;
                }
                Err(e) => {
                    // A connection that failed once is not trusted again.
                    client = None;
                    if !held(&topic, &e.to_string(), published, &mut away) {
                        break;
                    }
                    back_off(&mut backoff, &hurry).await;
                }
            }
        }
        pending.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Sleeps the back-off, or less if a flush hurries it; doubles it.
async fn back_off(backoff: &mut Duration, hurry: &Notify) {
    tokio::select! {
        () = tokio::time::sleep(*backoff) => {}
        () = hurry.notified() => {}
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}

/// Logs a failed forward; false once the event is to be given up.
fn held(topic: &str, failure: &str, published: Instant, away: &mut bool) -> bool {
    if !*away {
        *away = true;
        log::warn!(
            "cannot publish {topic} to containerd ({failure}); holding events until it is back"
        );
    }
    if published.elapsed() >= GIVE_UP_AFTER {
        log::error!(
            "dropping the {topic} event: containerd did not take it in {} s ({failure})",
            GIVE_UP_AFTER.as_secs()
        );
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::events::task::{
        TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
        TaskResumed, TaskStart,
    };
    use containerd_shim::protos::protobuf::MessageFull;

    use super::type_url;

    /// The name-built type URL of each event the shim sends is the one
    /// protobuf's reflection gives (which containerd decodes it by).
    #[test]
    fn type_urls_are_the_full_names_containerd_decodes() {
        fn check<E: MessageFull>() {
            assert_eq!(type_url::<E>(), E::descriptor().full_name());
        }
        check::<TaskCreate>();
        check::<TaskStart>();
        check::<TaskDelete>();
        check::<TaskExit>();
        check::<TaskOOM>();
        check::<TaskExecAdded>();
        check::<TaskExecStarted>();
        check::<TaskPaused>();
        check::<TaskResumed>();
    }
}
