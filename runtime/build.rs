//! Links the binary as a position-dependent executable. Its relocated data
//! (`.data.rel.ro`, the GOT: about 0.5 MiB each for the shim and the runner)
//! is then fixed in the file and shared by every process of it, instead of
//! being private dirty pages in each one, which at one shim and two runner
//! processes per container is most of their memory. The price is that the
//! executable's own image is not address-randomized (libraries, heap, stack
//! and mappings still are), as for Go binaries such as containerd's own
//! shims. Build with `WASMBOX_PIE=1` to keep a position-independent one.

fn main() {
    println!("cargo:rerun-if-env-changed=WASMBOX_PIE");
    if std::env::var_os("WASMBOX_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
