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
//! restart takes, and that is logged.

use std::time::{Duration, Instant};

use containerd_shim::event::Event;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::{Client, EventsClient};
use containerd_shim::protos::ttrpc::context;
use tokio::sync::mpsc;

/// How many events may wait for containerd at once; more are dropped, with
/// a warning.
const QUEUE_SIZE: usize = 4096;
/// How long one event is retried before it is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
/// How long one forward may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Publishes events to containerd's ttrpc event service.
pub struct EventPublisher {
    queue: mpsc::Sender<Envelope>,
}

impl EventPublisher {
    /// A publisher to containerd's ttrpc `address` (`TTRPC_ADDRESS`). It
    /// connects when it first has an event to send.
    pub fn new(address: &str) -> Self {
        let (queue, events) = mpsc::channel(QUEUE_SIZE);
        tokio::spawn(forward_all(address.to_string(), events));
        Self { queue }
    }

    /// Queues `event` for containerd, stamped now, in `namespace`.
    pub fn publish(&self, namespace: &str, event: impl Event + 'static) {
        let topic = event.topic();
        let envelope = match envelope(namespace, &topic, Box::new(event)) {
            Ok(envelope) => envelope,
            Err(e) => {
                log::error!("cannot encode the {topic} event: {e}");
                return;
            }
        };
        if let Err(e) = self.queue.try_send(envelope) {
            log::warn!("dropping the {topic} event: {e} (containerd is not taking events)");
        }
    }
}

fn envelope(
    namespace: &str,
    topic: &str,
    event: Box<dyn Event>,
) -> containerd_shim::Result<Envelope> {
    let mut envelope = Envelope::new();
    envelope.set_topic(topic.to_string());
    envelope.set_namespace(namespace.to_string());
    envelope.set_timestamp(containerd_shim::util::timestamp()?);
    envelope.set_event(containerd_shim::util::convert_to_any(event)?);
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
/// or [`GIVE_UP_AFTER`] has passed.
async fn forward_all(address: String, mut events: mpsc::Receiver<Envelope>) {
    let mut client: Option<EventsClient> = None;
    // Whether the last forward failed: events are being held.
    let mut away = false;
    while let Some(envelope) = events.recv().await {
        let first_try = Instant::now();
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
                        if !held(&topic, &failure, first_try, &mut away) {
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
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
                            first_try.elapsed().as_secs_f64()
                        );
                    }
                    away = false;
                    break;
                }
                Err(e) => {
                    // A connection that failed once is not trusted again.
                    client = None;
                    if !held(&topic, &e.to_string(), first_try, &mut away) {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Logs a failed forward; false once the event is to be given up.
fn held(topic: &str, failure: &str, first_try: Instant, away: &mut bool) -> bool {
    if !*away {
        *away = true;
        log::warn!(
            "cannot publish {topic} to containerd ({failure}); holding events until it is back"
        );
    }
    if first_try.elapsed() >= GIVE_UP_AFTER {
        log::error!(
            "dropping the {topic} event: containerd did not take it in {} s ({failure})",
            GIVE_UP_AFTER.as_secs()
        );
        return false;
    }
    true
}
