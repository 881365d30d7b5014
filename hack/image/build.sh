#!/usr/bin/env bash
# `make image`: the controller's OCI image, built without a container engine or a
# registry. The inputs hack/image/spec names are staged into a fixed folder, built there by
# hack/image/rootfs.sh (as the Dockerfile does), and packed with umoci into an OCI layout;
# skopeo writes it out as an oci-archive for `ctr images import`, `podman load` or
# `skopeo copy` to a registry. Every time in it is the commit's (SOURCE_DATE_EPOCH), so two
# builds of one commit give one digest.
#
#   hack/image/build.sh [REPOSITORY [TAG]]   defaults: fleetgate/fleetgate, Cargo.toml's version
#
# FLEETGATE_IMAGE_FLAVOR=lab-provider builds the lab provider's image instead (default
# repository fleetgate/lab-provider): the same binary, with the programs the lab runs
# (hack/image/lab-rootfs.sh), run as root with `lab-provider` as its command.
#
# Prints `archive=`, `reference=` and, last, `digest=` lines. Cached (staged sources,
# cargo's target folder, the layout) in ${FLEETGATE_IMAGE_CACHE:-~/.cache/fleetgate/image}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
# shellcheck source=hack/image/spec
. "$here/spec"
# shellcheck source=hack/image/oci.sh
. "$here/oci.sh"
log() { echo "image: $*" >&2; }

cd "$repo_root"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
flavor=${FLEETGATE_IMAGE_FLAVOR:-controller}
labels=("${IMAGE_LABELS[@]}")
case $flavor in
  controller) default_repository=fleetgate/fleetgate suffix= ;;
  lab-provider)
    default_repository=fleetgate/lab-provider suffix=-lab-provider
    IMAGE_CMD=$LAB_CMD IMAGE_USER=$LAB_USER
    labels=("${LAB_LABELS[@]}") ;;
  *) log "FLEETGATE_IMAGE_FLAVOR: controller or lab-provider, not $flavor"; exit 2 ;;
esac
repository=${1:-$default_repository}
tag=${2:-$version}
cache=${FLEETGATE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetgate/image}
rootfs=$cache/rootfs$suffix
layout=$cache/oci$suffix
mkdir -p "$cache"
# One build at a time in the cache (tests may ask for the image at once).
exec 8> "$cache/.lock"
flock 8

# The commit the image is of, and its time as every time in the image.
revision=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain -- "${IMAGE_INPUTS[@]}")" ]; then
  revision+="-dirty"
  log "the image's inputs have uncommitted changes: revision $revision"
fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# Exactly the inputs (tracked and new files, not ignored ones), at one path on every
# machine; cp -a keeps their times, so cargo rebuilds only what changed.
rm -rf "$cache/src"
mkdir -p "$cache/src"
git ls-files -z --cached --others --exclude-standard -- "${IMAGE_INPUTS[@]}" |
  xargs -0 -r cp -a --parents -t "$cache/src"
# In an environment of its own: variables of the caller (cargo's, when a test asks for the
# image) would otherwise reach the build scripts and rebuild everything.
cargo_bin=$(dirname "$(command -v cargo)")
(cd "$cache/src" && env -i HOME="$HOME" USER="$(id -un)" \
  PATH="$cargo_bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
  CARGO_TARGET_DIR="$cache/target" hack/image/rootfs.sh "$rootfs")
if [ "$flavor" = lab-provider ]; then
  PATH="$PATH:/usr/sbin:/sbin" hack/image/lab-rootfs.sh "$rootfs"
fi

config=(--config.user "$IMAGE_USER" --config.workingdir "$IMAGE_WORKDIR"
  --config.entrypoint "$IMAGE_ENTRYPOINT" --config.cmd "$IMAGE_CMD")
for e in "${IMAGE_ENV[@]}"; do config+=(--config.env "$e"); done
for l in "${labels[@]}" "org.opencontainers.image.version=$version" \
  "org.opencontainers.image.revision=$revision" "org.opencontainers.image.created=$created"; do
  config+=(--config.label "$l")
done
digest=$(oci_image "$layout" "$tag" "$rootfs" "$created" "${config[@]}")
name=$repository:$tag
# A short name means Docker Hub's namespace, as container runtimes read it.
case ${repository%%/*} in
  *.*|*:*|localhost) full=$name ;;
  *) full=docker.io/$name ;;
esac
archive=$cache/fleetgate$suffix-$tag.oci.tar
oci_archive "$layout" "$tag" "$archive" "$full"
log "built $name ($digest, $(du -h "$archive" | cut -f1) as an archive)"
echo "archive=$archive"
echo "reference=$full"
echo "digest=$digest"
