//! How a core module's first start on a node is compiled, as far as the
//! container has a say: `auto` (baseline code first for a module of at
//! least the node's `WASMBOX_TIERED_MIN_BYTES`), `on` (whatever its size)
//! or `off` (wait for the optimized code). See `wasmbox_runtime::tiered`.
//!
//! Like the HTTP settings, it comes from a container env var, else an
//! annotation, else the default.

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::http::setting;
use crate::PlanError;

/// The container env var that sets it.
pub const TIERED_COMPILE_ENV: &str = "WASMBOX_TIERED_COMPILE";
/// The annotation that sets it.
pub const TIERED_COMPILE_ANNOTATION: &str = "wasmbox.io/tiered-compile";

/// Whether a missing module starts on baseline code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TieredCompile {
    /// For modules of at least the node's threshold.
    #[default]
    Auto,
    /// For every module.
    On,
    /// Never: the first start waits for the optimized code.
    Off,
}

/// The setting from the container's env or the spec's annotations.
pub fn tiered_compile(spec: &Spec, env: &[(String, String)]) -> Result<TieredCompile, PlanError> {
    let Some((setting, value)) = setting(spec, env, TIERED_COMPILE_ENV, TIERED_COMPILE_ANNOTATION)
    else {
        return Ok(TieredCompile::Auto);
    };
    match value {
        "auto" => Ok(TieredCompile::Auto),
        "on" => Ok(TieredCompile::On),
        "off" => Ok(TieredCompile::Off),
        _ => Err(PlanError::BadSetting {
            setting,
            value: value.to_string(),
            reason: "it is neither auto, on nor off",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(annotations: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "annotations": annotations,
        }))
        .unwrap()
    }

    #[test]
    fn the_env_wins_over_the_annotation_and_a_bad_value_is_named() {
        let annotated = spec(serde_json::json!({TIERED_COMPILE_ANNOTATION: "off"}));
        assert_eq!(tiered_compile(&annotated, &[]).unwrap(), TieredCompile::Off);
        let env = [(TIERED_COMPILE_ENV.to_string(), "on".to_string())];
        assert_eq!(tiered_compile(&annotated, &env).unwrap(), TieredCompile::On);
        assert_eq!(
            tiered_compile(&spec(serde_json::json!({})), &[]).unwrap(),
            TieredCompile::Auto
        );
        let bad = spec(serde_json::json!({TIERED_COMPILE_ANNOTATION: "fast"}));
        let message = tiered_compile(&bad, &[]).unwrap_err().to_string();
        assert_eq!(
            message,
            "annotation wasmbox.io/tiered-compile \"fast\": it is neither auto, on nor off"
        );
    }
}
