#!/usr/bin/env bash
# Builds the release binary from the current directory (a checkout, or the Dockerfile's
# build stage) and lays out the image's root filesystem in OUT: the binary (without its
# debug information), exactly the
# shared libraries it loads (ldd) with the C library's loader, Debian's CA bundle, the
# users, and the Debian copyright files of every package it took a file from. No shell,
# no package manager. Every file's time is SOURCE_DATE_EPOCH, so that the layer is the
# same for the same commit.
#
#   hack/image/rootfs.sh OUT
set -euo pipefail
out=${1:?usage: rootfs.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/image/spec
. "$here/spec"
# shellcheck source=hack/image/files.sh
. "$here/files.sh"
src=$(pwd)
target=${CARGO_TARGET_DIR:-$src/target}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
epoch=${SOURCE_DATE_EPOCH:-0}

# Paths of this machine (the checkout, the registry, the target folder) would otherwise
# end up in panic messages and debug line tables, and differ between two builds.
remap=("$src=/src" "$cargo_home=/cargo" "$target=/target")
RUSTFLAGS="${RUSTFLAGS:-}"; CFLAGS="${CFLAGS:-}"
for m in "${remap[@]}"; do
  RUSTFLAGS+=" --remap-path-prefix=$m"
  CFLAGS+=" -ffile-prefix-map=$m"
done
export RUSTFLAGS CFLAGS
# The compilers see one fixed SOURCE_DATE_EPOCH (for any __DATE__ in C code): the commit's
# would make cargo rebuild libgit2 and everything above it after every commit.
SOURCE_DATE_EPOCH=0 cargo build --release --locked --bin "$IMAGE_BINARY"
binary=$target/release/$IMAGE_BINARY

rm -rf "$out"
mkdir -p "$out"
install -D -m 0755 "$binary" "$out$IMAGE_ENTRYPOINT"
# The release profile keeps line tables for local backtraces; the image keeps the symbols
# (function names in a backtrace) and drops the rest, a fifth of the size.
strip --strip-debug "$out$IMAGE_ENTRYPOINT"

libraries=$(install_libraries "$binary" "$out")
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
# shellcheck disable=SC2086 # one package a line
install_copyrights "$out" $libraries ca-certificates

uid=${IMAGE_USER%%:*}; gid=${IMAGE_USER##*:}
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
  "$uid" "$gid" > "$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:%s:\n' "$gid" > "$out/etc/group"
chmod 0644 "$out/etc/passwd" "$out/etc/group"
install -d -m 0700 -o "$uid" -g "$gid" "$out/home/nonroot"
install -d -m 1777 "$out/tmp"

# Smoke test: the binary starts with only what is here.
chroot "$out" "$IMAGE_ENTRYPOINT" --version >&2

find "$out" -exec touch -h -d "@$epoch" {} +
