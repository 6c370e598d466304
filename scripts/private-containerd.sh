#!/usr/bin/env bash
# Starts or stops a private containerd: its own root, state dir, sockets and
# config under DIR, with wasmbox's shim on its PATH. It never touches the
# machine's own containerd.
#
#   scripts/private-containerd.sh start DIR [2.1|1.7|1.6] [cri]
#   scripts/private-containerd.sh stop DIR
#   scripts/private-containerd.sh down DIR   # containerd alone, as on a node
#   scripts/private-containerd.sh up DIR     # whose containerd restarts
#
# `down` stops the containerd process and nothing else: its shims and
# their tasks go on running, as they do when a node's containerd restarts.
# `up` starts it again with the config `start` wrote.
#
# With `cri`, containerd's CRI plugin is on, with wasmbox registered as the
# runtime handler `wasmbox` (and runc as `runc`, and `wasmbox-wasm-only`,
# whose options refuse native containers), pod networking through
# Debian's CNI plugins (a bridge and host-local addresses of its own, in
# DIR), and our local pause image (target/images/pause.tar, imported into
# the k8s.io namespace) as the sandbox image, so no registry is needed. Its
# CRI endpoint is CONTAINERD_ADDRESS too.
#
# `start` returns once containerd answers `ctr version` (or fails after 30 s
# with its log), and leaves DIR/env with the variables to reach it:
#   CONTAINERD_ADDRESS, CTR (the matching ctr), CONTAINERD_BIN_DIR.
# WASMBOX_BIN_DIR (default: target/release of this repo) is where the shim
# and runner are taken from; WASMBOX_CACHE_DIR defaults to DIR/wasm-cache;
# WASMBOX_CONTAINERD_LOG_LEVEL (default debug) is containerd's log level.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
action="${1:?usage: $0 start|stop DIR [version]}"
dir="${2:?usage: $0 start|stop DIR [version]}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

stop_daemon() {
  if [[ -f "$dir/containerd.pid" ]]; then
    local pid
    pid="$(cat "$dir/containerd.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/containerd.pid"
  fi
}

stop() {
  stop_daemon
  # Shims outlive containerd by design; ours are recognised by our address.
  # Runners of this containerd use its cache dir. A shim's runc containers
  # are its children (it is their subreaper): they go first.
  local p cmdline
  for p in /proc/[0-9]*; do
    cmdline="$(tr '\0' ' ' 2>/dev/null < "$p/cmdline")" || continue
    case "$cmdline" in
      *containerd-shim-wasmbox-v1*"-address $dir/containerd.sock"*|*containerd-shim-runc-v2*"-address $dir/containerd.sock"*)
        for child in $(cat "$p"/task/*/children 2>/dev/null); do kill -9 "$child" 2>/dev/null || true; done
        kill -9 "${p#/proc/}" 2>/dev/null || true ;;
      *wasmbox-runner*)
        if tr '\0' '\n' 2>/dev/null < "$p/environ" | grep -qx "WASMBOX_CACHE_DIR=$dir/wasm-cache"; then
          kill -9 "${p#/proc/}" 2>/dev/null || true
        fi ;;
    esac
  done
  # Then what containerd does for a dead shim: `containerd-shim-wasmbox-v1
  # delete` in each bundle left (its runner, rootfs mount and cgroup).
  # Tests check for leftovers before this (assert_nothing_left), so a shim
  # that leaks still fails them; this keeps a failed test's from the node.
  local shim="${WASMBOX_BIN_DIR:-$repo/target/release}/containerd-shim-wasmbox-v1"
  local bundle ns id
  if [[ -x "$shim" ]]; then
    for bundle in "$dir"/state/io.containerd.runtime.v2.task/*/*/; do
      [[ -f "$bundle/config.json" ]] || continue
      bundle="${bundle%/}"
      id="${bundle##*/}"
      ns="$(basename "$(dirname "$bundle")")"
      (cd "$bundle" && "$shim" -namespace "$ns" -id "$id" -address "$dir/containerd.sock" \
        -bundle "$bundle" delete > /dev/null 2>&1) || true
    done
  fi
  # The pod network's bridge, when CRI was on.
  if [[ -f "$dir/cni-bridge" ]]; then
    ip link del "$(cat "$dir/cni-bridge")" 2>/dev/null || true
  fi
  # Rootfs, snapshot and network-namespace mounts under DIR, deepest first.
  awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

# Starts containerd with DIR's config and waits until it answers (at most
# 30 s); false, with its log on stderr, if it does not.
launch() {
  local ctr="$1" sock="$dir/containerd.sock"
  setsid containerd --config "$dir/config.toml" >> "$dir/containerd.log" 2>&1 < /dev/null &
  echo $! > "$dir/containerd.pid"
  for _ in $(seq 300); do
    if "$ctr" --address "$sock" version > /dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "containerd did not come up; its log:" >&2
  tail -n 30 "$dir/containerd.log" >&2
  return 1
}

case "$action" in
  stop) stop; exit 0 ;;
  down) stop_daemon; exit 0 ;;
  up)
    [[ -f "$dir/env" ]] || { echo "$dir has no containerd to bring up: start it first" >&2; exit 1; }
    # shellcheck disable=SC1091
    source "$dir/env"
    export PATH="${WASMBOX_BIN_DIR:-$repo/target/release}:$CONTAINERD_BIN_DIR:$PATH"
    export WASMBOX_CACHE_DIR
    launch "$CTR"
    exit $? ;;
  start) ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac

version="${3:-${WASMBOX_CONTAINERD:-2.1}}"
cri="${4:-}"
bin_dir="$("$repo/scripts/fetch-debian.sh" containerd "$version")/usr/bin"
wasmbox_bin="${WASMBOX_BIN_DIR:-$repo/target/release}"
for b in containerd-shim-wasmbox-v1 wasmbox-runner; do
  [[ -x "$wasmbox_bin/$b" ]] || { echo "missing $wasmbox_bin/$b: build first (make build)" >&2; exit 1; }
done

sock="$dir/containerd.sock"
mkdir -p "$dir/root" "$dir/state"
sandbox_image="docker.io/wasmbox/pause:latest"
cni_bin="/usr/lib/cni"
if [[ "$cri" == cri ]]; then
  [[ -x "$cni_bin/bridge" ]] || { echo "missing $cni_bin/bridge: install containernetworking-plugins (make deps)" >&2; exit 1; }
  [[ -f "$repo/target/images/pause.tar" ]] || { echo "missing target/images/pause.tar: build first (make build)" >&2; exit 1; }
  # A bridge and a subnet of this containerd's own, from its directory's
  # hash, so that parallel test containerds do not share a network. A /21
  # (2,046 addresses) holds `make bench`'s 500-pod density run.
  hash="$(printf '%s' "$dir" | sha256sum | cut -c1-8)"
  bridge="wbx$hash"
  subnet="10.$(( 100 + 0x${hash:0:2} % 100 )).$(( 0x${hash:2:2} & 0xf8 )).0/21"
  echo "$bridge" > "$dir/cni-bridge"
  mkdir -p "$dir/cni/net.d"
  cat > "$dir/cni/net.d/10-wasmbox.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "wasmbox-$hash",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$subnet"}]],
        "dataDir": "$dir/cni/ipam"
      }
    },
    {"type": "loopback"}
  ]
}
JSON
fi
# containerd's log level: debug (the tests read the shims' debug lines),
# unless WASMBOX_CONTAINERD_LOG_LEVEL says otherwise (`make bench` runs it
# at a node's info).
log_level="${WASMBOX_CONTAINERD_LOG_LEVEL:-debug}"
case "$log_level" in
  trace|debug|info|warn|error) ;;
  *) echo "WASMBOX_CONTAINERD_LOG_LEVEL=$log_level: not a containerd log level (trace, debug, info, warn, error)" >&2; exit 2 ;;
esac
# The config: what every version and mode shares, then the CRI plugin's
# settings when it is on (config version 3 for containerd 2.x, 2 before).
disabled=(
  io.containerd.internal.v1.opt
  io.containerd.snapshotter.v1.btrfs
  io.containerd.snapshotter.v1.zfs
  io.containerd.snapshotter.v1.devmapper
)
if [[ "$version" == 2.* ]]; then
  config_version=3
  disabled+=(io.containerd.nri.v1.nri io.containerd.snapshotter.v1.erofs io.containerd.differ.v1.erofs)
  [[ "$cri" == cri ]] || disabled+=(io.containerd.grpc.v1.cri io.containerd.cri.v1.runtime io.containerd.cri.v1.images)
else
  config_version=2
  disabled+=(io.containerd.snapshotter.v1.aufs)
  [[ "$cri" == cri ]] || disabled+=(io.containerd.grpc.v1.cri)
fi
{
  echo "version = $config_version"
  echo "root = \"$dir/root\""
  echo "state = \"$dir/state\""
  echo "disabled_plugins = ["
  printf '  "%s",\n' "${disabled[@]}"
  echo "]"
  cat <<TOML
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = "$dir/debug.sock"
  level = "$log_level"
[metrics]
  address = ""
TOML
  if [[ "$cri" == cri && "$config_version" == 3 ]]; then
    cat <<TOML
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "$sandbox_image"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["$cni_bin"]
  conf_dir = "$dir/cni/net.d"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmbox]
  runtime_type = "io.containerd.wasmbox.v1"
  pod_annotations = ["wasmbox.io/*"]
  container_annotations = ["wasmbox.io/*"]
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmbox-wasm-only]
  runtime_type = "io.containerd.wasmbox.v1"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmbox-wasm-only.options]
  native = "refuse"
TOML
  elif [[ "$cri" == cri ]]; then
    # containerd 1.6 passes a runtime's options only as a file to read
    # (ConfigPath); 2.x passes the table itself (ConfigBody), as above.
    printf 'native = "refuse"\n' > "$dir/wasm-only.toml"
    cat <<TOML
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$sandbox_image"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$cni_bin"
  conf_dir = "$dir/cni/net.d"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox]
  runtime_type = "io.containerd.wasmbox.v1"
  pod_annotations = ["wasmbox.io/*"]
  container_annotations = ["wasmbox.io/*"]
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox-wasm-only]
  runtime_type = "io.containerd.wasmbox.v1"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox-wasm-only.options]
  ConfigPath = "$dir/wasm-only.toml"
TOML
  fi
} > "$dir/config.toml"

export PATH="$wasmbox_bin:$bin_dir:$PATH"
export WASMBOX_CACHE_DIR="${WASMBOX_CACHE_DIR:-$dir/wasm-cache}"
if launch "$bin_dir/ctr"; then
  if [[ "$cri" == cri ]]; then
    "$bin_dir/ctr" --address "$sock" -n k8s.io images import "$repo/target/images/pause.tar" > /dev/null
  fi
  cat > "$dir/env" <<ENV
CONTAINERD_ADDRESS=$sock
CTR=$bin_dir/ctr
CONTAINERD_BIN_DIR=$bin_dir
WASMBOX_CACHE_DIR=$WASMBOX_CACHE_DIR
ENV
  exit 0
fi
stop
exit 1
