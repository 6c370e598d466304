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
show ctr run --rm --runtime io.containerd.wasmbox.v1 --annotation wasmbox.io/native=refuse --rootfs "$rootfs" demo-bad /true
"${ctr[@]}" run --rm --runtime io.containerd.wasmbox.v1 --annotation wasmbox.io/native=refuse \
  --rootfs "$rootfs" demo-bad /true || echo "(exit code $?, as expected: /true is not wasm, and native containers were refused)"

# A native program under the same runtime runs through runc, as it would
# in a mixed pod (a mesh proxy, a log agent).
"${ctr[@]}" images import --all-platforms "$repo/target/images/probe.tar" > /dev/null
show ctr run --rm --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/probe:latest demo-native /probe echo hello from a native container, through runc
"${ctr[@]}" run --rm --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/probe:latest demo-native \
  /probe echo hello from a native container, through runc

# A WASI 0.2 component: the same way, exit code included.
"${ctr[@]}" images import --all-platforms "$repo/target/images/cli-p2.tar" > /dev/null
show ctr run --rm --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/cli-p2:latest demo-p2 /app.wasm exit 3
"${ctr[@]}" run --rm --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/cli-p2:latest demo-p2 /app.wasm exit 3 || echo "(exit code $?)"

# A wasi:http component, served in the container; curl from the host.
"${ctr[@]}" images import --all-platforms "$repo/target/images/http-hello.tar" > /dev/null
show ctr run -d --net-host --env WASMBOX_HTTP_ADDR=127.0.0.1:18088 --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/http-hello:latest demo-http
"${ctr[@]}" run -d --net-host --env WASMBOX_HTTP_ADDR=127.0.0.1:18088 --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/http-hello:latest demo-http
for _ in $(seq 1 500); do curl -s -o /dev/null http://127.0.0.1:18088/ && break; sleep 0.02; done
show curl http://127.0.0.1:18088/
curl -sS http://127.0.0.1:18088/
show curl --http2-prior-knowledge -i http://127.0.0.1:18088/slow?ms=200
curl -sS --http2-prior-knowledge -i "http://127.0.0.1:18088/slow?ms=200"
show ctr task kill demo-http "   (SIGTERM: it drains and exits 0)"
"${ctr[@]}" task kill demo-http
for _ in $(seq 1 500); do "${ctr[@]}" task ls | grep -q "demo-http.*STOPPED" && break; sleep 0.02; done
"${ctr[@]}" task ls | grep demo-http
"${ctr[@]}" task delete demo-http > /dev/null
"${ctr[@]}" container delete demo-http

# A wasm OCI artifact: the image's only layer is the .wasm.
"$repo/target/release/wasmbox-image" --wasm "$repo/target/wasm32-wasip1/release/hello.wasm" \
  --name docker.io/wasmbox/hello-artifact:latest --output "$dir/artifact.tar" \
  --artifact wasm --artifact-config oci --arg hello-artifact > /dev/null
"${ctr[@]}" images import --all-platforms "$dir/artifact.tar" > /dev/null
show ctr run --rm --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/hello-artifact:latest demo-artifact
"${ctr[@]}" run --rm --runtime io.containerd.wasmbox.v1 docker.io/wasmbox/hello-artifact:latest demo-artifact
