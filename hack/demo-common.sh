# Sourced by the demos (hack/demo.sh, hack/demo-environments.sh): the project root as the
# working directory, how headings and commands are shown, the local control plane's
# binaries on PATH, and $fleetgate, built unless FLEETGATE_BIN names one.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ -t 1 ]; then bold=$'\033[1m' dim=$'\033[2m' off=$'\033[0m'; else bold="" dim="" off=""; fi
heading() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
show() { printf '%s$ %s%s\n' "$dim" "$*" "$off"; "$@"; }

heading "Building fleetgate and the local control plane (the first time takes several minutes)"
hack/install-deps.sh --no-browser
bin=$(hack/testenv/build.sh | tail -n 1)
export PATH="$bin:$PATH"
# FLEETGATE_BIN: a fleetgate binary already built (the end-to-end tests of the demos pass it).
fleetgate=${FLEETGATE_BIN:-}
if [ -z "$fleetgate" ]; then
  cargo build --quiet --bin fleetgate --bin kubectl-fleet
  target=${CARGO_TARGET_DIR:-$root/target}
  case "$target" in /*) ;; *) target="$root/$target" ;; esac
  fleetgate="$target/debug/fleetgate"
fi
