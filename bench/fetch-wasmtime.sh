#!/usr/bin/env bash
# The wasmtime CLI for the benchmark's `wasmtime serve` baseline, at the
# very version of the wasmtime crates wasmbox is built with (Cargo.lock),
# built from crates.io with `cargo install --locked` into
# .cache/wasmtime-cli-VERSION (once; minutes on two cores). Its features
# are what `wasmtime serve` of a component needs, Cranelift and the pooling
# allocator among them, as in the full CLI. Prints the binary's path.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
version="$(awk '/^name = "wasmtime"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$repo/Cargo.lock")"
[[ -n "$version" ]] || { echo "fetch-wasmtime: no wasmtime in Cargo.lock" >&2; exit 1; }
root="$repo/.cache/wasmtime-cli-$version"
binary="$root/bin/wasmtime"
if [[ ! -x "$binary" ]]; then
  echo "fetch-wasmtime: building wasmtime-cli $version from crates.io into $root" >&2
  cargo install --quiet --locked --root "$root" --target-dir "$repo/.cache/wasmtime-cli-build" \
    --no-default-features \
    --features run,serve,cranelift,pooling-allocator,parallel-compilation,cache,logging,wat,component-model,component-model-async \
    "wasmtime-cli@$version" >&2
  rm -rf "$repo/.cache/wasmtime-cli-build"
fi
echo "$binary"
