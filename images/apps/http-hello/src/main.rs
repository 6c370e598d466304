//! `http-hello`: a wasi:http component (it exports
//! `wasi:http/incoming-handler`), built with `wstd` for `wasm32-wasip2`.
//!
//! - `GET /` answers `Hello from a wasmbox wasi:http component!`;
//! - `GET /slow?ms=N` answers after N milliseconds (for graceful shutdown);
//! - `GET /fetch?url=URL` makes an outgoing request and reports its status
//!   and body size (for `wasi:http/outgoing-handler`);
//! - anything else is 404.
//!
//! Every request is logged on stdout, which is the container's log.

use wstd::http::body::Body;
use wstd::http::{Client, Error, Request, Response, StatusCode};
use wstd::time::Duration;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    println!(
        "http-hello: {} {} ({:?})",
        request.method(),
        request.uri(),
        request.version()
    );
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
        "/fetch" => {
            let Some(url) = param(&query, "url") else {
                return respond(StatusCode::BAD_REQUEST, "fetch needs ?url=\n");
            };
            let outgoing = Request::get(url.as_str()).body(Body::empty())?;
            match Client::new().send(outgoing).await {
                Ok(response) => {
                    let status = response.status();
                    let bytes = response.into_body().contents().await?.len();
                    Ok(Response::new(
                        format!("fetched {url}: {} ({bytes} bytes)\n", status.as_u16()).into(),
                    ))
                }
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
