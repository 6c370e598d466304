//! `cat FILE...`: prints files, or stdin when given none.

use std::io::{Read, Write};

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    if paths.is_empty() {
        let mut buf = Vec::new();
        if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
            eprintln!("cat: stdin: {e}");
            failed = true;
        }
        let _ = out.write_all(&buf);
    }
    for path in paths {
        match std::fs::read(&path) {
            Ok(bytes) => {
                let _ = out.write_all(&bytes);
            }
            Err(e) => {
                eprintln!("cat: {path}: {e}");
                failed = true;
            }
        }
    }
    let _ = out.flush();
    std::process::exit(if failed { 1 } else { 0 });
}
