//! The runner's control and status protocol, read from bytes a broken or
//! compromised peer may write: plans, status lines, notices, log lines.

#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use wasmbox_oci::protocol::{parse_log, read_notice, read_plan, read_status_line};
use wasmbox_oci::{RunPlan, SandboxPlan};

fuzz_target!(|data: &[u8]| {
    let _ = read_plan::<RunPlan>(data);
    let _ = read_plan::<SandboxPlan>(data);
    // One read per line, and one past the end (which reads as the
    // runner's exit).
    let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
    let mut reader = BufReader::new(data);
    for _ in 0..lines {
        if read_status_line(&mut reader).is_err() {
            break;
        }
    }
    let mut reader = BufReader::new(data);
    for _ in 0..lines {
        if read_notice(&mut reader).is_err() {
            break;
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            let _ = parse_log(line);
        }
    }
});
