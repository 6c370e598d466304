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
//! - SIGTERM (or SIGINT) stops accepting, lets the requests in flight
//!   finish, and exits 0; the kubelet's SIGKILL after the grace period
//!   bounds the wait.
//! - A request whose handler traps or never answers gets a 500, and the
//!   reason goes to stderr; the server goes on.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use nix::sys::signal::{self, SigHandler, Signal};
use tokio::signal::unix::{signal as listen_for, SignalKind};
use wasmbox_oci::RunPlan;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::component::ComponentState;
use crate::guest::ExitReason;
use crate::stdio::log_line;
use crate::RuntimeError;

type Response = hyper::Response<HyperOutgoingBody>;

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
            addr: plan.http_addr,
            reason: e.to_string(),
        };
        let listener = std::net::TcpListener::bind(plan.http_addr).map_err(listen_error)?;
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
            listener.local_addr().unwrap_or(plan.http_addr)
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
        graceful.shutdown().await;
        Ok(())
    }
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
                    "wasmbox: {}: request failed: {e:?}",
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
        let state = ComponentState::new(&self.plan, false)?;
        let mut store = state.into_store(self.pre.engine());
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
            let proxy = pre.instantiate_async(&mut store).await?;
            let handled = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await;
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
            Ok(Ok(response)) => Ok(response),
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
