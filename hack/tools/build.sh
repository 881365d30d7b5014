#!/usr/bin/env bash
# Builds the third-party linters the tests run, from the Go module proxy, once per machine
# into ~/.cache/fleetgate/tools/<name>-<version>. Prints the folder holding them as the
# last line. kube-score lints the chart's manifests offline (it needs no schemas).
set -euo pipefail
cache=${XDG_CACHE_HOME:-$HOME/.cache}/fleetgate/tools
tools=(
  "kube-score github.com/zegl/kube-score/cmd/kube-score@v1.20.0"
)
mkdir -p "$cache/bin"
for entry in "${tools[@]}"; do
  read -r name pkg <<<"$entry"
  version=${pkg##*@}
  if [ ! -x "$cache/$name-$version" ]; then
    echo "tools: building $name $version (first time on this machine)" >&2
    GOBIN="$cache/.gobin-$name" go install -trimpath -ldflags "-s -w" "$pkg"
    mv "$cache/.gobin-$name/$name" "$cache/$name-$version"
    rmdir "$cache/.gobin-$name"
  fi
  ln -sf "../$name-$version" "$cache/bin/$name"
done
echo "$cache/bin"
