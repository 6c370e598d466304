//! wasi:http components, served.
//!
//! A component that exports `wasi:http/incoming-handler` is a server: the
//! runner listens on the plan's address (0.0.0.0:8080 unless the env var
//! `WASMBOX_HTTP_ADDR` or the annotation `wasmbox.io/http-addr` says
//! otherwise) inside the container's network namespace, and answers each
//! request with a fresh instance from the pooling allocator, as
//! `wasmtime serve` does.
//!
//! - HTTP/1.1 and HTTP/2 over cleartext (h2c with prior knowledge, as
//!   `curl --http2-prior-knowledge` sends) on the same port.
//! - The guest's stdout and stderr are the container's, so its prints reach
//!   the container log.
//! - Each request has a deadline (60 s unless `WASMBOX_HTTP_REQUEST_TIMEOUT`
//!   or the annotation `wasmbox.io/http-request-timeout` says otherwise):
//!   a handler that has not finished by then is stopped, its instance
//!   freed, and a request it never answered gets a 500. The engine's epoch
//!   ticks every [`EPOCH_TICK`], and a handler running wasm yields its
//!   thread at each tick, so a handler stuck in a loop neither keeps the
//!   others waiting nor outlives its deadline.
//! - SIGTERM (or SIGINT) stops accepting, lets the requests in flight
//!   finish, and exits 0. The drain ends at the latest one request deadline
//!   later, or at a second SIGTERM; the kubelet's SIGKILL after the grace
//!   period bounds it from outside.
//! - A request whose handler traps, fails or never answers gets a 500, and
//!   the reason goes to stderr; the server goes on.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use nix::sys::signal::{self, SigHandler, Signal};
use tokio::signal::unix::{signal as listen_for, SignalKind};
use wasmbox_oci::RunPlan;
use wasmtime::UpdateDeadline;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::component::ComponentState;
use crate::guest::ExitReason;
use crate::stdio::log_line;
use crate::RuntimeError;

type Response = hyper::Response<HyperOutgoingBody>;

/// How often the engine's epoch ticks while serving.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A wasi:http component with its listener bound, ready to serve.
pub struct HttpGuest {
    server: Arc<Server>,
    listener: std::net::TcpListener,
}

struct Server {
    pre: ProxyPre<ComponentState>,
    plan: RunPlan,
}

impl HttpGuest {
    /// Binds the listen address (so a taken port fails the Create call) and
    /// checks that a request's context can be built.
    pub fn prepare(pre: ProxyPre<ComponentState>, plan: &RunPlan) -> Result<Self, RuntimeError> {
        ComponentState::new(plan, false)?;
        let listen_error = |e: std::io::Error| RuntimeError::Listen {
            guest_path: plan.module_guest_path.clone(),
            addr: plan.http.addr,
            reason: e.to_string(),
        };
        let listener = std::net::TcpListener::bind(plan.http.addr).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        Ok(Self {
            server: Arc::new(Server {
                pre,
                plan: plan.clone(),
            }),
            listener,
        })
    }

    /// Serves until SIGTERM or SIGINT, then drains.
    pub fn run(self) -> ExitReason {
        // The runner, as PID 1 of a PID namespace, exits on SIGTERM at
        // once; a server drains instead. Default dispositions first, so the
        // handlers tokio installs do not chain to the old ones.
        for sig in [Signal::SIGTERM, Signal::SIGINT] {
            // SAFETY: restoring the default action of a signal.
            let _ = unsafe { signal::signal(sig, SigHandler::SigDfl) };
        }
        let guest_path = self.server.plan.module_guest_path.clone();
        let engine = self.server.pre.engine().clone();
        let ticker = std::thread::Builder::new()
            .name("epoch".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            });
        if let Err(e) = ticker {
            return fail(&guest_path, format!("cannot start the epoch ticker: {e}"));
        }
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => return fail(&guest_path, format!("cannot start the async runtime: {e}")),
        };
        match runtime.block_on(self.serve()) {
            Ok(()) => ExitReason::Exited(0),
            Err(e) => fail(&guest_path, e),
        }
    }

    async fn serve(self) -> Result<(), String> {
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .map_err(|e| format!("cannot listen: {e}"))?;
        let mut terminate = listen_for(SignalKind::terminate())
            .map_err(|e| format!("cannot wait for SIGTERM: {e}"))?;
        let mut interrupt = listen_for(SignalKind::interrupt())
            .map_err(|e| format!("cannot wait for SIGINT: {e}"))?;
        let plan = &self.server.plan;
        log_line(format_args!(
            "wasmbox: serving {} (wasi:http) on http://{}/",
            plan.module_guest_path,
            listener.local_addr().unwrap_or(plan.http.addr)
        ));
        let graceful = GracefulShutdown::new();
        let connections = auto::Builder::new(TokioExecutor::new());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _peer)) => stream,
                        Err(e) => {
                            // Out of descriptors, or a connection reset before
                            // it was accepted: not the server's end.
                            log_line(format_args!("wasmbox: accept failed: {e}"));
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let server = self.server.clone();
                    let service = hyper::service::service_fn(move |request| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(request).await) }
                    });
                    let connection = connections
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
            }
        }
        drop(listener);
        log_line(format_args!(
            "wasmbox: stopping: no new connections; waiting for requests in flight"
        ));
        // Every request ends by its deadline; a connection still open after
        // that is a client that will not let go.
        let bound = plan
            .http
            .request_timeout
            .map(|timeout| timeout + EPOCH_TICK * 10);
        let give_up = async move {
            match bound {
                Some(bound) => tokio::time::sleep(bound).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = graceful.shutdown() => {}
            _ = terminate.recv() => log_line(format_args!(
                "wasmbox: stopping now: a second SIGTERM came during the drain"
            )),
            _ = interrupt.recv() => log_line(format_args!(
                "wasmbox: stopping now: a second SIGINT came during the drain"
            )),
            () = give_up => log_line(format_args!(
                "wasmbox: stopping now: connections still open one request deadline after SIGTERM"
            )),
        }
        Ok(())
    }
}

/// The error of a handler stopped at its deadline.
fn deadline_passed(timeout: Option<Duration>) -> wasmtime::Error {
    wasmtime::format_err!(
        "it did not finish within {:?} and was stopped (the deadline is set by {} or {})",
        timeout.unwrap_or_default(),
        wasmbox_oci::http::REQUEST_TIMEOUT_ENV,
        wasmbox_oci::http::REQUEST_TIMEOUT_ANNOTATION
    )
}

fn fail(guest_path: &str, message: String) -> ExitReason {
    let reason = ExitReason::Trapped(message);
    reason.report(guest_path);
    reason
}

impl Server {
    /// Answers one request; failures become a 500 and a line on stderr.
    async fn handle(&self, request: hyper::Request<Incoming>) -> Response {
        match self.call(request).await {
            Ok(response) => response,
            Err(e) => {
                log_line(format_args!(
                    "wasmbox: {}: request failed: {e:#}",
                    self.plan.module_guest_path
                ));
                let mut response = Response::new(HyperOutgoingBody::default());
                *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
        }
    }

    /// Runs the guest's handler in a fresh instance.
    async fn call(&self, request: hyper::Request<Incoming>) -> wasmtime::Result<Response> {
        let timeout = self.plan.http.request_timeout;
        let deadline = timeout.map(|timeout| tokio::time::Instant::now() + timeout);
        let state = ComponentState::new(&self.plan, false)?;
        let mut store = state.into_store(self.pre.engine());
        // At each tick, wasm code yields to the other requests; the
        // deadline is the timeout around the handler's future below.
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store.set_epoch_deadline(1);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        // The handler runs in its own task: it may go on writing the body
        // after it has set the response.
        let task = tokio::spawn(async move {
            let handle = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
            };
            let handled = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, handle).await {
                    Ok(handled) => handled,
                    // Dropping the handler's future drops its store: the
                    // instance goes back to the pool.
                    Err(_) => return Err(deadline_passed(timeout)),
                },
                None => handle.await,
            };
            handled.map_err(|e| match ExitReason::from_error(&e, store.data().limiter.refused()) {
                ExitReason::OutOfMemory(refused) => wasmtime::format_err!(
                    "out of memory: it asked for {} MiB of linear memory, and the container's memory limit is {} MiB",
                    refused.desired >> 20,
                    refused.limit >> 20
                ),
                _ => e,
            })
        });
        match receiver.await {
            Ok(Ok(response)) => {
                // The handler may still be writing the body: say so if it
                // fails or runs out of time.
                let guest_path = self.plan.module_guest_path.clone();
                tokio::spawn(async move {
                    if let Ok(Err(e)) = task.await {
                        log_line(format_args!(
                            "wasmbox: {guest_path}: request failed after its response was sent: {e:#}"
                        ));
                    }
                });
                Ok(response)
            }
            Ok(Err(code)) => Err(wasmtime::format_err!(
                "the handler answered with an error: {code:?}"
            )),
            // The handler ended without setting a response.
            Err(_) => match task.await {
                Ok(Ok(())) => Err(wasmtime::format_err!("the handler never set a response")),
                Ok(Err(e)) => Err(e.context("the handler failed")),
                Err(e) => Err(wasmtime::format_err!("the handler's task failed: {e}")),
            },
        }
    }
}
