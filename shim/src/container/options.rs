//! The runtime's options, read as containerd passes them in Create.
//!
//! - `ctr run --runc-binary … --runc-systemd-cgroup` and a runtime entry
//!   of runc's type send runc's own `containerd.runc.v1.Options`: its
//!   `BinaryName` and `SystemdCgroup` apply.
//! - CRI sends any other runtime type, such as wasmbox's, a
//!   `runtimeoptions.v1.Options`, whose `ConfigPath` (or `ConfigBody`)
//!   names a TOML file of wasmbox's settings:
//!
//!   ```toml
//!   native = "refuse"          # or "run", the default
//!   BinaryName = "/usr/bin/runc"
//!   SystemdCgroup = true
//!   ```

use std::path::PathBuf;
use std::str::FromStr;

use containerd_shim::protos::protobuf::rt::WireType;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{CodedInputStream, Message};
use containerd_shim::protos::shim::oci::Options as RuncOptions;
use serde::Deserialize;

use super::{ContainerError, Result};

/// The type URL of CRI's options for runtimes it does not know.
const RUNTIME_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";

/// The type URL of runc's options. Compared as a name, not through the
/// message's protobuf descriptor: building that descriptor would keep its
/// parsed proto file on the heap of every idle shim.
const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";

/// Whether `any` holds a message of type `name`: containerd's `typeurl`
/// writes bare names, protobuf's `Any::pack` prefixes a host
/// (`type.googleapis.com/...`).
fn any_is(any: &Any, name: &str) -> bool {
    any.type_url.rsplit('/').next() == Some(name)
}

/// Whether native containers run (through runc) or are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NativePolicy {
    #[default]
    Run,
    Refuse,
}

impl FromStr for NativePolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "run" => Ok(NativePolicy::Run),
            "refuse" => Ok(NativePolicy::Refuse),
            other => Err(format!("{other:?} is neither \"run\" nor \"refuse\"")),
        }
    }
}

/// What the options say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeOptions {
    #[serde(default)]
    pub native: NativePolicy,
    /// runc's binary; `runc` on the shim's PATH (containerd's) if unset.
    #[serde(rename = "BinaryName", default)]
    pub runc_binary: Option<PathBuf>,
    #[serde(rename = "SystemdCgroup", default)]
    pub systemd_cgroup: bool,
}

impl RuntimeOptions {
    /// Reads the options of a Create request; an unreadable settings file
    /// is an error that names it.
    pub fn from_request(options: Option<&Any>) -> Result<Self> {
        let Some(any) = options else {
            return Ok(Self::default());
        };
        if any_is(any, RUNC_OPTIONS_TYPE) {
            let runc = RuncOptions::parse_from_bytes(&any.value)
                .map_err(|e| ContainerError::InvalidArgument(format!("runtime options: {e}")))?;
            return Ok(Self {
                native: NativePolicy::Run,
                runc_binary: Some(runc.binary_name)
                    .filter(|b| !b.is_empty())
                    .map(PathBuf::from),
                systemd_cgroup: runc.systemd_cgroup,
            });
        }
        if any_is(any, RUNTIME_OPTIONS_TYPE) {
            let (path, body) = runtime_options(&any.value)?;
            let (text, source) = if !body.is_empty() {
                (
                    String::from_utf8_lossy(&body).into_owned(),
                    "ConfigBody".to_string(),
                )
            } else if !path.is_empty() {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ContainerError::InvalidArgument(format!(
                        "runtime option ConfigPath {path}: {e}"
                    ))
                })?;
                (text, format!("runtime option ConfigPath {path}"))
            } else {
                return Ok(Self::default());
            };
            return toml::from_str(&text)
                .map_err(|e| ContainerError::InvalidArgument(format!("{source}: {e}")));
        }
        Ok(Self::default())
    }
}

/// `config_path` (2) and `config_body` (3) of a `runtimeoptions.v1.Options`,
/// a message this crate has no type for.
fn runtime_options(bytes: &[u8]) -> Result<(String, Vec<u8>)> {
    let bad = |e: containerd_shim::protos::protobuf::Error| {
        ContainerError::InvalidArgument(format!("runtime options: {e}"))
    };
    let mut input = CodedInputStream::from_bytes(bytes);
    let (mut path, mut body) = (String::new(), Vec::new());
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(bad)? {
        match tag {
            18 => path = input.read_string().map_err(bad)?,
            26 => body = input.read_bytes().map_err(bad)?,
            _ => {
                let wire = WireType::new(tag & 7).ok_or_else(|| {
                    ContainerError::InvalidArgument(format!("runtime options: bad tag {tag}"))
                })?;
                input.skip_field(wire).map_err(bad)?
            }
        }
    }
    Ok((path, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::MessageFull;

    #[test]
    fn the_runc_options_name_is_the_descriptors() {
        assert_eq!(RUNC_OPTIONS_TYPE, RuncOptions::descriptor().full_name());
        let packed = Any::pack(&RuncOptions::new()).unwrap();
        assert!(any_is(&packed, RUNC_OPTIONS_TYPE), "{}", packed.type_url);
        assert!(!any_is(&packed, RUNTIME_OPTIONS_TYPE));
    }

    #[test]
    fn a_settings_file_and_runc_options_are_read() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "native = \"refuse\"\nBinaryName = \"/opt/runc\"\n",
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        // runtimeoptions.v1.Options { config_path: path }
        let mut value = vec![18, path.len() as u8];
        value.extend_from_slice(path.as_bytes());
        let any = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value,
            ..Default::default()
        };
        let options = RuntimeOptions::from_request(Some(&any)).unwrap();
        assert_eq!(options.native, NativePolicy::Refuse);
        assert_eq!(options.runc_binary, Some(PathBuf::from("/opt/runc")));

        std::fs::write(file.path(), "native = \"sometimes\"\n").unwrap();
        let err = RuntimeOptions::from_request(Some(&any))
            .unwrap_err()
            .to_string();
        assert!(err.contains(path) && err.contains("native"), "{err}");
    }
}
