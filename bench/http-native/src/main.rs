//! `http-hello-native ADDR`: what the `http-hello` component does for
//! `GET /` (answer `Hello from a wasmbox wasi:http component!` and log the
//! request on stdout), as a plain hyper server built for the host, on a
//! multi-threaded tokio runtime with one worker per core. It is the native
//! row of `make bench`'s wasi:http table: what the handler costs with no
//! wasm in the way.

use std::convert::Infallible;
use std::io::Write;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

const HELLO: &str = "Hello from a wasmbox wasi:http component!\n";

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let line = format!(
        "http-hello: {} {} ({:?})\n",
        request.method(),
        request.uri(),
        request.version()
    );
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
    let path = request.uri().path().to_string();
    // Read the body before answering, as the component does.
    let _ = request.into_body().collect().await;
    let response = if path == "/" {
        Response::new(Full::new(Bytes::from_static(HELLO.as_bytes())))
    } else {
        let mut not_found = Response::new(Full::new(Bytes::new()));
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        not_found
    };
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("http-hello-native: serving on http://{addr}/");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handle);
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
