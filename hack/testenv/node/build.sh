#!/usr/bin/env bash
# Builds the test node from the Go module proxy: kubelet, kube-scheduler,
# kube-controller-manager and kube-proxy at the control plane's version (this module),
# containerd, runc and kube-router at the versions below (each from its own go.mod, with
# go install), and the pause binary from the kubernetes module's own pause.c. The cache is keyed by
# this module's go.mod/go.sum, this script and the mains, so a fresh clone on a machine
# that built them once starts in seconds. Prints the cache folder as the last line.
#
# Kubernetes 1.36 needs a container runtime newer than Debian 12's containerd 1.6, so
# containerd and runc are built here too; the CNI plugins are Debian's
# (containernetworking-plugins, installed by hack/install-deps.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kube_version=v1.36.3
containerd_version=v2.4.2
runc_version=v1.5.3
# kube-router's network policy controller (iptables and ipset): NetworkPolicy enforced on
# the test node. v2.1.0 is the newest release the Go module proxy serves.
kube_router_version=v2.1.0
# The pause image tag containerd 2.4 and kubeadm 1.36 expect.
pause_version=3.10.2
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" "$here"/*/main.go | sha256sum | cut -c1-16)
cache=${FLEETGATE_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetgate/testenv}/node-$key
mkdir -p "$cache"

log() { echo "testenv-node: $*" >&2; }

minor=${kube_version#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# build NAME COMMAND...: runs COMMAND (which writes $cache/NAME.tmp) unless NAME is cached.
build() {
  local name=$1; shift
  if [ -x "$cache/$name" ]; then return; fi
  log "building $name (first time on this machine; takes minutes)"
  local started=$SECONDS
  "$@"
  mv "$cache/$name.tmp" "$cache/$name"
  log "built $name in $((SECONDS - started))s"
}

# go_install NAME CGO_ENABLED PACKAGE@VERSION [go build flags...]: go install (from the
# package's own go.mod) into a scratch GOBIN.
go_install() {
  local name=$1 cgo=$2 pkg=$3; shift 3
  local gobin="$cache/$name.bin"
  rm -rf "$gobin"
  CGO_ENABLED=$cgo GOBIN=$gobin go install -trimpath "$@" "$pkg"
  mv "$gobin/$(basename "${pkg%@*}")" "$cache/$name.tmp"
  rmdir "$gobin"
}

cd "$here"
for component in kubelet kube-scheduler kube-controller-manager kube-proxy; do
  build "$component" go build -trimpath -ldflags "$ldflags" -o "$cache/$component.tmp" "./$component"
done

# containerd as its release is built (static, no btrfs headers needed); the shim without cgo.
ctr_ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$containerd_version"
for component in containerd ctr containerd-shim-runc-v2; do
  build "$component" go_install "$component" 0 \
    "github.com/containerd/containerd/v2/cmd/$component@$containerd_version" \
    -tags "urfave_cli_no_docs no_btrfs" -ldflags "$ctr_ldflags"
done

# runc with seccomp (cgo, libseccomp-dev), without the optional Rust libpathrs.
build runc go_install runc 1 "github.com/opencontainers/runc@$runc_version" \
  -tags "seccomp urfave_cli_no_docs" -ldflags "-s -w -X main.version=${runc_version#v}"

build kube-router go_install kube-router 0 \
  "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$kube_router_version" \
  -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$kube_router_version"

# The pause container's binary, from the kubernetes module's own source, static.
pause_src=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
build pause gcc -Os -static -Wall -Werror -DVERSION="v$pause_version-fleetgate" -o "$cache/pause.tmp" "$pause_src"

echo "$cache"
