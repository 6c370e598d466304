#!/usr/bin/env bash
# yosys for WASI (a 30 MB C++ program, wasm32-wasip1) for the benchmark's
# large-module first start: the npm package @yowasp/yosys, unpacked into
# .cache/yosys (once). Prints the path of its core module.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
version="0.55.944"
dir="$repo/.cache/yosys-$version"
module="$dir/package/gen/yosys.core.wasm"
if [[ ! -f "$module" ]]; then
  command -v npm > /dev/null || { echo "fetch-yosys: npm is needed to fetch @yowasp/yosys" >&2; exit 1; }
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  (cd "$dir.tmp" && npm pack --silent "@yowasp/yosys@$version" > /dev/null && tar xzf "yowasp-yosys-$version.tgz")
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
fi
echo "$module"
