#!/usr/bin/env bash
# Installs securesystemslib (the DSSE reference implementation of the Secure Systems Lab,
# which in-toto uses) from PyPI into a venv under
# ~/.cache/fleetgate/tools/securesystemslib-<version>, once per machine: the tests check
# fleetgate's signed records with it. Prints the path of hack/tools/dsse-verify.py's
# interpreter as the last line.
set -euo pipefail
version=1.6.0
cryptography=51.0.1
cache=${XDG_CACHE_HOME:-$HOME/.cache}/fleetgate/tools
venv="$cache/securesystemslib-$version"
if [ ! -e "$venv/.installed" ]; then
  echo "tools: installing securesystemslib $version from PyPI (first time on this machine)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
    "securesystemslib==$version" "cryptography==$cryptography" >&2; then
    rm -rf "$venv"
    exit 1
  fi
  touch "$venv/.installed"
fi
echo "$venv/bin/python3"
