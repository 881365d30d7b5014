#!/usr/bin/env bash
# Builds Flux's source-controller from the Go module proxy, once per machine, into
# ~/.cache/fleetgate/flux/<version>: the binary and its CRDs (config/crd/bases). The tests
# run it against the test control plane, as a platform team's Flux would run beside
# fleetgate. Prints the cache folder as the last line.
#
# `go install …@version` refuses source-controller: its go.mod replaces its api module
# with ./api, a folder of its own module that the proxy serves apart. So both modules
# are downloaded, put together as they are in the repository, and built there.
set -euo pipefail
version=v1.9.6
artifact=v0.18.0
cache=${XDG_CACHE_HOME:-$HOME/.cache}/fleetgate/flux/$version-$artifact
log() { echo "flux: $*" >&2; }
if [ ! -x "$cache/source-controller" ]; then
  log "building source-controller $version (first time on this machine; takes several minutes)"
  started=$SECONDS
  work=$(mktemp -d)
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  export GOFLAGS=-mod=mod GOMODCACHE=${GOMODCACHE:-$(go env GOMODCACHE)}
  dir_of() { (cd "$work" && go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'); }
  src=$(dir_of "github.com/fluxcd/source-controller@$version")
  api=$(dir_of "github.com/fluxcd/source-controller/api@$version")
  [ -n "$src" ] && [ -n "$api" ] || { log "the Go module proxy did not serve source-controller $version"; exit 1; }
  cp -r "$src" "$work/src"
  chmod -R u+w "$work/src"
  rm -rf "$work/src/api"
  cp -r "$api" "$work/src/api"
  chmod -R u+w "$work/src/api"
  # The Go module proxy this project may use does not serve every version: it refuses
  # github.com/fluxcd/pkg/artifact v0.18.3, which v1.9.6 names; v0.18.0 (the same API,
  # an earlier patch release) it serves.
  (cd "$work/src" && go mod edit -replace "github.com/fluxcd/pkg/artifact=github.com/fluxcd/pkg/artifact@$artifact")
  mkdir -p "$cache.tmp"
  (cd "$work/src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$cache.tmp/source-controller" .)
  cp -r "$work/src/config/crd/bases" "$cache.tmp/crds"
  rm -rf "$cache"
  mv "$cache.tmp" "$cache"
  log "built source-controller $version in $((SECONDS - started))s"
fi
echo "$cache"
