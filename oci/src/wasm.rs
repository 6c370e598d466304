//! Telling WebAssembly from anything else by its first bytes.
//!
//! A core module starts with `\0asm` and version 1; a component starts with
//! `\0asm` and the component-model version and layer. Anything else gets a
//! description of what it looks like instead (an ELF executable, a script),
//! so the user learns why their entrypoint was refused.

use std::io::Read;
use std::path::Path;

/// What kind of WebAssembly binary a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WasmKind {
    /// A core module (what `wasm32-wasip1` produces).
    Module,
    /// A component (what `wasm32-wasip2` produces).
    Component,
}

const MAGIC: &[u8; 4] = b"\0asm";
const MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];
/// Component-model binaries: version 0x0d, layer 1.
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

/// Classifies a file's header. `Err` carries a description of what the
/// bytes are instead, for the error message.
pub fn classify(header: &[u8]) -> Result<WasmKind, String> {
    if header.len() >= 8 && &header[..4] == MAGIC {
        let version = [header[4], header[5], header[6], header[7]];
        return match version {
            MODULE_VERSION => Ok(WasmKind::Module),
            COMPONENT_VERSION => Ok(WasmKind::Component),
            other => Err(format!(
                "it has the wasm magic bytes but an unknown version {other:02x?}"
            )),
        };
    }
    Err(describe_non_wasm(header))
}

fn describe_non_wasm(header: &[u8]) -> String {
    if header.is_empty() {
        return "the file is empty".to_string();
    }
    if header.starts_with(b"\x7fELF") {
        return "it is an ELF executable (a native Linux binary); wasmbox runs only .wasm files, so run it with runc".to_string();
    }
    if header.starts_with(b"#!") {
        let line: String = header
            .iter()
            .take_while(|b| **b != b'\n')
            .map(|b| *b as char)
            .collect();
        return format!("it is a script ({line}); wasmbox runs only .wasm files");
    }
    if header.starts_with(MAGIC) {
        return "it is truncated: it has the wasm magic bytes but no version".to_string();
    }
    "it does not start with the WebAssembly magic bytes \\0asm".to_string()
}

/// A native program runc can run in place of a wasm entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeEntrypoint {
    /// An ELF executable.
    Elf,
    /// A script, with its `#!` line.
    Script(String),
}

impl std::fmt::Display for NativeEntrypoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NativeEntrypoint::Elf => write!(f, "ELF executable"),
            NativeEntrypoint::Script(line) => write!(f, "script ({line})"),
        }
    }
}

/// Whether a file's header is a native program's.
pub fn native_kind(header: &[u8]) -> Option<NativeEntrypoint> {
    if header.starts_with(b"\x7fELF") {
        return Some(NativeEntrypoint::Elf);
    }
    if header.starts_with(b"#!") {
        let line = header
            .iter()
            .take_while(|b| **b != b'\n')
            .map(|b| *b as char)
            .collect();
        return Some(NativeEntrypoint::Script(line));
    }
    None
}

/// Whether the file at `path` is a native program (see [`native_kind`]).
pub fn native_entrypoint(path: &Path) -> Option<NativeEntrypoint> {
    let mut header = [0u8; 256];
    let mut file = std::fs::File::open(path).ok()?;
    let mut filled = 0;
    while filled < header.len() {
        match file.read(&mut header[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    native_kind(&header[..filled])
}

/// Reads the header of `path` and classifies it.
///
/// The outer `Err` is an I/O error; the inner one describes a non-wasm file.
pub fn detect_wasm(path: &Path) -> std::io::Result<Result<WasmKind, String>> {
    let mut file = std::fs::File::open(path)?;
    let mut header = [0u8; 64];
    let mut filled = 0;
    while filled < header.len() {
        let n = file.read(&mut header[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(classify(&header[..filled]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_and_component_are_told_apart() {
        assert_eq!(classify(b"\0asm\x01\0\0\0rest"), Ok(WasmKind::Module));
        assert_eq!(classify(b"\0asm\x0d\0\x01\0"), Ok(WasmKind::Component));
    }

    #[test]
    fn elf_script_and_garbage_are_described() {
        assert!(classify(b"\x7fELF\x02\x01\x01")
            .unwrap_err()
            .contains("ELF executable"));
        let script = classify(b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(script.contains("script (#!/bin/sh)"), "{script}");
        assert!(classify(b"").unwrap_err().contains("empty"));
        assert!(classify(b"\0asm").unwrap_err().contains("truncated"));
        assert!(classify(b"\0asm\x02\0\0\0")
            .unwrap_err()
            .contains("unknown version"));
        assert!(classify(b"hello world").unwrap_err().contains("magic"));
    }
}
