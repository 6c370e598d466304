//! `wasmbox-image`: packs a `.wasm` into an OCI image tarball (an OCI image
//! layout in a tar) that `ctr images import` and registries take.
//!
//! ```text
//! wasmbox-image --wasm hello.wasm --name docker.io/library/hello:latest \
//!     --output hello.tar [--entrypoint /app.wasm] [--env NAME=value]... [--arg ARG]...
//! ```
//!
//! The image has one layer, a tar holding the module at the entrypoint path,
//! and its platform is `wasi/wasm`. With `--artifact KIND` it is a wasm OCI
//! artifact instead: one layer that *is* the `.wasm`, of media type
//! `application/vnd.wasm.content.layer.v1+wasm` (KIND `wasm`, the CNCF
//! format), `application/vnd.bytecodealliance.wasm.component.layer.v0+wasm`
//! (`component`) or `application/wasm` (`application-wasm`), and a config of
//! type `application/vnd.wasm.config.v0+json`. No rootfs at all.
//!
//! `ctr run IMAGE` refuses that config type on the client side ("unknown
//! image config media type"); CRI and the containerd API take it. For `ctr`,
//! `--artifact-config oci` writes a plain OCI image config (env and args,
//! no rootfs layers) next to the same wasm layer, as runwasi's images do. Import it with
//! `ctr images import --all-platforms hello.tar`: containerd filters out
//! platforms other than the host's unless told otherwise.

use std::io::Write;

use anyhow::{Context, Result};
use wasmbox_image::{image_layout, parse_args, USAGE};

fn main() -> Result<()> {
    let Some(options) = parse_args(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let wasm = std::fs::read(&options.wasm)
        .with_context(|| format!("cannot read {}", options.wasm.display()))?;
    let native = match &options.native {
        Some(native) => Some(
            std::fs::read(&native.binary)
                .with_context(|| format!("cannot read {}", native.binary.display()))?,
        ),
        None => None,
    };
    let files = image_layout(&wasm, native.as_deref(), &options)?;

    let tmp = options.output.with_extension("tar.tmp");
    let write = || -> Result<()> {
        let mut out = tar::Builder::new(std::fs::File::create(&tmp)?);
        for (path, bytes) in &files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            out.append_data(&mut header, path, &bytes[..])?;
        }
        out.into_inner()?.flush()?;
        std::fs::rename(&tmp, &options.output)?;
        Ok(())
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write {}", options.output.display()))?;
    let mut platforms = format!("platform {}/{}", options.platform.0, options.platform.1);
    if let Some(native) = &options.native {
        platforms = format!(
            "platforms {}/{} and {}/{}",
            options.platform.0, options.platform.1, native.platform.0, native.platform.1
        );
    }
    println!(
        "{}: {} ({} bytes, {platforms})",
        options.output.display(),
        options.name,
        wasm.len(),
    );
    Ok(())
}
