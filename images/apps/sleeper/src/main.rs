//! `sleeper`: says it is up, then runs until it is killed.

use std::io::Write;

fn main() {
    println!("sleeper: up");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
