# oci_image LAYOUT REF ROOTFS CREATED [umoci config flags...]: one OCI image of a single
# layer (ROOTFS, as it is on disk) in the OCI layout LAYOUT, tagged REF, made with umoci;
# CREATED (RFC 3339) is its creation time and that of its history, so that the same ROOTFS
# gives the same digest. Prints the manifest's digest.
oci_image() {
  local layout=$1 ref=$2 rootfs=$3 created=$4; shift 4
  [ -f "$layout/oci-layout" ] || umoci init --layout "$layout"
  umoci rm --image "$layout:$ref" 2>/dev/null || true
  umoci new --image "$layout:$ref"
  umoci insert --image "$layout:$ref" --history.created "$created" \
    --history.created_by "fleetgate hack/image" "$rootfs" /
  umoci config --image "$layout:$ref" --created "$created" --no-history \
    --architecture "$(go env GOARCH 2>/dev/null || echo amd64)" --os linux "$@"
  umoci gc --layout "$layout"
  skopeo inspect --format '{{.Digest}}' "oci:$layout:$ref"
}

# oci_archive LAYOUT REF ARCHIVE NAME: the image REF of LAYOUT as an oci-archive that names
# it NAME (a full reference, e.g. docker.io/fleetgate/fleetgate:0.1.0), as
# `ctr images import`, `podman load` and `skopeo copy oci-archive:` read it.
oci_archive() {
  local layout=$1 ref=$2 archive=$3 name=$4
  rm -f "$archive"
  skopeo copy --quiet "oci:$layout:$ref" "oci-archive:$archive:$name"
}
