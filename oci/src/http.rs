//! How a wasi:http component is served: where it listens, and how long one
//! request may take.
//!
//! Each setting comes from a container env var, else an annotation, else a
//! default. The env var wins: it is the narrower setting (one container's
//! image or spec), where an annotation is often set for a whole pod.

use std::net::SocketAddr;
use std::time::Duration;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::PlanError;

/// Where a wasi:http component is served unless the container says otherwise.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";
/// The container env var that sets the listen address.
pub const HTTP_ADDR_ENV: &str = "WASMBOX_HTTP_ADDR";
/// The annotation that sets it.
pub const HTTP_ADDR_ANNOTATION: &str = "wasmbox.io/http-addr";

/// How long one request may take unless the container says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The container env var that sets the request deadline (`30s`, `500ms`,
/// `2m`; `0` for none).
pub const REQUEST_TIMEOUT_ENV: &str = "WASMBOX_HTTP_REQUEST_TIMEOUT";
/// The annotation that sets it.
pub const REQUEST_TIMEOUT_ANNOTATION: &str = "wasmbox.io/http-request-timeout";

/// The serving settings of a wasi:http component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSettings {
    /// The listen address: [`HTTP_ADDR_ENV`], else [`HTTP_ADDR_ANNOTATION`],
    /// else [`DEFAULT_HTTP_ADDR`].
    pub addr: SocketAddr,
    /// The deadline of one request, from its arrival to the end of its
    /// handler (the response body included): [`REQUEST_TIMEOUT_ENV`], else
    /// [`REQUEST_TIMEOUT_ANNOTATION`], else [`DEFAULT_REQUEST_TIMEOUT`].
    /// `None` when set to `0`: a handler may then run for ever.
    pub request_timeout: Option<Duration>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
        }
    }
}

/// The settings from the spec's annotations and the container's env.
pub fn http_settings(spec: &Spec, env: &[(String, String)]) -> Result<HttpSettings, PlanError> {
    let defaults = HttpSettings::default();
    let addr = match setting(spec, env, HTTP_ADDR_ENV, HTTP_ADDR_ANNOTATION) {
        None => defaults.addr,
        Some((setting, value)) => {
            value
                .parse()
                .map_err(|e: std::net::AddrParseError| PlanError::BadHttpAddr {
                    setting,
                    value: value.to_string(),
                    reason: e.to_string(),
                })?
        }
    };
    let request_timeout = match setting(spec, env, REQUEST_TIMEOUT_ENV, REQUEST_TIMEOUT_ANNOTATION)
    {
        None => defaults.request_timeout,
        Some((setting, value)) => {
            let timeout = parse_duration(value).ok_or_else(|| PlanError::BadSetting {
                setting,
                value: value.to_string(),
                reason: "it is not a duration like 60s, 500ms or 2m (0 for none)",
            })?;
            (!timeout.is_zero()).then_some(timeout)
        }
    };
    Ok(HttpSettings {
        addr,
        request_timeout,
    })
}

/// The value of a setting and where it came from, for the error message.
pub(crate) fn setting<'a>(
    spec: &'a Spec,
    env: &'a [(String, String)],
    env_name: &'static str,
    annotation: &'static str,
) -> Option<(String, &'a str)> {
    let from_env = env
        .iter()
        .rev()
        .find(|(name, _)| name == env_name)
        .map(|(_, value)| (format!("process.env {env_name}"), value.as_str()));
    from_env.or_else(|| {
        spec.annotations()
            .as_ref()
            .and_then(|a| a.get(annotation))
            .map(|value| (format!("annotation {annotation}"), value.as_str()))
    })
}

/// `500ms`, `30s`, `2m`, `1h`, or a bare `0`.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    Some(Duration::from_millis(number.checked_mul(unit_ms)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(annotations: serde_json::Value) -> Spec {
        serde_json::from_value(json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "annotations": annotations,
        }))
        .unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_address_comes_from_env_then_annotation_then_default() {
        let settings = http_settings(&spec(json!({})), &[]).unwrap();
        assert_eq!(settings.addr.to_string(), DEFAULT_HTTP_ADDR);

        let annotated = spec(json!({"wasmbox.io/http-addr": "127.0.0.1:9001"}));
        let settings = http_settings(&annotated, &[]).unwrap();
        assert_eq!(settings.addr.to_string(), "127.0.0.1:9001");

        let by_env = env(&[("WASMBOX_HTTP_ADDR", "[::1]:9002")]);
        let settings = http_settings(&annotated, &by_env).unwrap();
        assert_eq!(settings.addr.to_string(), "[::1]:9002");

        let bad = spec(json!({"wasmbox.io/http-addr": "port 80"}));
        let msg = http_settings(&bad, &[]).unwrap_err().to_string();
        assert!(
            msg.starts_with("annotation wasmbox.io/http-addr \"port 80\" is not a listen address"),
            "{msg}"
        );
    }

    #[test]
    fn the_request_timeout_defaults_to_60s_and_0_turns_it_off() {
        let settings = http_settings(&spec(json!({})), &[]).unwrap();
        assert_eq!(settings.request_timeout, Some(Duration::from_secs(60)));

        for (value, expected) in [
            ("500ms", Some(Duration::from_millis(500))),
            ("2s", Some(Duration::from_secs(2))),
            ("2m", Some(Duration::from_secs(120))),
            ("0", None),
        ] {
            let annotated = spec(json!({ "wasmbox.io/http-request-timeout": value }));
            let settings = http_settings(&annotated, &[]).unwrap();
            assert_eq!(settings.request_timeout, expected, "{value}");
        }

        let annotated = spec(json!({"wasmbox.io/http-request-timeout": "2s"}));
        let by_env = env(&[("WASMBOX_HTTP_REQUEST_TIMEOUT", "5s")]);
        let settings = http_settings(&annotated, &by_env).unwrap();
        assert_eq!(settings.request_timeout, Some(Duration::from_secs(5)));

        for bad in ["", "10", "1.5s", "-1s", "s", "99999999999999999999h"] {
            let by_env = env(&[("WASMBOX_HTTP_REQUEST_TIMEOUT", bad)]);
            let msg = http_settings(&spec(json!({})), &by_env)
                .unwrap_err()
                .to_string();
            assert_eq!(
                msg,
                format!("process.env WASMBOX_HTTP_REQUEST_TIMEOUT {bad:?}: it is not a duration like 60s, 500ms or 2m (0 for none)")
            );
        }
    }
}
