#!/usr/bin/env bash
# Installs what building and testing wasmbox needs, and only what is missing:
# Debian packages (clang, lld and wasi-libc for the C sample; protoc for the
# test clients; libseccomp for the runner's filters; iptables for the
# private dockerd's bridge; build tools), the Rust wasm targets, and
# Debian's containerd, runc and Docker unpacked into .cache (never
# installed system-wide).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

# `install-deps.sh bench` adds what only `make bench` needs: wrk.
extra_pkgs=()
[[ "${1:-}" == bench ]] && extra_pkgs=(wrk)
need_pkgs=()
for pkg in clang lld wasi-libc libclang-rt-14-dev-wasm32 protobuf-compiler libseccomp-dev musl-tools tcl util-linux curl iproute2 iptables containernetworking-plugins make gcc pkg-config ca-certificates "${extra_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$pkg")
done
if (( ${#need_pkgs[@]} )); then
  echo "installing Debian packages: ${need_pkgs[*]}"
  sudo_cmd=()
  [[ "$(id -u)" == 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need_pkgs[@]}" > /dev/null
fi

installed_targets="$(rustup target list --installed)"
for target in wasm32-wasip1 wasm32-wasip2; do
  grep -qx "$target" <<< "$installed_targets" || rustup target add "$target"
done

"$repo/scripts/fetch-debian.sh" containerd "${WASMBOX_CONTAINERD:-2.1}" > /dev/null
"$repo/scripts/fetch-debian.sh" docker > /dev/null
