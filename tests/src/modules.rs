//! WebAssembly modules made byte by byte, for the tests that need a module
//! no compiler would emit: one that declares 4 GiB of memory, one that
//! calls itself for ever, one big enough to take seconds to compile.

/// A module that declares 4 GiB of linear memory (65536 pages) and does
/// nothing else.
pub const FOUR_GIB_MODULE: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
    0x03, 0x02, 0x01, 0x00, // func 0 of type 0
    0x05, 0x05, 0x01, 0x00, 0x80, 0x80, 0x04, // memory: min 65536 pages
    0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, // export _start
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: empty body
];

/// A module whose `_start` calls itself for ever: wasm's own call stack
/// runs out (not a guest's shadow stack in linear memory).
pub const SELF_CALL_MODULE: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
    0x03, 0x02, 0x01, 0x00, // func 0 of type 0
    0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, // export _start
    0x0a, 0x06, 0x01, 0x04, 0x00, 0x10, 0x00, 0x0b, // code: call 0
];

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb128(payload.len(), out);
    out.extend_from_slice(payload);
}

/// A module of about `bytes` bytes: 64 KiB functions of arithmetic on
/// sixteen locals, and a `_start` (the first) that returns at once. About
/// 1.5 s of compiling per 10 MiB on this machine's cores.
pub fn big_module(bytes: usize) -> Vec<u8> {
    const FUNCTION_BYTES: usize = 64 << 10;
    let mut body = vec![0x01, 0x10, 0x7f]; // 16 locals of i32
    let mut i = 0usize;
    while body.len() < FUNCTION_BYTES {
        let (a, b, c) = (i % 16, (i * 7 + 3) % 16, (i * 5 + 1) % 16);
        // local.get a; local.get b; i32.mul; local.set c
        body.extend_from_slice(&[0x20, a as u8, 0x20, b as u8, 0x6c, 0x21, c as u8]);
        i += 1;
    }
    body.push(0x0b);
    let functions = (bytes / FUNCTION_BYTES).max(1);

    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[0x01, 0x60, 0x00, 0x00], &mut module);
    let mut funcs = Vec::new();
    leb128(functions, &mut funcs);
    funcs.extend(std::iter::repeat_n(0u8, functions));
    section(3, &funcs, &mut module);
    section(7, b"\x01\x06_start\x00\x00", &mut module);
    let mut code = Vec::new();
    leb128(functions, &mut code);
    let mut start = vec![0x00, 0x0b];
    leb128(start.len(), &mut code);
    code.append(&mut start);
    for _ in 1..functions {
        leb128(body.len(), &mut code);
        code.extend_from_slice(&body);
    }
    section(10, &code, &mut module);
    module
}
