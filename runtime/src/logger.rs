//! The runner's log: every record (the cache's warnings, a corrupt entry
//! rebuilt, an eviction) goes to the shim over the status pipe as a `log`
//! line (see `wasmbox_oci::protocol`), and from there to containerd's log
//! for the container. The container's own stdout and stderr stay the
//! guest's.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use wasmbox_oci::protocol::write_log;

struct StatusPipeLogger {
    pipe: Mutex<File>,
}

impl log::Log for StatusPipeLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = record.level().as_str().to_ascii_lowercase();
        // One write per line, under PIPE_BUF: never torn by a status line.
        if let Ok(mut pipe) = self.pipe.lock() {
            let _ = write_log(&mut *pipe, &level, &record.args().to_string());
        }
    }

    fn flush(&self) {
        if let Ok(mut pipe) = self.pipe.lock() {
            let _ = pipe.flush();
        }
    }
}

/// Sends the runner's log records to the shim through `status`, a copy of
/// the status pipe. Info and above: the runner logs nothing per request.
pub fn install(status: File) {
    let logger = StatusPipeLogger {
        pipe: Mutex::new(status),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}
