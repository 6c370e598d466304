//! Child processes of the tests (ctr, curl, script): their output with a
//! time limit, and their stdout read line by line as it comes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` with a time limit; kills it and panics past the limit.
pub fn output_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    wait_output(child, timeout)
}

/// Waits for `child` (at most `timeout`) and collects its output.
pub fn wait_output(mut child: Child, timeout: Duration) -> Output {
    fn read_all(
        pipe: Option<impl std::io::Read + Send + 'static>,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let out_thread = read_all(child.stdout.take());
    let err_thread = read_all(child.stderr.take());
    let status = wait_with_timeout(&mut child, timeout);
    Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

/// Waits for `child` to exit, at most `timeout`; kills it and panics past it.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads `child`'s stdout until a line equal to `line` arrives (at most
/// `timeout`), returning the lines read so far.
pub fn wait_for_line(child: &mut Child, line: &str, timeout: Duration) -> Vec<String> {
    Lines::of(child).wait_for(|l| l == line, timeout)
}

/// The lines of a child's stdout, read as they come.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
}

impl Lines {
    /// Takes `child`'s piped stdout.
    pub fn of(child: &mut Child) -> Self {
        Self::read(child.stdout.take().expect("stdout piped"))
    }

    /// Takes `child`'s piped stderr.
    pub fn of_stderr(child: &mut Child) -> Self {
        Self::read(child.stderr.take().expect("stderr piped"))
    }

    fn read(pipe: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(pipe).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self { rx }
    }

    /// The next line if one has arrived.
    pub fn try_next(&mut self) -> Option<String> {
        self.rx.try_recv().ok()
    }

    /// Reads until a line matches `done` (at most `timeout`), returning
    /// the lines read, that one included.
    pub fn wait_for(&mut self, done: impl Fn(&str) -> bool, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    let finished = done(&l);
                    seen.push(l);
                    if finished {
                        return seen;
                    }
                }
                Err(_) => panic!("no awaited line within {timeout:?}; saw {seen:#?}"),
            }
        }
    }
}
