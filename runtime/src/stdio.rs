//! The guest's stdout and stderr: the container's, as the shim opened them,
//! except that a reader going away is not the guest's problem.
//!
//! With `ctr run -d` (and `ctr attach` sessions that end) the process that
//! read the fifo exits while the guest runs on. Writes then fail with EPIPE,
//! and most guests treat a failed print as fatal (Rust's `println!`
//! panics). runc containers never see this, because the runc shim copies
//! their output and drops it when nobody reads. Here the guest writes to the
//! fifo directly, so EPIPE is turned into success: the output is dropped,
//! as runc's shim would drop it, and the guest runs on. A reader that comes
//! back gets what is written from then on.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// The container's stdout or stderr (fd 1 or 2 of the runner).
#[derive(Clone, Copy)]
pub enum ContainerOutput {
    Stdout,
    Stderr,
}

impl ContainerOutput {
    fn write(self, buf: &[u8]) -> io::Result<usize> {
        let written = match self {
            ContainerOutput::Stdout => io::stdout().write(buf),
            ContainerOutput::Stderr => io::stderr().write(buf),
        };
        match written {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(buf.len()),
            other => other,
        }
    }

    fn flush(self) -> io::Result<()> {
        let flushed = match self {
            ContainerOutput::Stdout => io::stdout().flush(),
            ContainerOutput::Stderr => io::stderr().flush(),
        };
        match flushed {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

/// Writes one line of the runner's own to the container's stderr (the
/// container log). Like the guest's output, it is dropped when nobody reads:
/// `eprintln!` would panic there.
pub fn log_line(line: std::fmt::Arguments<'_>) {
    let _ = ContainerOutput::Stderr.write(format!("{line}\n").as_bytes());
}

impl IsTerminal for ContainerOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ContainerOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(Writer(*self))
    }
}

struct Writer(ContainerOutput);

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.0.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
