//! `hostile MODE`: a guest that does what a hostile or broken tenant does,
//! for the tests that show it ends as documented while its neighbours go
//! on.
//!
//! - `spin`: burns CPU for ever;
//! - `files N`: opens `/app.wasm` N times and keeps every descriptor; prints
//!   how many it got, and exits 0 if it got all, 1 if it was refused (with
//!   the error);
//! - `recurse`: recurses without end, until wasm's stack runs out;
//! - `flood MIB`: writes MIB mebibytes to stdout as fast as it can, then
//!   exits 0.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    match args.first().map(String::as_str) {
        Some("spin") => spin(),
        Some("files") => files(number(1).unwrap_or(100_000)),
        Some("recurse") => {
            println!("hostile: recursing");
            let _ = std::io::stdout().flush();
            println!("depth {}", recurse(std::hint::black_box(1)));
        }
        Some("flood") => flood(number(1).unwrap_or(1024)),
        _ => {
            eprintln!("usage: hostile spin | files N | recurse | flood MIB");
            std::process::exit(2);
        }
    }
}

fn spin() -> ! {
    println!("hostile: spinning");
    let _ = std::io::stdout().flush();
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn files(wanted: u64) {
    let mut open = Vec::new();
    while (open.len() as u64) < wanted {
        match std::fs::File::open("/app.wasm") {
            Ok(file) => open.push(file),
            Err(e) => {
                println!("hostile: opened {} files, then: {e}", open.len());
                std::process::exit(1);
            }
        }
    }
    println!("hostile: opened {} files", open.len());
}

/// Each frame keeps a buffer alive across the call, so that the optimiser
/// can neither drop the recursion nor turn it into a loop.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    let below = recurse(std::hint::black_box(depth + 1));
    below + frame[(depth % 16) as usize]
}

fn flood(mib: u64) {
    // A mebibyte of 1 KiB lines.
    let mut chunk = vec![b'x'; 1 << 20];
    for line_end in chunk.iter_mut().skip(1023).step_by(1024) {
        *line_end = b'\n';
    }
    let mut stdout = std::io::stdout().lock();
    for _ in 0..mib {
        if let Err(e) = stdout.write_all(&chunk) {
            eprintln!("hostile: stdout: {e}");
            std::process::exit(1);
        }
    }
    let _ = stdout.flush();
    eprintln!("hostile: wrote {mib} MiB");
}
