#!/usr/bin/env bash
# Builds the kstatus test helper (main.go, on sigs.k8s.io/cli-utils from the Go module
# proxy) into a cache keyed by its sources, so it is built once per machine. Prints the
# binary's path as the last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" "$here/build.sh" | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/fleetgate/kstatus/$key
if [ ! -x "$cache/kstatus" ]; then
  mkdir -p "$cache"
  echo "kstatus: building the helper (first time on this machine)" >&2
  (cd "$here" && go build -trimpath -ldflags "-s -w" -o "$cache/kstatus.tmp" .)
  mv "$cache/kstatus.tmp" "$cache/kstatus"
fi
echo "$cache/kstatus"
