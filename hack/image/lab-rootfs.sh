#!/usr/bin/env bash
# Turns a root filesystem hack/image/rootfs.sh laid out into the lab provider's: adds the
# programs hack/image/spec's LAB_PROGRAMS names, each at /usr/local/bin/<program> (the
# image's PATH) with exactly the shared libraries it loads and its package's copyright
# file, and the folders the lab writes (/run, /etc/netns, /etc/fleetgate). Still no shell
# and no package manager. Every file's time is SOURCE_DATE_EPOCH, as in rootfs.sh.
#
#   hack/image/lab-rootfs.sh ROOTFS
set -euo pipefail
out=${1:?usage: lab-rootfs.sh ROOTFS}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/image/spec
. "$here/spec"
# shellcheck source=hack/image/files.sh
. "$here/files.sh"
epoch=${SOURCE_DATE_EPOCH:-0}

packages=()
for entry in "${LAB_PROGRAMS[@]}"; do
  package=${entry%%:*} program=${entry#*:}
  path=$(command -v "$program") ||
    { echo "lab-rootfs: $program not found: install $package (hack/install-deps.sh)" >&2; exit 1; }
  [ "$(package_of "$path")" = "$package" ] ||
    { echo "lab-rootfs: $path is not from $package" >&2; exit 1; }
  install -D -m 0755 "$(readlink -f "$path")" "$out/usr/local/bin/$program"
  libraries=$(install_libraries "$path" "$out")
  # shellcheck disable=SC2206 # one package a line
  packages+=("$package" $libraries)
done
install_copyrights "$out" "${packages[@]}"
# /run holds the network namespaces' mounts and the lab's state (an emptyDir in the
# chart); `ip netns exec` mounts /etc/netns/<name>/fleetgate over /etc/fleetgate.
install -d -m 0755 "$out/run" "$out/etc/netns" "$out/etc/fleetgate"

# Smoke test: each program starts with only what is here.
chroot "$out" /usr/local/bin/ip -V >&2
chroot "$out" /usr/local/bin/bird --version >&2
chroot "$out" /usr/local/bin/keepalived --version >&2
chroot "$out" /usr/local/bin/ping -V >&2

find "$out" -exec touch -h -d "@$epoch" {} +
