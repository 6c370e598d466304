//! The node-wide compiled-module cache.
//!
//! An entry is wasmtime's serialized form of a compiled module, stored as
//! `<sha256 of the .wasm>-<hash of the engine's settings>.cwasm`, so the same
//! bytes compiled by another engine configuration or wasmtime version never
//! share an entry. Entries are written to a temporary file in the same
//! directory and renamed into place, so a reader sees a whole entry or none.
//! An entry that wasmtime refuses to load is deleted and rebuilt.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// Where the cache lives unless `WASMBOX_CACHE_DIR` says otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/wasmbox/cache";
/// The environment variable that moves the cache.
pub const CACHE_DIR_ENV: &str = "WASMBOX_CACHE_DIR";

/// How a module was obtained, for the debug log and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Mapped from an existing entry.
    Hit,
    /// Compiled now and stored.
    Compiled,
    /// Compiled now; the entry could not be stored (the reason was logged).
    CompiledUncached,
}

/// A directory of compiled modules.
pub struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache named by `WASMBOX_CACHE_DIR`, or the default one.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var_os(CACHE_DIR_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR)),
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry path for `wasm` under `engine`.
    pub fn entry_path(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        let digest = Sha256::digest(wasm);
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{}-{:016x}.cwasm", hex(&digest), hasher.finish()))
    }

    /// Loads the compiled form of `wasm`, compiling and storing it on a miss.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Module, CacheOutcome)> {
        let entry = self.entry_path(engine, wasm);
        if entry.is_file() {
            // SAFETY: `deserialize_file` trusts that the file holds code that
            // wasmtime itself produced. Entries in this directory are only
            // ever written by `store` below, from `Module::serialize`, and
            // renamed into place whole; the directory is created 0700 and
            // owned by the user the shim runs as (root), so no other user can
            // plant one. wasmtime still checks the header, its version and
            // the engine's settings, and refuses a mismatch, which we treat
            // as a miss.
            match unsafe { Module::deserialize_file(engine, &entry) } {
                Ok(module) => return Ok((module, CacheOutcome::Hit)),
                Err(e) => {
                    log::warn!(
                        "cache entry {} is unusable, rebuilding: {e:#}",
                        entry.display()
                    );
                    let _ = std::fs::remove_file(&entry);
                }
            }
        }
        let module = Module::new(engine, wasm)?;
        let outcome = match self.store(&entry, &module) {
            Ok(()) => CacheOutcome::Compiled,
            Err(e) => {
                log::warn!(
                    "cannot store compiled module in {}: {e:#}",
                    self.dir.display()
                );
                CacheOutcome::CompiledUncached
            }
        };
        Ok((module, outcome))
    }

    fn store(&self, entry: &Path, module: &Module) -> wasmtime::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let bytes = module.serialize()?;
        let tmp = entry.with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, entry)
        };
        write().inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(module (func (export "_start")))`
    const EMPTY_START: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03,
        0x02, 0x01, 0x00, 0x07, 0x0a, 0x01, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x00,
        0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
    ];

    #[test]
    fn second_load_is_a_hit_and_a_corrupt_entry_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::new(dir.path().join("cache"));
        let engine = crate::engine::new_engine().unwrap();

        let (_, first) = cache.load_or_compile(&engine, EMPTY_START).unwrap();
        assert_eq!(first, CacheOutcome::Compiled);
        let (module, second) = cache.load_or_compile(&engine, EMPTY_START).unwrap();
        assert_eq!(second, CacheOutcome::Hit);
        assert!(module.get_export("_start").is_some());
        // A loaded module maps its entry; entries are only ever replaced
        // by rename, never rewritten in place, so live mappings stay valid.
        drop(module);

        let entry = cache.entry_path(&engine, EMPTY_START);
        let corrupt = dir.path().join("corrupt");
        std::fs::write(&corrupt, b"not a compiled module").unwrap();
        std::fs::rename(&corrupt, &entry).unwrap();
        let (_, third) = cache.load_or_compile(&engine, EMPTY_START).unwrap();
        assert_eq!(third, CacheOutcome::Compiled);
        let entries = std::fs::read_dir(dir.path().join("cache")).unwrap().count();
        assert_eq!(entries, 1, "no temporary files are left behind");
    }
}
