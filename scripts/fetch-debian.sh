#!/usr/bin/env bash
# Fetches Debian's .debs of what the tests run beside wasmbox and unpacks
# them into a cache dir, never installing them system-wide.
#
#   scripts/fetch-debian.sh containerd 2.1|1.7|1.6 [CACHE_DIR]
#   scripts/fetch-debian.sh docker [CACHE_DIR]
#
# Prints the directory whose usr/ holds what was unpacked:
# - containerd: containerd, ctr and runc in usr/bin. 2.1 comes from Debian
#   sid, 1.7 from trixie, 1.6 from bookworm.
# - docker: sid's docker.io (usr/sbin/dockerd, docker-proxy), docker-cli
#   (usr/bin/docker) and docker-buildx
#   (usr/libexec/docker/cli-plugins/docker-buildx).
# Each suite gets a private sources list and package lists under CACHE_DIR,
# so the machine's apt configuration is untouched.
set -euo pipefail

what="${1:?usage: $0 containerd VERSION | docker}"
shift
case "$what" in
  containerd)
    want="${1:-2.1}"
    shift || true
    case "$want" in
      2.1) suite=sid;      version=2.1.9 ;;
      1.7) suite=trixie;   version=1.7.24 ;;
      1.6) suite=bookworm; version=1.6.20 ;;
      *) echo "fetch-debian: unknown containerd version '$want' (use 2.1, 1.7 or 1.6)" >&2; exit 2 ;;
    esac
    name="containerd-$want"
    wanted=(usr/bin/containerd usr/bin/runc) ;;
  docker)
    name="docker"
    wanted=(usr/sbin/dockerd usr/sbin/docker-proxy usr/bin/docker usr/libexec/docker/cli-plugins/docker-buildx) ;;
  *) echo "fetch-debian: unknown package set '$what' (use containerd or docker)" >&2; exit 2 ;;
esac
cache="${1:-${WASMBOX_CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache}}"

dest="$cache/$name"
have_all=1
for f in "${wanted[@]}"; do [[ -x "$dest/$f" ]] || have_all=0; done
if (( have_all )); then
  echo "$dest"
  exit 0
fi

rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"

# fetch SUITE PACKAGE VERSION_PREFIX: downloads the newest matching .deb of
# PACKAGE from SUITE and unpacks it into $dest.tmp.
fetch() {
  local suite="$1" package="$2" prefix="$3"
  local apt_dir="$cache/apt-$suite"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
  chmod -R a+rwX "$apt_dir" # apt's _apt user downloads into it
  printf 'deb http://deb.debian.org/debian %s main\n' "$suite" > "$apt_dir/sources.list"
  local apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache::Archives=$apt_dir/archives"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Get::List-Cleanup=0"
    -o "Debug::NoLocking=1"
  )
  apt-get -qq "${apt_opts[@]}" update >&2
  local ver
  ver="$(apt-cache "${apt_opts[@]}" madison "$package" | awk -v p="$prefix" '{ if (index($3, p) == 1) { print $3; exit } }')"
  if [[ -z "$ver" ]]; then
    echo "fetch-debian: Debian $suite has no $package $prefix" >&2
    exit 1
  fi
  ( cd "$apt_dir/archives" && apt-get -qq "${apt_opts[@]}" download "$package=$ver" >&2 )
  dpkg -x "$apt_dir/archives/${package}_${ver/*:/}_amd64.deb" "$dest.tmp"
}

case "$what" in
  containerd)
    fetch "$suite" containerd "$version"
    # runc always comes from bookworm: sid's and trixie's need a newer
    # glibc than this machine has.
    fetch bookworm runc ""
    rm -f "$dest.tmp/usr/bin/containerd-shim" "$dest.tmp/usr/bin/containerd-shim-runc-v1" ;;
  docker)
    # Docker 28.5 from sid (its binaries need glibc 2.34, which bookworm
    # has). Its containerd and runc are the private containerd's.
    fetch sid docker.io 28.
    fetch sid docker-cli 28.
    fetch sid docker-buildx "" ;;
esac
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest"
