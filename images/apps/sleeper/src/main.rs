//! `sleeper [tick]`: says it is up, then runs until it is killed; with
//! `tick`, it prints `tick` every 100 ms while it waits.

use std::io::Write;
use std::time::Duration;

fn main() {
    println!("sleeper: up");
    let _ = std::io::stdout().flush();
    let tick = std::env::args().nth(1).as_deref() == Some("tick");
    loop {
        if tick {
            std::thread::sleep(Duration::from_millis(100));
            println!("tick");
        } else {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}
