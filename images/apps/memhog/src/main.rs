//! `memhog MIB [--try]`: allocates MIB mebibytes and touches them.
//!
//! Plain, it allocates like most programs do and aborts when the allocation
//! fails. With `--try` it asks with `try_reserve` and reports the failure
//! itself, exiting 3: what a well-written guest does when `memory.grow`
//! fails.

use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let graceful = args.next().as_deref() == Some("--try");
    let bytes = mib << 20;
    println!("allocating {mib} MiB");
    let _ = std::io::stdout().flush();
    if graceful {
        let mut buf: Vec<u8> = Vec::new();
        match buf.try_reserve_exact(bytes) {
            Ok(()) => {
                buf.resize(bytes, 1);
                println!("allocated {} MiB", buf.len() >> 20);
            }
            Err(e) => {
                println!("allocation failed gracefully: {e}");
                std::process::exit(3);
            }
        }
    } else {
        let buf = vec![1u8; bytes];
        println!(
            "allocated {} MiB (checksum {})",
            buf.len() >> 20,
            buf.iter().map(|b| *b as u64).sum::<u64>()
        );
    }
}
