#!/usr/bin/env bash
# Builds Gitea (the forge of the pull-request and commit-status tests) from the Go module
# proxy into a cache keyed by this module's go.mod/go.sum and this script, with SQLite (cgo).
# No front-end assets are built: the API and git over HTTP work without them; the locale
# and mail templates Gitea reads at start are copied from the module next to the binary
# (run it with `[server] STATIC_ROOT_PATH = <that folder>/static`). Prints the binary's
# path as the last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(go -C "$here" list -m -f '{{.Version}}' code.gitea.io/gitea)
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)
cache=${FLEETGATE_GITEA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetgate/gitea}/$version-$key
mkdir -p "$cache"
if [ ! -x "$cache/gitea" ]; then
  echo "gitea: building $version (first time on this machine; takes several minutes)" >&2
  started=$SECONDS
  cd "$here"
  tags="sqlite sqlite_unlock_notify"
  CGO_ENABLED=1 go build -trimpath -tags "$tags" \
    -ldflags "-s -w -X main.Version=${version#v} -X 'main.Tags=$tags'" \
    -o "$cache/gitea.tmp" code.gitea.io/gitea
  mv "$cache/gitea.tmp" "$cache/gitea"
  echo "gitea: built in $((SECONDS - started))s" >&2
fi
if [ ! -d "$cache/static" ]; then
  src=$(go -C "$here" list -m -f '{{.Dir}}' code.gitea.io/gitea)
  mkdir -p "$cache/static.tmp"
  cp -R "$src/options" "$src/templates" "$cache/static.tmp/"
  chmod -R u+w "$cache/static.tmp"
  mv "$cache/static.tmp" "$cache/static"
fi
echo "$cache/gitea"
