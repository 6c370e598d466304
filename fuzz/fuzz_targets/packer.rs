//! The packer's inputs: its command line and the module's bytes. The input
//! is the arguments, separated by NUL, then a 0x01 byte, then the module.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (args, wasm) = match data.iter().position(|b| *b == 1) {
        Some(split) => (&data[..split], &data[split + 1..]),
        None => (data, &[][..]),
    };
    let args: Vec<String> = args
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if let Ok(Some(options)) = wasmbox_image::parse_args(args) {
        let native = options.native.is_some().then_some(wasm);
        let _ = wasmbox_image::image_layout(wasm, native, &options);
    }
});
