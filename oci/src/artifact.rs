//! Wasm OCI artifacts, as their manifests describe them: which manifest of
//! an index is the wasm one, and which layer of a manifest is the `.wasm`.
//! The shim reads the blobs from containerd; this module decides.

use oci_spec::image::{Descriptor, ImageManifest};

/// The layer media types that carry a `.wasm` directly.
pub const WASM_LAYER_MEDIA_TYPES: [&str; 3] = [
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/wasm",
];

/// Whether a descriptor of `media_type` is an index (OCI or Docker's
/// manifest list) rather than a manifest.
pub fn is_index(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

/// The manifest of a wasm platform (`wasi`, `wasip1` or `wasip2` on
/// `wasm`), or the only one.
pub fn pick_manifest(manifests: &[Descriptor]) -> Option<&Descriptor> {
    manifests
        .iter()
        .find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.architecture().to_string() == "wasm"
                    && ["wasi", "wasip1", "wasip2"].contains(&p.os().to_string().as_str())
            })
        })
        .or_else(|| (manifests.len() == 1).then(|| &manifests[0]))
}

/// The manifest's wasm layer: `None` if it has none (a classic image),
/// an error if it has more than one.
pub fn wasm_layer(manifest: &ImageManifest) -> Result<Option<&Descriptor>, String> {
    let mut layers = manifest
        .layers()
        .iter()
        .filter(|l| WASM_LAYER_MEDIA_TYPES.contains(&l.media_type().to_string().as_str()));
    let first = layers.next();
    if layers.next().is_some() {
        return Err("it has more than one wasm layer; wasmbox runs images with one".to_string());
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{DescriptorBuilder, MediaType, PlatformBuilder};

    fn manifest(os: &str, arch: &str, digest: &str) -> Descriptor {
        let mut d = DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(digest.parse::<oci_spec::image::Digest>().unwrap())
            .size(1u64)
            .build()
            .unwrap();
        d.set_platform(Some(
            PlatformBuilder::default()
                .os(oci_spec::image::Os::from(os))
                .architecture(oci_spec::image::Arch::from(arch))
                .build()
                .unwrap(),
        ));
        d
    }

    #[test]
    fn the_wasm_platform_is_picked_from_an_index() {
        let linux = manifest("linux", "amd64", &format!("sha256:{}", "a".repeat(64)));
        let wasi = manifest("wasip2", "wasm", &format!("sha256:{}", "b".repeat(64)));
        let both = [linux.clone(), wasi.clone()];
        assert_eq!(pick_manifest(&both), Some(&wasi));
        assert_eq!(pick_manifest(std::slice::from_ref(&linux)), Some(&linux));
        assert_eq!(pick_manifest(&[linux.clone(), linux]), None);
    }

    #[test]
    fn a_manifest_has_at_most_one_wasm_layer() {
        let layer = |media_type: &str, digest: char| serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{}", digest.to_string().repeat(64)), "size": 1});
        let manifest = |layers: serde_json::Value| -> ImageManifest {
            serde_json::from_value(serde_json::json!({
                "schemaVersion": 2,
                "config": layer("application/vnd.wasm.config.v0+json", 'c'),
                "layers": layers,
            }))
            .unwrap()
        };
        let one = manifest(serde_json::json!([layer(WASM_LAYER_MEDIA_TYPES[0], 'a')]));
        assert!(wasm_layer(&one).unwrap().is_some());
        let classic = manifest(serde_json::json!([layer(
            "application/vnd.oci.image.layer.v1.tar",
            'a'
        )]));
        assert!(wasm_layer(&classic).unwrap().is_none());
        let two = manifest(serde_json::json!([
            layer(WASM_LAYER_MEDIA_TYPES[0], 'a'),
            layer(WASM_LAYER_MEDIA_TYPES[2], 'b')
        ]));
        assert!(wasm_layer(&two).is_err());
    }
}
