#!/usr/bin/env bash
# The demo: a private containerd, the sample images imported, and wasm
# containers run with `ctr run --runtime io.containerd.wasmbox.v1`.
# Everything lives under a temp dir and is stopped and removed at the end.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mktemp -d /tmp/wasmbox-demo.XXXXXX)"
cleanup() { "$repo/scripts/private-containerd.sh" stop "$dir"; rm -rf "$dir"; }
trap cleanup EXIT

"$repo/scripts/private-containerd.sh" start "$dir" "${WASMBOX_CONTAINERD:-2.1}"
# shellcheck disable=SC1091
source "$dir/env"
ctr=("$CTR" --address "$CONTAINERD_ADDRESS")

show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

show ctr images import --all-platforms target/images/hello.tar
"${ctr[@]}" images import --all-platforms "$repo/target/images/hello.tar"

show ctr run --rm --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/hello:latest demo-hello
"${ctr[@]}" run --rm --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/hello:latest demo-hello

show ctr run --rm --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/hello:latest demo-args /app.wasm with my args
"${ctr[@]}" run --rm --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/hello:latest demo-args /app.wasm with my args

rootfs="$dir/rootfs"
mkdir -p "$rootfs"
cp "$repo/target/wasm/c-hello.wasm" "$rootfs/app.wasm"
show ctr run --rm --runtime io.containerd.wasmbox.v1 --rootfs "$rootfs" demo-c /app.wasm a b
"${ctr[@]}" run --rm --runtime io.containerd.wasmbox.v1 --rootfs "$rootfs" demo-c /app.wasm a b

cp /bin/true "$rootfs/true"
show ctr run --rm --runtime io.containerd.wasmbox.v1 --rootfs "$rootfs" demo-bad /true
"${ctr[@]}" run --rm --runtime io.containerd.wasmbox.v1 --rootfs "$rootfs" demo-bad /true || echo "(exit code $?, as expected: /true is not wasm)"
