//! `wasmbox-image`'s library: the command line ([`options`]) and the OCI
//! image layout built from a module's bytes ([`layout`]), with no I/O, so
//! that both can be tested and fuzzed; the binary reads the module and
//! writes the tarball.

pub mod layout;
pub mod options;

pub use layout::image_layout;
pub use options::{
    created_now_or_from_env, parse_args, NativeOptions, Options, SOURCE_DATE_EPOCH, USAGE,
};

/// Why an image cannot be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{0}")]
    Usage(String),
    #[error("{} is not a WebAssembly binary", .0.display())]
    NotWasm(std::path::PathBuf),
    #[error("{0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Tar(#[from] std::io::Error),
}
