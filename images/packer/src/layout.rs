//! The OCI image layout of one image: its files (`oci-layout`,
//! `index.json` and the blobs), built in memory from the module's bytes.

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, PlatformBuilder,
    RootFsBuilder, Sha256Digest,
};
use sha2::{Digest as _, Sha256};

use crate::options::{Options, ARTIFACT_CONFIG};
use crate::PackError;

type Result<T> = std::result::Result<T, PackError>;

/// `seconds` since the epoch as RFC 3339, as OCI configs say `created`.
fn rfc3339(seconds: i64) -> Result<String> {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|e| PackError::Usage(format!("creation time {seconds}: {e}")))?
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| PackError::Usage(format!("creation time {seconds}: {e}")))
}

fn labels(options: &Options) -> std::collections::HashMap<String, String> {
    options.labels.iter().cloned().collect()
}

/// JSON with every object's keys in order: oci-spec keeps annotations in a
/// `HashMap`, whose order changes from run to run, and the same input must
/// give the same bytes (and digests).
fn canonical_json(value: &impl serde::Serialize) -> Result<Vec<u8>> {
    fn sorted(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let ordered: std::collections::BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::Value::Object(ordered.into_iter().collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sorted).collect())
            }
            other => other,
        }
    }
    Ok(serde_json::to_vec(&sorted(serde_json::to_value(value)?))?)
}

/// The files of the image layout of `wasm` packed as `options` say, each
/// with its path in the tarball. With `native` (the bytes of
/// `options.native`'s binary), the image is an index of two manifests, the
/// wasm one and the native one, under one name.
pub fn image_layout(
    wasm: &[u8],
    native: Option<&[u8]>,
    options: &Options,
) -> Result<Vec<(String, Vec<u8>)>> {
    let wasm_platform = options.platform.1 == "wasm";
    if wasm_platform && !wasm.starts_with(b"\0asm") {
        return Err(PackError::NotWasm(options.wasm.clone()));
    }
    let created = rfc3339(options.created)?;
    let mut annotations: std::collections::HashMap<String, String> =
        options.annotations.iter().cloned().collect();
    annotations
        .entry("org.opencontainers.image.created".to_string())
        .or_insert_with(|| created.clone());

    let mut blobs = Vec::new();
    let mut manifests = vec![manifest(
        wasm,
        &options.platform,
        &options.entrypoint,
        options.artifact,
        options,
        &annotations,
        &mut blobs,
    )?];
    if let (Some(bytes), Some(native_options)) = (native, options.native.as_ref()) {
        manifests.push(manifest(
            bytes,
            &native_options.platform,
            &native_options.entrypoint,
            None,
            options,
            &annotations,
            &mut blobs,
        )?);
    }
    annotations.insert("io.containerd.image.name".to_string(), options.name.clone());
    annotations.insert(
        "org.opencontainers.image.ref.name".to_string(),
        options.name.clone(),
    );
    // One platform: index.json names its manifest. Several: it names an
    // image index of them, as buildx writes a multi-platform image, so
    // that an import keeps every platform under the one name.
    let top = if manifests.len() == 1 {
        let mut only = manifests.remove(0);
        only.set_annotations(Some(annotations));
        only
    } else {
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .annotations(
                [(
                    "org.opencontainers.image.created".to_string(),
                    created.clone(),
                )]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()?;
        let index = blob(MediaType::ImageIndex, canonical_json(&index)?)?;
        let mut descriptor = index.descriptor.clone();
        descriptor.set_annotations(Some(annotations));
        blobs.push(index);
        descriptor
    };
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![top])
        .build()?;
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0".to_string())
        .build()?;

    let mut files = vec![
        ("oci-layout".to_string(), canonical_json(&layout)?),
        ("index.json".to_string(), canonical_json(&index)?),
    ];
    for blob in blobs {
        let path = format!("blobs/sha256/{}", blob.descriptor.digest().digest());
        files.push((path, blob.bytes));
    }
    Ok(files)
}

/// One platform's manifest: its layer, config and manifest blobs go into
/// `blobs`; the manifest's descriptor, with its platform, is returned.
fn manifest(
    bytes: &[u8],
    (os, arch): &(String, String),
    entrypoint: &str,
    artifact: Option<&'static str>,
    options: &Options,
    annotations: &std::collections::HashMap<String, String>,
    blobs: &mut Vec<Blob>,
) -> Result<Descriptor> {
    let (os, arch) = (Os::from(os.as_str()), Arch::from(arch.as_str()));
    let (layer, config) = match artifact {
        Some(media_type) => artifact_blobs(bytes, media_type, options, os.clone(), arch.clone())?,
        None => image_blobs(bytes, entrypoint, options, os.clone(), arch.clone())?,
    };
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor.clone())
        .layers(vec![layer.descriptor.clone()])
        .annotations(annotations.clone())
        .build()?;
    let manifest = blob(MediaType::ImageManifest, canonical_json(&manifest)?)?;
    let mut descriptor = manifest.descriptor.clone();
    descriptor.set_platform(Some(
        PlatformBuilder::default()
            .os(os)
            .architecture(arch)
            .build()?,
    ));
    blobs.extend([layer, config, manifest]);
    Ok(descriptor)
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

/// A classic image: a tar layer holding the module, and an image config
/// whose entrypoint names it.
fn image_blobs(
    bytes: &[u8],
    entrypoint: &str,
    options: &Options,
    os: Os,
    arch: Arch,
) -> Result<(Blob, Blob)> {
    let layer = blob(MediaType::ImageLayer, layer_tar(bytes, entrypoint)?)?;
    let config = ImageConfigurationBuilder::default()
        .created(rfc3339(options.created)?)
        .os(os)
        .architecture(arch)
        .config(
            ConfigBuilder::default()
                .entrypoint(vec![entrypoint.to_string()])
                .cmd(options.args.clone())
                .env(options.env.clone())
                .labels(labels(options))
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
    let config = blob(MediaType::ImageConfig, canonical_json(&config)?)?;
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
            .created(rfc3339(options.created)?)
            .os(os)
            .architecture(arch)
            .config(
                ConfigBuilder::default()
                    .cmd(options.args.clone())
                    .env(options.env.clone())
                    .labels(labels(options))
                    .build()?,
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers".to_string())
                    .diff_ids(Vec::<String>::new())
                    .build()?,
            )
            .build()?;
        let config = blob(MediaType::ImageConfig, canonical_json(&config)?)?;
        return Ok((layer, config));
    }
    // Byte 4 of a component is 0x0d (its version); a core module's is 1.
    let os = if wasm.get(4) == Some(&0x0d) {
        "wasip2"
    } else {
        "wasip1"
    };
    let config = serde_json::json!({
        "created": rfc3339(options.created)?,
        "architecture": "wasm",
        "os": os,
        "layerDigests": [layer.descriptor.digest().to_string()],
    });
    let config = blob(
        MediaType::Other(ARTIFACT_CONFIG.to_string()),
        canonical_json(&config)?,
    )?;
    Ok((layer, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(extra: &[&str]) -> Options {
        let mut args = vec![
            "--wasm",
            "app.wasm",
            "--name",
            "docker.io/x/app:1",
            "--output",
            "o.tar",
        ];
        args.extend_from_slice(extra);
        let mut options = crate::parse_args(args.iter().map(|a| a.to_string()))
            .unwrap()
            .unwrap();
        // A fixed time: the test compares builds made a moment apart.
        options.created = 1_700_000_000;
        options
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let wasm = b"\0asm\x01\0\0\0";
        for extra in [
            &[][..],
            &["--artifact", "wasm"][..],
            &["--artifact", "component", "--artifact-config", "oci"][..],
        ] {
            let first = image_layout(wasm, None, &options(extra)).unwrap();
            for _ in 0..8 {
                assert_eq!(
                    image_layout(wasm, None, &options(extra)).unwrap(),
                    first,
                    "{extra:?}"
                );
            }
            let names: Vec<&str> = first.iter().map(|(path, _)| path.as_str()).collect();
            assert_eq!(&names[..2], ["oci-layout", "index.json"]);
            assert_eq!(names.len(), 5);
        }
    }

    #[test]
    fn what_is_not_wasm_is_refused() {
        let e = image_layout(b"\x7fELF", None, &options(&[])).unwrap_err();
        assert_eq!(e.to_string(), "app.wasm is not a WebAssembly binary");
        // A native binary packs for a native platform.
        assert!(image_layout(b"\x7fELF", None, &options(&["--platform", "linux/amd64"])).is_ok());
    }
}
