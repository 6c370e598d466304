//! The packer's command line.

use std::path::PathBuf;

use crate::PackError;

pub const USAGE: &str = "usage: wasmbox-image --wasm FILE --name REF --output TAR \
[--entrypoint /app.wasm] [--env NAME=value]... [--arg ARG]... [--platform OS/ARCH] \
[--artifact wasm|component|application-wasm [--artifact-config wasm|oci]] \
[--annotation KEY=VALUE]... [--label KEY=VALUE]... \
[--native FILE [--native-platform linux/amd64] [--native-entrypoint /app]] \
(SOURCE_DATE_EPOCH pins the creation time)";

/// What to pack, and how.
pub struct Options {
    pub wasm: PathBuf,
    pub name: String,
    pub output: PathBuf,
    pub entrypoint: String,
    pub env: Vec<String>,
    pub args: Vec<String>,
    /// `wasi/wasm` unless told otherwise; `linux/amd64` packs a native
    /// static binary instead (the benchmark's runc baseline).
    pub platform: (String, String),
    /// Pack as a wasm OCI artifact, with this layer media type.
    pub artifact: Option<&'static str>,
    /// The artifact's config: the CNCF wasm config, or an OCI image config.
    pub oci_config: bool,
    /// `--annotation KEY=VALUE`: on the manifest and its index entry
    /// (`org.opencontainers.image.source`, `.version`, …).
    pub annotations: Vec<(String, String)>,
    /// `--label KEY=VALUE`: in the image config, as `docker inspect` shows.
    pub labels: Vec<(String, String)>,
    /// `--native FILE`: a native binary packed beside the wasm, for
    /// `--native-platform` (default `linux/amd64`) with its entrypoint at
    /// `--native-entrypoint` (default `/app`): one tag for both worlds.
    pub native: Option<NativeOptions>,
    /// When the image was made, in seconds since the epoch: the config's
    /// `created` and the `org.opencontainers.image.created` annotation.
    /// See [`created_now_or_from_env`].
    pub created: i64,
}

/// The native side of a multi-platform image.
pub struct NativeOptions {
    pub binary: PathBuf,
    pub platform: (String, String),
    pub entrypoint: String,
}

/// The reproducible-builds variable that pins an image's creation time.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// `SOURCE_DATE_EPOCH` when set (so that two builds give the same bytes),
/// else now.
pub fn created_now_or_from_env() -> Result<i64, PackError> {
    match std::env::var(SOURCE_DATE_EPOCH) {
        Ok(value) => value.trim().parse().map_err(|_| {
            bad(format!(
                "{SOURCE_DATE_EPOCH}={value:?} is not a number of seconds since 1970"
            ))
        }),
        Err(_) => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)),
    }
}

fn os_arch(flag: &str, value: &str) -> Result<(String, String), PackError> {
    value
        .split_once('/')
        .filter(|(os, arch)| !os.is_empty() && !arch.is_empty())
        .map(|(os, arch)| (os.to_string(), arch.to_string()))
        .ok_or_else(|| bad(format!("{flag} {value:?} must be OS/ARCH")))
}

fn absolute(flag: &str, path: String) -> Result<String, PackError> {
    if path.starts_with('/') && path.len() > 1 {
        Ok(path)
    } else {
        Err(bad(format!(
            "{flag} {path:?} must be an absolute path inside the image"
        )))
    }
}

fn key_value(flag: &str, value: &str) -> Result<(String, String), PackError> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(bad(format!("{flag} {value:?} must be KEY=VALUE"))),
    }
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
pub const ARTIFACT_CONFIG: &str = "application/vnd.wasm.config.v0+json";

/// Reads the command line (without the program name): the options, or
/// `None` for `--help`.
pub fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Option<Options>, PackError> {
    let mut wasm = None;
    let mut name = None;
    let mut output = None;
    let mut entrypoint = "/app.wasm".to_string();
    let mut env = Vec::new();
    let mut args = Vec::new();
    let mut platform = ("wasi".to_string(), "wasm".to_string());
    let mut artifact = None;
    let mut oci_config = false;
    let mut annotations = Vec::new();
    let mut labels = Vec::new();
    let mut native = None;
    let mut native_platform = ("linux".to_string(), "amd64".to_string());
    let mut native_entrypoint = "/app".to_string();
    let mut argv = argv.into_iter();
    while let Some(flag) = argv.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let Some(value) = argv.next() else {
            return Err(usage(format!("{flag} needs a value")));
        };
        match flag.as_str() {
            "--wasm" => wasm = Some(PathBuf::from(value)),
            "--name" => name = Some(value),
            "--output" => output = Some(PathBuf::from(value)),
            "--entrypoint" => entrypoint = value,
            "--env" => {
                if !value.contains('=') {
                    return Err(bad(format!("--env {value:?} must be NAME=value")));
                }
                env.push(value)
            }
            "--arg" => args.push(value),
            "--annotation" => annotations.push(key_value(&flag, &value)?),
            "--label" => labels.push(key_value(&flag, &value)?),
            "--native" => native = Some(PathBuf::from(value)),
            "--native-platform" => native_platform = os_arch(&flag, &value)?,
            "--native-entrypoint" => native_entrypoint = absolute(&flag, value)?,
            "--platform" => platform = os_arch(&flag, &value)?,
            "--artifact" => {
                let (_, media_type) = ARTIFACT_LAYERS
                    .iter()
                    .find(|(kind, _)| *kind == value)
                    .ok_or_else(|| {
                        bad(format!(
                            "--artifact {value:?} must be wasm, component or application-wasm"
                        ))
                    })?;
                artifact = Some(*media_type);
            }
            "--artifact-config" => {
                oci_config = match value.as_str() {
                    "wasm" => false,
                    "oci" => true,
                    _ => {
                        return Err(bad(format!(
                            "--artifact-config {value:?} must be wasm or oci"
                        )))
                    }
                }
            }
            other => return Err(usage(format!("unknown argument {other:?}"))),
        }
    }
    let entrypoint = absolute("--entrypoint", entrypoint)?;
    if native.is_some() && (platform.1 != "wasm" || artifact.is_some()) {
        return Err(bad(
            "--native goes with a wasm image (not --artifact, not a native --platform)".into(),
        ));
    }
    Ok(Some(Options {
        wasm: wasm.ok_or_else(|| usage("--wasm is required".into()))?,
        name: name.ok_or_else(|| usage("--name is required".into()))?,
        output: output.ok_or_else(|| usage("--output is required".into()))?,
        entrypoint,
        env,
        args,
        platform,
        artifact,
        oci_config,
        annotations,
        labels,
        native: native.map(|binary| NativeOptions {
            binary,
            platform: native_platform,
            entrypoint: native_entrypoint,
        }),
        created: created_now_or_from_env()?,
    }))
}

fn usage(reason: String) -> PackError {
    PackError::Usage(format!("{reason}\n{USAGE}"))
}

fn bad(reason: String) -> PackError {
    PackError::Usage(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, PackError> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn bad_flags_are_refused_naming_the_flag() {
        let base = ["--wasm", "a.wasm", "--name", "n", "--output", "o.tar"];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(with(&["--env", "NOVALUE"]).starts_with("--env \"NOVALUE\" must be NAME=value"));
        assert!(with(&["--platform", "wasi"]).starts_with("--platform \"wasi\" must be OS/ARCH"));
        assert!(with(&["--platform", "/wasm"]).starts_with("--platform \"/wasm\" must be OS/ARCH"));
        assert!(with(&["--entrypoint", "app.wasm"]).contains("must be an absolute path"));
        assert!(with(&["--entrypoint", "/"]).contains("must be an absolute path"));
        assert!(
            with(&["--artifact", "zip"]).contains("must be wasm, component or application-wasm")
        );
        assert!(with(&["--bogus", "1"]).starts_with("unknown argument \"--bogus\""));
        assert!(with(&["--env"]).starts_with("--env needs a value"));
        assert!(with(&["--label", "novalue"]).starts_with("--label \"novalue\" must be KEY=VALUE"));
        assert!(with(&["--annotation", "=v"]).starts_with("--annotation \"=v\" must be KEY=VALUE"));
        assert!(parse(&["--name", "n"])
            .err()
            .is_some_and(|e| e.to_string().starts_with("--wasm is required")));
        assert!(parse(&["--help"]).unwrap().is_none());
        let options = parse(&base).unwrap().unwrap();
        assert_eq!(options.entrypoint, "/app.wasm");
        assert_eq!(options.platform, ("wasi".to_string(), "wasm".to_string()));
    }
}
