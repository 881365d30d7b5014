#!/usr/bin/env bash
# Builds kube-apiserver, etcd, kubectl and helm from the Go module proxy into a cache keyed by
# this module's go.mod/go.sum (and this script), so a fresh clone on a machine that
# built them once starts in seconds. Prints the cache folder as the last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kube_version=v1.36.3
helm_version=v3.22.0
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" "$here"/*/main.go | sha256sum | cut -c1-16)
cache=${FLEETGATE_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetgate/testenv}/$key
mkdir -p "$cache"

log() { echo "testenv: $*" >&2; }

# The API server reports this version on /version; Helm checks it against kubeVersion.
minor=${kube_version#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build() {
  local name=$1; shift
  if [ -x "$cache/$name" ]; then return; fi
  log "building $name (first time on this machine; takes several minutes)"
  local started=$SECONDS
  "$@"
  log "built $name in $((SECONDS - started))s"
}

cd "$here"
build etcd go build -trimpath -ldflags "-s -w" -o "$cache/etcd.tmp" ./etcd
[ -e "$cache/etcd.tmp" ] && mv "$cache/etcd.tmp" "$cache/etcd"
build kube-apiserver go build -trimpath -ldflags "$ldflags" -o "$cache/kube-apiserver.tmp" ./kube-apiserver
[ -e "$cache/kube-apiserver.tmp" ] && mv "$cache/kube-apiserver.tmp" "$cache/kube-apiserver"
build kubectl go build -trimpath -ldflags "$ldflags" -o "$cache/kubectl.tmp" ./kubectl
[ -e "$cache/kubectl.tmp" ] && mv "$cache/kubectl.tmp" "$cache/kubectl"
# Helm has its own dependency set: go install builds it from its own go.mod, untouched by ours.
build helm env GOBIN="$cache/helm.bin" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$helm_version"
if [ -e "$cache/helm.bin/helm" ]; then mv "$cache/helm.bin/helm" "$cache/helm"; rmdir "$cache/helm.bin"; fi
echo "$cache"
