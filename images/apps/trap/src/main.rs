//! `trap`: prints a line, then executes wasm's `unreachable` instruction.

fn main() {
    println!("about to trap");
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}
