//! Wiring the stdio that containerd passes in Create to a runner.
//!
//! stdout and stderr are handed to the runner as open files, so guest output
//! goes straight to containerd's fifos with no copy in the shim. A path may
//! be a fifo (ctr, CRI), a `file://` URI, or empty (no stdio: /dev/null).
//! stdin, when there is one, is copied by a shim thread into a pipe, so the
//! guest sees end-of-file when the client closes its side.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Opens an output path for the runner's stdout or stderr.
pub fn open_output(path: &str) -> io::Result<Stdio> {
    Ok(output_file(path)?
        .map(Stdio::from)
        .unwrap_or_else(Stdio::null))
}

/// Opens an output path as a file; `None` for no output.
pub fn output_file(path: &str) -> io::Result<Option<File>> {
    if path.is_empty() {
        return Ok(None);
    }
    if let Some(file) = path.strip_prefix("file://") {
        let file = OpenOptions::new().create(true).append(true).open(file)?;
        return Ok(Some(file));
    }
    if path.starts_with("binary://") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "binary:// log drivers are not supported by wasmbox yet",
        ));
    }
    // containerd opens the reading end before Create; open without blocking
    // and make the descriptor blocking again for the guest. With no reader
    // (ENXIO), open read-write so the guest is never stuck in open().
    match OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => {
            fcntl(&file, FcntlArg::F_SETFL(OFlag::empty()))?;
            Ok(Some(file))
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
            let file = OpenOptions::new().read(true).write(true).open(path)?;
            Ok(Some(file))
        }
        Err(e) => Err(e),
    }
}

/// Gives the runner a pipe for stdin and copies `path` into it from a
/// thread. The thread ends when the client closes its side, or when the
/// guest exits and the pipe breaks.
pub fn open_input(path: &str) -> io::Result<Stdio> {
    Ok(input_pipe(path)?
        .map(Stdio::from)
        .unwrap_or_else(Stdio::null))
}

/// The read end of a pipe fed from `path` (see [`open_input`]); `None` for
/// no input.
pub fn input_pipe(path: &str) -> io::Result<Option<File>> {
    if path.is_empty() {
        return Ok(None);
    }
    let (reader, writer) = std::io::pipe()?;
    let path = path.to_string();
    std::thread::Builder::new()
        .name("stdin-copy".into())
        .spawn(move || {
            let mut writer = writer;
            match File::open(&path) {
                Ok(mut fifo) => {
                    let _ = io::copy(&mut fifo, &mut writer);
                }
                Err(e) => log::warn!("cannot open stdin {path}: {e}"),
            }
        })?;
    Ok(Some(File::from(std::os::fd::OwnedFd::from(reader))))
}
