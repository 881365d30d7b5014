#!/usr/bin/env bash
# Installs checkov (the infrastructure-as-code policy scanner) from PyPI into a venv under
# ~/.cache/fleetgate/tools/checkov-<version>, once per machine. Prints the path of the
# checkov executable as the last line.
set -euo pipefail
version=3.3.30
cache=${XDG_CACHE_HOME:-$HOME/.cache}/fleetgate/tools
venv="$cache/checkov-$version"
if [ ! -e "$venv/.installed" ]; then
  echo "tools: installing checkov $version from PyPI (first time on this machine)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
    "checkov==$version" >&2; then
    rm -rf "$venv"
    exit 1
  fi
  touch "$venv/.installed"
fi
echo "$venv/bin/checkov"
