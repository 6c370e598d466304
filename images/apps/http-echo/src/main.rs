//! `http-echo`: a plain TCP server built for `wasm32-wasip2` with Rust std's
//! `TcpListener` (WASI 0.2 sockets), answering HTTP/1.1 requests with what
//! it received. It shows pod networking: the pod IP reaches it from the
//! host, and the pod's other containers reach it at 127.0.0.1.
//!
//! - `http-echo [ADDR]` serves on ADDR (default `0.0.0.0:8080`), one
//!   connection at a time, logging each request on stdout;
//! - `http-echo get ADDR PATH` is a client: it sends `GET PATH` to ADDR,
//!   prints the response's body and exits 0 on a 200.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("get") {
        let (Some(addr), Some(path)) = (args.get(2), args.get(3)) else {
            eprintln!("usage: http-echo get ADDR PATH");
            return ExitCode::from(2);
        };
        return get(addr, path);
    }
    let addr = args.get(1).map(String::as_str).unwrap_or("0.0.0.0:8080");
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("http-echo: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("http-echo: listening on {addr}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream) {
                    eprintln!("http-echo: connection failed: {e}");
                }
            }
            Err(e) => eprintln!("http-echo: accept failed: {e}"),
        }
    }
    ExitCode::SUCCESS
}

/// Reads one request (line and headers) and echoes it back.
fn answer(stream: TcpStream) -> std::io::Result<()> {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".to_string());
    // (WASI has no `try_clone`; read and write through `&TcpStream`.)
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let request_line = request_line.trim_end();
    println!("http-echo: {request_line} from {peer}");
    let body = format!("echo: {request_line}\n");
    drop(reader);
    let mut stream = &stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn get(addr: &str, path: &str) -> ExitCode {
    let response = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect(addr)?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })();
    match response {
        Ok(response) => {
            let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
            print!("{body}");
            if head.starts_with("HTTP/1.1 200") {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "http-echo: {addr}{path} answered {}",
                    head.lines().next().unwrap_or("")
                );
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("http-echo: cannot get {addr}{path}: {e}");
            ExitCode::from(1)
        }
    }
}
