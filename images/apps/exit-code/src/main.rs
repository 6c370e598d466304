//! `exit-code N`: exits with code N (default 0), through WASI `proc_exit`.

fn main() {
    let code = match std::env::args().nth(1) {
        None => 0,
        Some(arg) => match arg.parse::<i32>() {
            Ok(code) => code,
            Err(_) => {
                eprintln!("exit-code: {arg:?} is not an integer");
                2
            }
        },
    };
    println!("exiting with {code}");
    std::process::exit(code);
}
