#!/usr/bin/env bash
# The Docker demo: a private dockerd on a private containerd
# (scripts/private-docker.sh), and wasm images built, loaded and run with
# `docker` as a user would: buildx, run, run -d with a published port and
# curl, logs, stop, `docker images`, and one multi-platform tag run both
# ways. Everything lives under a temp dir, in a network namespace of its
# own, and is stopped and removed at the end.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mktemp -d /tmp/wasmbox-docker-demo.XXXXXX)"
cleanup() { "$repo/scripts/private-docker.sh" stop "$dir"; rm -rf "$dir"; }
trap cleanup EXIT

"$repo/scripts/private-docker.sh" start "$dir"
# shellcheck disable=SC1091
source "$dir/env"
export DOCKER_HOST DOCKER_CONFIG
docker() { "$DOCKER" "$@"; }
# Published ports are in dockerd's network namespace.
curl() { nsenter --net="/proc/$DOCKERD_PID/ns/net" curl "$@"; }
show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
cd "$dir"

mkdir -p build
cp "$repo/target/wasm32-wasip1/release/hello.wasm" build/hello.wasm
printf 'FROM scratch\nCOPY hello.wasm /app.wasm\nENTRYPOINT ["/app.wasm"]\n' > build/Dockerfile
show cat Dockerfile
cat build/Dockerfile
show docker buildx build --platform wasi/wasm -t demo/hello:1 .
docker buildx build --progress quiet --platform wasi/wasm -t demo/hello:1 build
show docker run --rm --runtime wasmbox --platform wasi/wasm demo/hello:1 a b
docker run --rm --runtime wasmbox --platform wasi/wasm demo/hello:1 a b

show docker load -i target/images/exit-code.tar
docker load -i "$repo/target/images/exit-code.tar"
show docker run --rm --runtime wasmbox --platform wasi/wasm wasmbox/exit-code 3
docker run --rm --runtime wasmbox --platform wasi/wasm wasmbox/exit-code 3 || echo "(exit code $?)"

show docker load -i target/images/http-hello.tar
docker load -i "$repo/target/images/http-hello.tar"
show docker run -d --name web --runtime wasmbox --platform wasi/wasm -p 127.0.0.1:8080:8080 wasmbox/http-hello
docker run -d --name web --runtime wasmbox --platform wasi/wasm -p 127.0.0.1:8080:8080 wasmbox/http-hello
for _ in $(seq 1 500); do curl -s -o /dev/null http://127.0.0.1:8080/ && break; sleep 0.02; done
show curl http://127.0.0.1:8080/
curl -sS http://127.0.0.1:8080/
show docker logs web
docker logs web
show docker stop web
docker stop web
show docker inspect -f '{{.State.ExitCode}}' web
docker inspect -f '{{.State.ExitCode}}' web
show docker logs --tail 1 web
docker logs --tail 1 web
docker rm web > /dev/null

show docker images
docker images

show SOURCE_DATE_EPOCH=1700000000 wasmbox-image ... twice
for build in a b; do
  SOURCE_DATE_EPOCH=1700000000 "$repo/target/release/wasmbox-image" \
    --wasm "$repo/target/wasm32-wasip1/release/hello.wasm" \
    --name docker.io/demo/dated:1 --output "dated-$build.tar"
done
sha256sum dated-a.tar dated-b.tar
docker load -q -i dated-a.tar
docker image inspect -f '{{.Id}} created {{.Created}}' demo/dated:1

"$repo/target/release/wasmbox-image" --wasm "$repo/target/wasm32-wasip1/release/hello.wasm" \
  --native "$repo/target/native/probe" --native-entrypoint /probe \
  --name docker.io/demo/both:1 --output both.tar > /dev/null
show docker load -i both.tar   "(wasmbox-image --native: wasi/wasm and linux/amd64 under one tag)"
docker load -i both.tar
show docker run --rm --runtime wasmbox --platform wasi/wasm demo/both:1
docker run --rm --runtime wasmbox --platform wasi/wasm demo/both:1
show docker run --rm --platform linux/amd64 demo/both:1 echo hello from the native entry, under runc
docker run --rm --platform linux/amd64 demo/both:1 echo hello from the native entry, under runc
