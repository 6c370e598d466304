//! The node-wide compiled-module cache.
//!
//! An entry is wasmtime's serialized form of a compiled module or
//! component, stored as
//! `<sha256 of the .wasm>-<hash of the engine's settings>.cwasm`, so the same
//! bytes compiled by another engine configuration or wasmtime version never
//! share an entry. Beside it, `<entry>.sha256` holds the sha256 of the
//! `.cwasm` itself.
//!
//! - **Whole or nothing.** Entries are written to a temporary file in the
//!   same directory, synced, and renamed into place (the checksum last), so
//!   a reader sees a whole entry or none. Entries are never rewritten in
//!   place: a runner that has one mapped keeps valid pages.
//! - **Never run a bad entry.** An entry whose checksum is missing or does
//!   not match (truncated, corrupt), or that wasmtime refuses (another
//!   version or settings), is deleted and rebuilt.
//! - **Compile once.** A miss takes an exclusive lock on `<entry>.lock`,
//!   looks again, and only then compiles: concurrent starts of one module
//!   compile it once and the others load the result.
//! - **Trusted or unused.** Entries are native code. The directory, every
//!   directory above it and each entry must be root's and writable by no
//!   one else; if not, the cache is not used at all (the module is
//!   compiled in memory, and the reason logged), and a bad entry is never
//!   mapped.
//! - **Seccomp programs.** The BPF program of a spec's seccomp profile is
//!   kept here too, as `<sha256 of the profile>.bpf` with its checksum,
//!   under the same trust and whole-or-nothing rules.
//! - **Bounded.** After a store, the oldest entries (by last use; a hit
//!   refreshes the entry's mtime) are evicted until the cache is under its
//!   size limit, `WASMBOX_CACHE_MAX_BYTES` (default 2 GiB). The wasm layers
//!   of OCI artifacts, which the shim keeps here as `<sha256>.wasm`, count
//!   and are evicted the same way (the shim fetches one again when needed).

mod sealed;

use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};
use sealed::{checksum_path, file_sha256, hex};
use sha2::{Digest, Sha256};
use wasmbox_oci::LAYER_EXT;
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

/// The environment variable that bounds the cache's size, in bytes.
pub const CACHE_MAX_ENV: &str = "WASMBOX_CACHE_MAX_BYTES";
/// The default bound: 2 GiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;

const ENTRY_EXT: &str = "cwasm";
/// The extension of the seccomp programs kept here.
const PROGRAM_EXT: &str = "bpf";

/// How a module was obtained, for the debug log and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Mapped from an existing entry.
    Hit,
    /// Compiled now and stored.
    Compiled,
    /// Compiled now; the entry could not be stored (the reason was logged).
    CompiledUncached,
    /// Compiled now, in memory: the cache directory or the entry can be
    /// written by someone other than root, so it is not used at all.
    Untrusted,
    /// Missing, and compiled now by the baseline compiler, in memory; the
    /// optimized code comes later (see [`crate::tiered`]).
    Baseline,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Compiled => "compiled",
            CacheOutcome::CompiledUncached => "compiled-uncached",
            CacheOutcome::Untrusted => "untrusted-cache",
            CacheOutcome::Baseline => "baseline",
        }
    }
}

/// What the cache holds: wasmtime's compiled form of a core module or of a
/// component.
pub trait Compiled: Sized + Send {
    /// Compiles `wasm` (on every core: the engine compiles in parallel).
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self>;
    /// Maps a file that `serialize` wrote.
    ///
    /// # Safety
    /// The file must hold bytes that wasmtime's `serialize` produced and
    /// must not change while the result lives; see [`ModuleCache`]'s
    /// `load`, the only caller, for why its entries meet both.
    unsafe fn deserialize_file(engine: &Engine, path: &Path) -> wasmtime::Result<Self>;
    fn serialize(&self) -> wasmtime::Result<Vec<u8>>;
}

impl Compiled for Module {
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Module::new(engine, wasm)
    }
    unsafe fn deserialize_file(engine: &Engine, path: &Path) -> wasmtime::Result<Self> {
        // SAFETY: passed on to the caller (see the trait).
        unsafe { Module::deserialize_file(engine, path) }
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Module::serialize(self)
    }
}

impl Compiled for Component {
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Component::new(engine, wasm)
    }
    unsafe fn deserialize_file(engine: &Engine, path: &Path) -> wasmtime::Result<Self> {
        // SAFETY: passed on to the caller (see the trait).
        unsafe { Component::deserialize_file(engine, path) }
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Component::serialize(self)
    }
}

/// A directory of compiled modules and components.
pub struct ModuleCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl ModuleCache {
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        Self {
            dir: dir.into(),
            max_bytes,
        }
    }

    /// The cache named by `WASMBOX_CACHE_DIR` and `WASMBOX_CACHE_MAX_BYTES`,
    /// or the defaults.
    pub fn from_env() -> Self {
        let dir = wasmbox_oci::cache_dir();
        let max_bytes = std::env::var(CACHE_MAX_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_CACHE_MAX_BYTES);
        Self::new(dir, max_bytes)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory may be used (see the module's doc).
    pub fn trusted(&self) -> bool {
        wasmbox_oci::trust::ensure_dir(&self.dir).is_ok()
    }

    /// The compiled form of `wasm` if the cache has it, whole and trusted.
    pub fn load_existing<T: Compiled>(&self, engine: &Engine, wasm: &[u8]) -> Option<T> {
        self.load(engine, &self.entry_path(engine, wasm))
    }

    /// The entry path for `wasm` under `engine`.
    pub fn entry_path(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        let digest = Sha256::digest(wasm);
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir.join(format!(
            "{}-{:016x}.{ENTRY_EXT}",
            hex(&digest),
            hasher.finish()
        ))
    }

    /// Loads the compiled form of `wasm`, compiling and storing it on a miss.
    pub fn load_or_compile<T: Compiled>(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(T, CacheOutcome)> {
        if let Err(reason) = wasmbox_oci::trust::ensure_dir(&self.dir) {
            log::warn!(
                "not using the compiled cache {}: {reason}; compiling in memory",
                self.dir.display()
            );
            return Ok((compile_scoped(engine, wasm)?, CacheOutcome::Untrusted));
        }
        let entry = self.entry_path(engine, wasm);
        if let Some(module) = self.load(engine, &entry) {
            return Ok((module, CacheOutcome::Hit));
        }
        // Miss: compile under the entry's lock, unless another runner
        // stored it while we waited.
        let _lock = match self.lock(&entry) {
            Ok(lock) => Some(lock),
            Err(e) => {
                log::warn!("cannot lock {}: {e}; compiling unlocked", entry.display());
                None
            }
        };
        if let Some(module) = self.load(engine, &entry) {
            return Ok((module, CacheOutcome::Hit));
        }
        let module = compile_scoped(engine, wasm)?;
        let outcome = match self.store(&entry, &module) {
            Ok(()) => {
                self.evict_beyond_limit(&entry);
                // Map the stored entry instead of keeping the compiled code
                // in this process's heap: its pages are then shared with
                // every later runner of the module (lower PSS).
                if let Some(mapped) = self.load(engine, &entry) {
                    return Ok((mapped, CacheOutcome::Compiled));
                }
                CacheOutcome::Compiled
            }
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

    /// Whether `path` is root's, writable by no one else, and matches the
    /// checksum stored beside it; a file whose checksum does not match
    /// (truncated, corrupt) is deleted.
    fn verified(&self, path: &Path) -> bool {
        match wasmbox_oci::trust::check_file(path) {
            Ok(()) => {}
            // A miss: the first start of a module on this node.
            Err(wasmbox_oci::trust::FileDistrust::Missing) => return false,
            Err(reason) => {
                log::warn!("not using cache entry {}: {reason}", path.display());
                return false;
            }
        }
        let expected = match std::fs::read_to_string(checksum_path(path)) {
            Ok(sum) => sum,
            // No checksum: no entry yet, or one being written (the checksum
            // is renamed into place last).
            Err(_) => return false,
        };
        match file_sha256(path) {
            Ok(actual) if actual == expected.trim() => true,
            Ok(_) => {
                log::warn!("cache entry {} is corrupt, rebuilding", path.display());
                sealed::remove(path);
                false
            }
            Err(_) => {
                sealed::remove(path);
                false
            }
        }
    }

    /// Loads `entry` if it is whole and wasmtime accepts it; deletes it if
    /// it is there but bad.
    fn load<T: Compiled>(&self, engine: &Engine, entry: &Path) -> Option<T> {
        if !self.verified(entry) {
            return None;
        }
        // SAFETY: `deserialize_file` trusts that the file holds code that
        // wasmtime itself produced, and maps it. Entries in this directory
        // are only written by `store` below, from wasmtime's `serialize` of a
        // module or component, and renamed into place whole; the directory,
        // every directory above it and the entry were just checked to be
        // root's and writable by nobody else (`wasmbox_oci::trust`), so no
        // other user can plant or change one; the checksum just verified
        // matches what `store` wrote, so the file is the one it wrote, not a
        // truncated or corrupted copy; and entries are never modified in place, so the
        // mapping stays valid for the life of the module. wasmtime still
        // checks the header, its version and the engine's settings, and a
        // mismatch is treated as a miss.
        match unsafe { T::deserialize_file(engine, entry) } {
            Ok(module) => {
                wasmbox_oci::mark_used(entry);
                Some(module)
            }
            Err(e) => {
                log::warn!(
                    "cache entry {} is unusable, rebuilding: {e:#}",
                    entry.display()
                );
                sealed::remove(entry);
                None
            }
        }
    }

    /// A seccomp program (see `confine::spec_seccomp`) named `key`: read
    /// from the cache if it is there, whole and trusted, else built and
    /// stored. An untrusted or unwritable cache only costs the build.
    pub fn load_or_store_program<E>(
        &self,
        key: &str,
        build: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, E> {
        let path = self.dir.join(format!("{key}.{PROGRAM_EXT}"));
        let trusted = wasmbox_oci::trust::ensure_dir(&self.dir);
        if trusted.is_ok() && self.verified(&path) {
            if let Ok(bytes) = std::fs::read(&path) {
                wasmbox_oci::mark_used(&path);
                return Ok(bytes);
            }
        }
        let bytes = build()?;
        if trusted.is_ok() {
            if let Err(e) = sealed::write(&path, &bytes) {
                log::warn!("cannot store {}: {e}", path.display());
            }
        }
        Ok(bytes)
    }

    fn lock(&self, entry: &Path) -> std::io::Result<Flock<File>> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(entry.with_extension("lock"))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| errno.into())
    }

    fn store(&self, entry: &Path, module: &impl Compiled) -> wasmtime::Result<()> {
        sealed::write(entry, &module.serialize()?)?;
        Ok(())
    }

    /// Evicts the least recently used entries until the cache fits its
    /// bound; `keep` (the entry just stored) is never evicted.
    fn evict_beyond_limit(&self, keep: &Path) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = dir
            .flatten()
            // Wasm layers the shim fetched from containerd's content store
            // live here too and count against the same bound.
            .filter(|e| {
                e.path()
                    .extension()
                    .is_some_and(|x| x == ENTRY_EXT || x == LAYER_EXT || x == PROGRAM_EXT)
            })
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            log::info!("evicting {} from the compiled cache", path.display());
            sealed::remove(&path);
            total = total.saturating_sub(len);
        }
    }
}

/// Compiles on worker threads of a pool of its own, and waits for them to
/// be gone: the runner must be single-threaded again when it confines
/// itself (capabilities and seccomp filters are per thread).
pub(crate) fn compile_scoped<T: Compiled>(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<T> {
    let workers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let spawned = workers.clone();
    let pool = rayon::ThreadPoolBuilder::new()
        .spawn_handler(move |thread| {
            let handle = std::thread::Builder::new().spawn(|| thread.run())?;
            spawned
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .push(handle);
            Ok(())
        })
        .build();
    let Ok(pool) = pool else {
        // No pool: compile on this thread alone.
        return T::compile(engine, wasm);
    };
    let compiled = pool.install(|| T::compile(engine, wasm));
    drop(pool);
    let handles = std::mem::take(&mut *workers.lock().unwrap_or_else(|e| e.into_inner()));
    for handle in handles {
        let _ = handle.join();
    }
    compiled
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `(module (func (export "_start")))`
    pub(crate) const EMPTY_START: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03,
        0x02, 0x01, 0x00, 0x07, 0x0a, 0x01, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x00,
        0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
    ];

    /// `(module (func (export "_start") nop))`: different bytes.
    const NOP_START: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03,
        0x02, 0x01, 0x00, 0x07, 0x0a, 0x01, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x00,
        0x0a, 0x05, 0x01, 0x03, 0x00, 0x01, 0x0b,
    ];

    fn cache_in(dir: &Path, max: u64) -> ModuleCache {
        ModuleCache::new(dir.join("cache"), max)
    }

    /// Replaces a file the way a crash or bit rot might leave it, but by
    /// rename: rewriting in place would break a live mapping in this process.
    fn replace(path: &Path, bytes: &[u8]) {
        let tmp = path.with_extension("replace");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_second_load_is_a_hit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_in(dir.path(), u64::MAX);
        let engine = crate::engine::new_engine().unwrap();
        let (_, first) = cache
            .load_or_compile::<Module>(&engine, EMPTY_START)
            .unwrap();
        assert_eq!(first, CacheOutcome::Compiled);
        let (module, second) = cache
            .load_or_compile::<Module>(&engine, EMPTY_START)
            .unwrap();
        assert_eq!(second, CacheOutcome::Hit);
        assert!(module.get_export("_start").is_some());
        let names: Vec<String> = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert_eq!(
            names.len(),
            2,
            "entry and checksum, no temporary files: {names:?}"
        );
    }

    #[test]
    fn truncated_corrupt_and_foreign_entries_are_rebuilt_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_in(dir.path(), u64::MAX);
        let engine = crate::engine::new_engine().unwrap();
        cache
            .load_or_compile::<Module>(&engine, EMPTY_START)
            .unwrap();
        let entry = cache.entry_path(&engine, EMPTY_START);
        let good = std::fs::read(&entry).unwrap();

        // Truncated.
        replace(&entry, &good[..good.len() / 2]);
        let (_, outcome) = cache
            .load_or_compile::<Module>(&engine, EMPTY_START)
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Compiled);

        // One flipped bit in the code.
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x10;
        replace(&entry, &flipped);
        let (_, outcome) = cache
            .load_or_compile::<Module>(&engine, EMPTY_START)
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Compiled);

        // Not wasmtime's at all, with a checksum that matches it (as if
        // another version had written it): wasmtime refuses it.
        let junk = b"\x7fELF not a wasmtime artifact".to_vec();
        replace(&entry, &junk);
        replace(
            &checksum_path(&entry),
            hex(&Sha256::digest(&junk)).as_bytes(),
        );
        let (_, outcome) = cache
            .load_or_compile::<Module>(&engine, EMPTY_START)
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Compiled);

        let (_, outcome) = cache
            .load_or_compile::<Module>(&engine, EMPTY_START)
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
    }

    #[test]
    fn concurrent_misses_compile_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::new_engine().unwrap();
        let outcomes: Vec<CacheOutcome> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let engine = engine.clone();
                    let dir = dir.path();
                    s.spawn(move || {
                        cache_in(dir, u64::MAX)
                            .load_or_compile::<Module>(&engine, EMPTY_START)
                            .unwrap()
                            .1
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let compiled = outcomes
            .iter()
            .filter(|o| **o == CacheOutcome::Compiled)
            .count();
        assert_eq!(compiled, 1, "{outcomes:?}");
    }

    #[test]
    fn the_least_recently_used_entry_is_evicted_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::new_engine().unwrap();
        let unbounded = cache_in(dir.path(), u64::MAX);
        unbounded
            .load_or_compile::<Module>(&engine, EMPTY_START)
            .unwrap();
        let first = unbounded.entry_path(&engine, EMPTY_START);
        let one_entry = std::fs::metadata(&first).unwrap().len();
        // Room for one entry only: storing a second evicts the first.
        let bounded = cache_in(dir.path(), one_entry + one_entry / 2);
        let (_, outcome) = bounded
            .load_or_compile::<Module>(&engine, NOP_START)
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Compiled);
        assert!(!first.exists(), "the older entry should be evicted");
        assert!(!checksum_path(&first).exists());
        assert!(bounded.entry_path(&engine, NOP_START).exists());
    }
}
