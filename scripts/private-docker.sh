#!/usr/bin/env bash
# Starts or stops a private Docker Engine on a private containerd: Debian
# sid's dockerd (unpacked into .cache by fetch-debian.sh), with its own
# data-root, exec-root, pidfile and socket under DIR, the containerd image
# store on, wasmbox registered as the runtime `wasmbox`, and its own network
# namespace, so that its bridge (docker0) and iptables rules are its own and
# go with it. It never touches the machine's own Docker or containerd.
#
#   scripts/private-docker.sh start DIR
#   scripts/private-docker.sh stop DIR
#
# `start` uses the private containerd already running in DIR, or starts one
# there (scripts/private-containerd.sh, version WASMBOX_CONTAINERD, default
# 2.1), then starts dockerd, and returns once `docker version` answers (or
# fails after 60 s with its log). DIR/env then also holds:
#   DOCKER_HOST    unix://DIR/docker.sock
#   DOCKER_CONFIG  the CLI's own config dir (with the buildx plugin)
#   DOCKER         the docker CLI
#   DOCKERD_PID    dockerd, whose network namespace published ports are in
#                  (nsenter --net=/proc/$DOCKERD_PID/ns/net curl ...)
# `stop` stops dockerd (which stops its containers), then, if `start`
# started it, the containerd and whatever of it is left
# (private-containerd.sh stop); the network namespace goes with dockerd.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
action="${1:?usage: $0 start|stop DIR}"
dir="${2:?usage: $0 start|stop DIR}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

stop_dockerd() {
  [[ -f "$dir/docker/dockerd.pid" ]] || return 0
  local pid
  pid="$(cat "$dir/docker/dockerd.pid")"
  # dockerd stops its running containers first (10 s each at most, in
  # parallel), then exits.
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/docker/dockerd.pid"
}

case "$action" in
  stop)
    stop_dockerd
    if [[ -f "$dir/docker/own-containerd" ]]; then
      "$repo/scripts/private-containerd.sh" stop "$dir"
    fi
    exit 0 ;;
  start) ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac

docker_root="$("$repo/scripts/fetch-debian.sh" docker)"
mkdir -p "$dir/docker/data" "$dir/docker/exec" "$dir/docker/cli/cli-plugins"
if [[ -f "$dir/docker/dockerd.pid" ]] && kill -0 "$(cat "$dir/docker/dockerd.pid")" 2>/dev/null; then
  echo "a dockerd already runs in $dir: stop it first" >&2
  exit 1
fi
if ! { [[ -f "$dir/containerd.pid" ]] && kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null; }; then
  "$repo/scripts/private-containerd.sh" start "$dir" "${WASMBOX_CONTAINERD:-2.1}"
  touch "$dir/docker/own-containerd"
fi
# shellcheck disable=SC1091
source "$dir/env"
ln -sf "$docker_root/usr/libexec/docker/cli-plugins/docker-buildx" "$dir/docker/cli/cli-plugins/docker-buildx"
cat > "$dir/docker/daemon.json" <<JSON
{
  "data-root": "$dir/docker/data",
  "exec-root": "$dir/docker/exec",
  "pidfile": "$dir/docker/dockerd.pid",
  "hosts": ["unix://$dir/docker.sock"],
  "containerd": "$CONTAINERD_ADDRESS",
  "features": {"containerd-snapshotter": true},
  "runtimes": {"wasmbox": {"runtimeType": "io.containerd.wasmbox.v1"}},
  "userland-proxy-path": "$docker_root/usr/sbin/docker-proxy",
  "log-level": "debug"
}
JSON

# dockerd in a network namespace of its own, with its loopback up: its
# bridge, iptables rules and published ports live and die there. The
# shim, started by containerd in the host's namespace, puts each container
# in the namespace dockerd made for it.
export PATH="$docker_root/usr/sbin:$docker_root/usr/bin:$CONTAINERD_BIN_DIR:$PATH"
setsid unshare --net -- sh -c 'ip link set lo up && exec "$@"' sh \
  dockerd --config-file "$dir/docker/daemon.json" \
  >> "$dir/dockerd.log" 2>&1 < /dev/null &
launcher=$!

docker=("$docker_root/usr/bin/docker" --host "unix://$dir/docker.sock")
for _ in $(seq 600); do
  if DOCKER_CONFIG="$dir/docker/cli" "${docker[@]}" version > /dev/null 2>&1; then
    sed -i '/^DOCKER/d' "$dir/env"
    cat >> "$dir/env" <<ENV
DOCKER_HOST=unix://$dir/docker.sock
DOCKER_CONFIG=$dir/docker/cli
DOCKER=$docker_root/usr/bin/docker
DOCKERD_PID=$launcher
ENV
    exit 0
  fi
  kill -0 "$launcher" 2>/dev/null || break
  sleep 0.1
done
echo "dockerd did not come up; its log:" >&2
tail -n 30 "$dir/dockerd.log" >&2
kill -9 "$launcher" 2>/dev/null || true
if [[ -f "$dir/docker/own-containerd" ]]; then
  "$repo/scripts/private-containerd.sh" stop "$dir"
fi
exit 1
