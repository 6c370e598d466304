//! `fsprobe OP...`: tries filesystem operations and reports each outcome on
//! one line, so tests can check what a guest can and cannot reach.
//!
//! Operations:
//! - `read:PATH` prints `read PATH: ok <contents>` or `read PATH: error <why>`;
//! - `write:PATH:TEXT` writes TEXT to PATH (creating it);
//! - `link:FROM:TO` makes a hard link TO naming FROM;
//! - `ls:DIR` lists a directory.

fn main() {
    let mut failures = 0;
    for op in std::env::args().skip(1) {
        let (outcome, shown) = run(&op);
        match outcome {
            Ok(text) => println!("{shown}: ok {text}"),
            Err(e) => {
                failures += 1;
                println!("{shown}: error {e}")
            }
        }
    }
    eprintln!("fsprobe: {failures} operation(s) failed");
}

fn run(op: &str) -> (std::io::Result<String>, String) {
    let mut parts = op.splitn(3, ':');
    let verb = parts.next().unwrap_or_default();
    let a = parts.next().unwrap_or_default();
    let b = parts.next().unwrap_or_default();
    match verb {
        "read" => (
            std::fs::read(a).map(|bytes| String::from_utf8_lossy(&bytes).trim_end().to_string()),
            format!("read {a}"),
        ),
        "write" => (
            std::fs::write(a, b).map(|()| String::new()),
            format!("write {a}"),
        ),
        "link" => (
            std::fs::hard_link(a, b).and_then(|()| std::fs::read_to_string(b)),
            format!("link {a} {b}"),
        ),
        "ls" => (
            std::fs::read_dir(a).map(|entries| {
                let mut names: Vec<String> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names.join(",")
            }),
            format!("ls {a}"),
        ),
        other => (
            Err(std::io::Error::other(format!(
                "unknown operation {other:?}"
            ))),
            op.to_string(),
        ),
    }
}
