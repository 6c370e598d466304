//! `http-hello`: a wasi:http component (it exports
//! `wasi:http/incoming-handler`), built with `wstd` for `wasm32-wasip2`.
//!
//! - `GET /` answers `Hello from a wasmbox wasi:http component!`;
//! - `GET /slow?ms=N` answers after N milliseconds (for graceful shutdown);
//! - `GET /spin` never answers: it loops in wasm for ever (for the
//!   request deadline);
//! - `GET /fetch?url=URL` makes an outgoing GET (`wasi:http/outgoing-handler`)
//!   and reports its status and body size;
//! - anything else is 404.
//!
//! Every request is logged on stdout, which is the container's log.

use wasip2::http::types::{Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;
use wstd::http::body::Body;
use wstd::http::{Error, Request, Response, StatusCode};
use wstd::time::Duration;

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    println!(
        "http-hello: {} {} ({:?})",
        request.method(),
        request.uri(),
        request.version()
    );
    // Read the request's body before answering, as a server should: a
    // connection closed with unread bytes in it is reset, and the client
    // can lose the answer.
    request.body_mut().contents().await?;
    match path.as_str() {
        "/" => Ok(Response::new(
            "Hello from a wasmbox wasi:http component!\n".into(),
        )),
        "/slow" => {
            let ms = param(&query, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            wstd::task::sleep(Duration::from_millis(ms)).await;
            Ok(Response::new(format!("slept {ms} ms\n").into()))
        }
        "/spin" => {
            let mut turns = 0u64;
            loop {
                turns = std::hint::black_box(turns.wrapping_add(1));
            }
        }
        "/fetch" => {
            let Some(url) = param(&query, "url") else {
                return respond(StatusCode::BAD_REQUEST, "fetch needs ?url=\n");
            };
            match fetch(&url) {
                Ok((status, bytes)) => Ok(Response::new(
                    format!("fetched {url}: {status} ({bytes} bytes)\n").into(),
                )),
                Err(e) => respond(StatusCode::BAD_GATEWAY, &format!("fetch {url}: {e}\n")),
            }
        }
        _ => respond(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn respond(status: StatusCode, text: &str) -> Result<Response<Body>, Error> {
    let mut response = Response::new(text.to_string().into());
    *response.status_mut() = status;
    Ok(response)
}

/// The value of `name` in a query string (no percent-decoding but `%3A`
/// and `%2F`, enough for the URLs the tests pass).
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.replace("%3A", ":").replace("%2F", "/"))
    })
}

/// A GET through `wasi:http/outgoing-handler`, returning the status and the
/// body's size. The request's (empty) body is finished before the request
/// is handed over, so the host never sees a body still being written.
/// (wstd's `Client` writes the body while the request is in flight, and
/// reports "connection reset" when the host has already closed it.)
fn fetch(url: &str) -> Result<(u16, usize), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let invalid = |what: &str| format!("invalid {what}");
    request
        .set_method(&Method::Get)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let body = request.body().map_err(|()| "no request body".to_string())?;
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    let future =
        wasip2::http::outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|()| "the response was taken twice".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| "no response body".to_string())?;
    let stream = incoming
        .stream()
        .map_err(|()| "no body stream".to_string())?;
    let mut bytes = 0;
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => bytes += chunk.len(),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
    drop(stream);
    IncomingBody::finish(incoming);
    Ok((status, bytes))
}
