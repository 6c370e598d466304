//! `busy`: says it is up, then burns CPU until it is killed, so metrics
//! and the freezer have something to show.

use std::io::Write;

fn main() {
    println!("busy: up");
    let _ = std::io::stdout().flush();
    let mut x: u64 = 1;
    loop {
        for i in 0..10_000_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}
