//! `hello`: greets, then prints its arguments and environment, so a user can
//! see that the container's args and env reached the guest.

fn main() {
    println!("Hello from a wasmbox container!");
    let args: Vec<String> = std::env::args().collect();
    println!("args: {args:?}");
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    for (name, value) in env {
        println!("env: {name}={value}");
    }
}
