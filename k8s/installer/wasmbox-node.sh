#!/usr/bin/env bash
# Installs wasmbox on a Kubernetes node, or removes it again:
#
#   wasmbox-node.sh install     # or: uninstall
#
# 1. Copies containerd-shim-wasmbox-v1 and wasmbox-runner into the node's
#    /usr/local/bin (each by a rename, so a shim that is running is never
#    overwritten in place).
# 2. Adds the runtime handler `wasmbox` to containerd's config: one block
#    between `# BEGIN wasmbox` and `# END wasmbox` markers, appended to the
#    file; every other setting stays as it is. The block is for config
#    version 3 (containerd 2.x) if the file says `version = 3`, else for
#    version 2 (1.6, 1.7; 2.x migrates it). A missing file is created with
#    the block alone.
# 3. Restarts containerd, only if something changed: running it twice
#    changes nothing the second time.
#
# `uninstall` removes exactly that block and the two binaries, and restarts
# containerd. Running containers keep running: their shims are separate
# processes.
#
# Environment:
#   HOST_ROOT          the node's root filesystem (default /; the DaemonSet
#                      mounts it at /host)
#   SOURCE_DIR         where the binaries to install are (default: this
#                      script's directory)
#   CONTAINERD_CONFIG  containerd's config, inside HOST_ROOT (default
#                      /etc/containerd/config.toml; k3s: see k8s/README.md)
#   CONTAINERD_CONFIG_VERSION  2 or 3, for a config that does not say
#                      (k3s's templates: 3 for k3s with containerd 2)
#   RESTART_CMD        how to restart containerd (default: systemctl in the
#                      node's namespaces, through PID 1: the DaemonSet runs
#                      with hostPID)
set -euo pipefail

action="${1:-}"
host="${HOST_ROOT:-/}"
source_dir="${SOURCE_DIR:-$(cd "$(dirname "$0")" && pwd)}"
config="${host%/}${CONTAINERD_CONFIG:-/etc/containerd/config.toml}"
bin_dir="${host%/}/usr/local/bin"
restart_cmd="${RESTART_CMD:-nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl restart containerd}"
binaries=(containerd-shim-wasmbox-v1 wasmbox-runner)
begin="# BEGIN wasmbox (managed by wasmbox-node.sh)"
end="# END wasmbox"
changed=0

log() { echo "wasmbox-node: $*"; }

# The config without our block.
without_block() {
  [[ -f "$config" ]] || return 0
  awk -v b="$begin" -v e="$end" '$0 == b { skip = 1; next } skip && $0 == e { skip = 0; next } !skip' "$config"
}

block() {
  local version="$1"
  echo "$begin"
  if [[ "$version" == 3 ]]; then
    echo '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmbox]'
  else
    echo '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox]'
  fi
  echo '  runtime_type = "io.containerd.wasmbox.v1"'
  echo '  pod_annotations = ["wasmbox.io/*"]'
  echo '  container_annotations = ["wasmbox.io/*"]'
  echo "$end"
}

# Replaces the config with stdin if that differs; keeps its mode.
write_config() {
  local tmp="$config.wasmbox-tmp"
  cat > "$tmp"
  if [[ -f "$config" ]] && cmp -s "$tmp" "$config"; then
    rm -f "$tmp"
    return 0
  fi
  [[ -f "$config" ]] && chmod --reference="$config" "$tmp"
  mv "$tmp" "$config"
  changed=1
  log "updated $config"
}

install_binaries() {
  mkdir -p "$bin_dir"
  local b
  for b in "${binaries[@]}"; do
    [[ -x "$source_dir/$b" ]] || { log "missing $source_dir/$b"; exit 1; }
    if ! cmp -s "$source_dir/$b" "$bin_dir/$b"; then
      install -m 0755 "$source_dir/$b" "$bin_dir/.$b.wasmbox-tmp"
      mv "$bin_dir/.$b.wasmbox-tmp" "$bin_dir/$b"
      changed=1
      log "installed $bin_dir/$b"
    fi
  done
}

case "$action" in
  install)
    install_binaries
    mkdir -p "$(dirname "$config")"
    version="${CONTAINERD_CONFIG_VERSION:-2}"
    if [[ -z "${CONTAINERD_CONFIG_VERSION:-}" && -f "$config" ]] \
      && grep -Eq '^[[:space:]]*version[[:space:]]*=[[:space:]]*3' "$config"; then
      version=3
    fi
    {
      if [[ -f "$config" ]]; then
        without_block
      else
        echo "version = 2"
      fi
      block "$version"
    } | write_config
    ;;
  uninstall)
    for b in "${binaries[@]}"; do
      if [[ -e "$bin_dir/$b" ]]; then
        rm -f "$bin_dir/$b"
        changed=1
        log "removed $bin_dir/$b"
      fi
    done
    if [[ -f "$config" ]] && grep -qxF "$begin" "$config"; then
      without_block | write_config
    fi
    ;;
  *)
    echo "usage: $0 install|uninstall" >&2
    exit 2
    ;;
esac

if (( changed )); then
  log "restarting containerd: $restart_cmd"
  sh -c "$restart_cmd"
else
  log "nothing to change"
fi
