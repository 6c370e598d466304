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
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, PlatformBuilder,
    RootFsBuilder, Sha256Digest,
};
use sha2::{Digest as _, Sha256};

const USAGE: &str = "usage: wasmbox-image --wasm FILE --name REF --output TAR \
[--entrypoint /app.wasm] [--env NAME=value]... [--arg ARG]... [--platform OS/ARCH] \
[--artifact wasm|component|application-wasm [--artifact-config wasm|oci]]";

struct Options {
    wasm: PathBuf,
    name: String,
    output: PathBuf,
    entrypoint: String,
    env: Vec<String>,
    args: Vec<String>,
    /// `wasi/wasm` unless told otherwise; `linux/amd64` packs a native
    /// static binary instead (the benchmark's runc baseline).
    platform: (String, String),
    /// Pack as a wasm OCI artifact, with this layer media type.
    artifact: Option<&'static str>,
    /// The artifact's config: the CNCF wasm config, or an OCI image config.
    oci_config: bool,
}

/// The layer media types of wasm OCI artifacts, by `--artifact` KIND.
const ARTIFACT_LAYERS: [(&str, &str); 3] = [
    ("wasm", "application/vnd.wasm.content.layer.v1+wasm"),
    (
        "component",
        "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    ),
    ("application-wasm", "application/wasm"),
];
/// The config media type of a wasm OCI artifact.
const ARTIFACT_CONFIG: &str = "application/vnd.wasm.config.v0+json";

fn parse_args() -> Result<Options> {
    let mut wasm = None;
    let mut name = None;
    let mut output = None;
    let mut entrypoint = "/app.wasm".to_string();
    let mut env = Vec::new();
    let mut args = Vec::new();
    let mut platform = ("wasi".to_string(), "wasm".to_string());
    let mut artifact = None;
    let mut oci_config = false;
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = argv
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--wasm" => wasm = Some(PathBuf::from(value)),
            "--name" => name = Some(value),
            "--output" => output = Some(PathBuf::from(value)),
            "--entrypoint" => entrypoint = value,
            "--env" => {
                if !value.contains('=') {
                    bail!("--env {value:?} must be NAME=value");
                }
                env.push(value)
            }
            "--arg" => args.push(value),
            "--platform" => {
                let (os, arch) = value
                    .split_once('/')
                    .with_context(|| format!("--platform {value:?} must be OS/ARCH"))?;
                platform = (os.to_string(), arch.to_string());
            }
            "--artifact" => {
                let (_, media_type) = ARTIFACT_LAYERS
                    .iter()
                    .find(|(kind, _)| *kind == value)
                    .with_context(|| {
                        format!("--artifact {value:?} must be wasm, component or application-wasm")
                    })?;
                artifact = Some(*media_type);
            }
            "--artifact-config" => {
                oci_config = match value.as_str() {
                    "wasm" => false,
                    "oci" => true,
                    _ => bail!("--artifact-config {value:?} must be wasm or oci"),
                }
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if !entrypoint.starts_with('/') {
        bail!("--entrypoint {entrypoint:?} must be an absolute path inside the image");
    }
    Ok(Options {
        wasm: wasm.with_context(|| format!("--wasm is required\n{USAGE}"))?,
        name: name.with_context(|| format!("--name is required\n{USAGE}"))?,
        output: output.with_context(|| format!("--output is required\n{USAGE}"))?,
        entrypoint,
        env,
        args,
        platform,
        artifact,
        oci_config,
    })
}

/// A blob of the image: its bytes and descriptor.
struct Blob {
    bytes: Vec<u8>,
    descriptor: Descriptor,
}

fn blob(media_type: MediaType, bytes: Vec<u8>) -> Result<Blob> {
    let digest = sha256_digest(&bytes)?;
    let descriptor = DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(bytes.len() as u64)
        .build()?;
    Ok(Blob { bytes, descriptor })
}

fn sha256_digest(bytes: &[u8]) -> Result<Sha256Digest> {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(hex.parse()?)
}

/// The layer: an uncompressed tar with the module at the entrypoint path.
fn layer_tar(wasm: &[u8], entrypoint: &str) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let path = entrypoint.trim_start_matches('/');
    let mut header = tar::Header::new_gnu();
    header.set_size(wasm.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, wasm)?;
    Ok(builder.into_inner()?)
}

fn main() -> Result<()> {
    let options = parse_args()?;
    let wasm = std::fs::read(&options.wasm)
        .with_context(|| format!("cannot read {}", options.wasm.display()))?;
    let native = options.platform.1 != "wasm";
    if !native && !wasm.starts_with(b"\0asm") {
        bail!("{} is not a WebAssembly binary", options.wasm.display());
    }
    let os = Os::from(options.platform.0.as_str());
    let arch = Arch::from(options.platform.1.as_str());

    let (layer, config) = match options.artifact {
        Some(media_type) => artifact_blobs(&wasm, media_type, &options, os.clone(), arch.clone())?,
        None => image_blobs(&wasm, &options, os.clone(), arch.clone())?,
    };
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor.clone())
        .layers(vec![layer.descriptor.clone()])
        .build()?;
    let mut manifest = blob(MediaType::ImageManifest, serde_json::to_vec(&manifest)?)?;
    manifest.descriptor.set_platform(Some(
        PlatformBuilder::default()
            .os(os)
            .architecture(arch)
            .build()?,
    ));
    manifest.descriptor.set_annotations(Some(
        [
            ("io.containerd.image.name".to_string(), options.name.clone()),
            (
                "org.opencontainers.image.ref.name".to_string(),
                options.name.clone(),
            ),
        ]
        .into(),
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest.descriptor.clone()])
        .build()?;
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0".to_string())
        .build()?;

    let tmp = options.output.with_extension("tar.tmp");
    let write = || -> Result<()> {
        let mut out = tar::Builder::new(std::fs::File::create(&tmp)?);
        let mut add = |path: &str, bytes: &[u8]| -> Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            out.append_data(&mut header, path, bytes)?;
            Ok(())
        };
        add("oci-layout", &serde_json::to_vec(&layout)?)?;
        add("index.json", &serde_json::to_vec(&index)?)?;
        for blob in [&layer, &config, &manifest] {
            let path = format!("blobs/sha256/{}", blob.descriptor.digest().digest());
            add(&path, &blob.bytes)?;
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
    println!(
        "{}: {} ({} bytes, platform {}/{})",
        options.output.display(),
        options.name,
        wasm.len(),
        options.platform.0,
        options.platform.1
    );
    Ok(())
}

/// A classic image: a tar layer holding the module, and an image config
/// whose entrypoint names it.
fn image_blobs(wasm: &[u8], options: &Options, os: Os, arch: Arch) -> Result<(Blob, Blob)> {
    let layer = blob(MediaType::ImageLayer, layer_tar(wasm, &options.entrypoint)?)?;
    let config = ImageConfigurationBuilder::default()
        .os(os)
        .architecture(arch)
        .config(
            ConfigBuilder::default()
                .entrypoint(vec![options.entrypoint.clone()])
                .cmd(options.args.clone())
                .env(options.env.clone())
                .working_dir("/".to_string())
                .build()?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers".to_string())
                .diff_ids(vec![layer.descriptor.digest().to_string()])
                .build()?,
        )
        .build()?;
    let config = blob(MediaType::ImageConfig, serde_json::to_vec(&config)?)?;
    Ok((layer, config))
}

/// A wasm OCI artifact: the layer is the `.wasm` itself, and the config is
/// the CNCF wasm config (`application/vnd.wasm.config.v0+json`).
/// With `oci_config`, the config is an OCI image config with no rootfs
/// layers instead.
fn artifact_blobs(
    wasm: &[u8],
    layer_media_type: &str,
    options: &Options,
    os: Os,
    arch: Arch,
) -> Result<(Blob, Blob)> {
    let layer = blob(
        MediaType::Other(layer_media_type.to_string()),
        wasm.to_vec(),
    )?;
    if options.oci_config {
        let config = ImageConfigurationBuilder::default()
            .os(os)
            .architecture(arch)
            .config(
                ConfigBuilder::default()
                    .cmd(options.args.clone())
                    .env(options.env.clone())
                    .build()?,
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers".to_string())
                    .diff_ids(Vec::<String>::new())
                    .build()?,
            )
            .build()?;
        let config = blob(MediaType::ImageConfig, serde_json::to_vec(&config)?)?;
        return Ok((layer, config));
    }
    // Byte 4 of a component is 0x0d (its version); a core module's is 1.
    let os = if wasm.get(4) == Some(&0x0d) {
        "wasip2"
    } else {
        "wasip1"
    };
    let config = serde_json::json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "wasm",
        "os": os,
        "layerDigests": [layer.descriptor.digest().to_string()],
    });
    let config = blob(
        MediaType::Other(ARTIFACT_CONFIG.to_string()),
        serde_json::to_vec(&config)?,
    )?;
    Ok((layer, config))
}
