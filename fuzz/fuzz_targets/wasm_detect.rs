//! Telling wasm (module or component) from ELF binaries, scripts and
//! anything else by a file's first bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wasmbox_oci::wasm::classify(data);
    let _ = wasmbox_oci::wasm::native_kind(data);
});
