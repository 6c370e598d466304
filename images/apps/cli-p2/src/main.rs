//! `cli-p2`: a WASI 0.2 command component (built for `wasm32-wasip2`), so
//! tests can see that a component gets its args, env and preopens and that
//! its exit code reaches the task, as a core module's does.
//!
//! Usage: `cli-p2 [read PATH] [write PATH TEXT] [exit CODE]...` — each
//! command runs in order and prints what happened; with none it greets.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    println!("Hello from a wasmbox component!");
    println!("args: {args:?}");
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    for (name, value) in &env {
        println!("env: {name}={value}");
    }
    let mut rest = args.iter().skip(1);
    while let Some(command) = rest.next() {
        match command.as_str() {
            "read" => {
                let path = rest.next().map(String::as_str).unwrap_or("");
                match std::fs::read_to_string(path) {
                    Ok(text) => println!("read {path}: {}", text.trim_end()),
                    Err(e) => println!("read {path}: error {e}"),
                }
            }
            "write" => {
                let path = rest.next().map(String::as_str).unwrap_or("");
                let text = rest.next().map(String::as_str).unwrap_or("");
                match std::fs::write(path, text) {
                    Ok(()) => println!("write {path}: ok"),
                    Err(e) => println!("write {path}: error {e}"),
                }
            }
            "exit" => {
                let code = rest.next().and_then(|c| c.parse::<u8>().ok()).unwrap_or(1);
                // Rust's std can only say ok or error (0 or 1) through WASI
                // 0.2's `exit`; `exit-with-code` (WASI 0.2.12) carries the
                // code itself.
                let _ = std::io::Write::flush(&mut std::io::stdout());
                wasip2::cli::exit::exit_with_code(code);
                #[allow(unreachable_code)]
                return ExitCode::from(code);
            }
            other => {
                eprintln!("cli-p2: unknown command {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}
