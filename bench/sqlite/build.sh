#!/usr/bin/env bash
# Builds the SQLite shell (Debian's sqlite3 3.40.1 source) for wasm32-wasip1
# with Debian's clang, lld and wasi-libc: the "large real program" of the
# benchmark. The source comes from Debian's archive through a private
# deb-src list under the cache dir; the machine's apt setup is untouched.
#
# It also builds the same shell natively, static with musl, for the runc
# row of the same table.
#
#   bench/sqlite/build.sh OUT.wasm OUT-NATIVE
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:?usage: $0 OUT.wasm OUT-NATIVE}"
native="${2:?usage: $0 OUT.wasm OUT-NATIVE}"
cache="${WASMBOX_CACHE:-$repo/.cache}"
if [[ -s "$out" && -s "$native" ]]; then exit 0; fi

src_root="$cache/sqlite-src"
if [[ ! -f "$src_root/sqlite3.c" ]]; then
  apt_dir="$cache/apt-src-bookworm"
  mkdir -p "$apt_dir/lists/partial" "$src_root.tmp"
  chmod -R a+rwX "$apt_dir" "$src_root.tmp"
  printf 'deb-src http://deb.debian.org/debian bookworm main\n' > "$apt_dir/sources.list"
  apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "APT::Get::List-Cleanup=0"
    -o "Debug::NoLocking=1"
  )
  apt-get -qq "${apt_opts[@]}" update >&2
  ( cd "$src_root.tmp" && apt-get -qq "${apt_opts[@]}" --download-only source sqlite3 >&2 2>/dev/null )
  tar -C "$src_root.tmp" -xf "$src_root.tmp"/sqlite3_*.orig.tar.xz
  tree="$(find "$src_root.tmp" -maxdepth 1 -type d -name 'sqlite3-*' | head -1)"
  # The amalgamation (one sqlite3.c) is generated with tclsh.
  ( cd "$tree" && ./configure --disable-tcl > /dev/null && make sqlite3.c shell.c > /dev/null )
  rm -rf "$src_root"
  mkdir -p "$src_root"
  cp "$tree/sqlite3.c" "$tree/sqlite3.h" "$tree/shell.c" "$src_root/"
  rm -rf "$src_root.tmp"
fi

here="$repo/bench/sqlite"
mkdir -p "$(dirname "$out")"
clang --target=wasm32-wasi -O2 \
  -I"$here/include" -include "$here/wasi-compat.h" -I"$src_root" \
  -D_WASI_EMULATED_MMAN -D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_PROCESS_CLOCKS -D_WASI_EMULATED_GETPID \
  -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_WAL -DSQLITE_OMIT_SHARED_CACHE \
  -DSQLITE_OMIT_RANDOMNESS -DSQLITE_NOHAVE_SYSTEM -DSQLITE_OMIT_POPEN -DSQLITE_DEFAULT_LOCKING_MODE=1 \
  "$src_root/sqlite3.c" "$src_root/shell.c" \
  -lwasi-emulated-mman -lwasi-emulated-signal -lwasi-emulated-process-clocks -lwasi-emulated-getpid \
  -o "$out.tmp"
mv "$out.tmp" "$out"

mkdir -p "$(dirname "$native")"
musl-gcc -static -O2 -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -I"$src_root" \
  "$src_root/sqlite3.c" "$src_root/shell.c" -lm -o "$native.tmp"
mv "$native.tmp" "$native"
