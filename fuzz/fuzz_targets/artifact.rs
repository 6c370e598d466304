//! A wasm OCI artifact's index and manifest, as a registry may serve them:
//! picking the wasm manifest, and the wasm layer of a manifest.

#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::image::{ImageIndex, ImageManifest};
use wasmbox_oci::artifact::{is_index, pick_manifest, wasm_layer};

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = serde_json::from_slice::<ImageIndex>(data) {
        if let Some(manifest) = pick_manifest(index.manifests()) {
            let _ = is_index(&manifest.media_type().to_string());
        }
    }
    if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(data) {
        let _ = wasm_layer(&manifest);
    }
});
