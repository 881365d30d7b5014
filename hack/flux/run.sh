#!/usr/bin/env bash
# Flux's source-controller (built by hack/flux/build.sh) against a test control plane:
# its CRDs installed, the controller watching every namespace, serving artifacts on a
# loopback port it advertises as such.
#
#   hack/flux/run.sh start KUBECONFIG [--until-exit PID]   prints FOLDER (holding `env`) last
#   hack/flux/run.sh stop FOLDER
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "flux: $*" >&2; }
# shellcheck source=hack/lib.sh
. "$here/../lib.sh"

stop() {
  local dir=${1:?usage: run.sh stop FOLDER}
  [ -f "$dir/.fleetgate-flux" ] || { log "$dir is not a source-controller folder"; return 1; }
  stop_pids "$dir" watchdog source-controller
  rm -rf "$dir"
}

start() {
  local kubeconfig=${1:?usage: run.sh start KUBECONFIG [--until-exit PID]}; shift
  local owner=""
  while [ $# -gt 0 ]; do
    case $1 in
      --until-exit) owner=${2:?--until-exit needs a pid}; shift 2 ;;
      *) log "unknown option $1"; return 2 ;;
    esac
  done
  local built; built=$("$here/build.sh" | tail -n 1)
  local kubectl; kubectl=$("$here/../testenv/build.sh" | tail -n 1)/kubectl
  local dir; dir=$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-flux.XXXXXX")
  touch "$dir/.fleetgate-flux"
  trap 'log "start failed"; cat "$dir"/*.log >&2 || true; stop "$dir" || true' ERR
  KUBECONFIG=$kubeconfig "$kubectl" apply --server-side -f "$built/crds" > /dev/null
  KUBECONFIG=$kubeconfig "$kubectl" wait --for=condition=Established --timeout=60s \
    crd/gitrepositories.source.toolkit.fluxcd.io crd/ocirepositories.source.toolkit.fluxcd.io > /dev/null
  local storage health metrics
  { read -r storage; read -r health; read -r metrics; } < <(free_ports 3)
  mkdir -p "$dir/data"
  RUNTIME_NAMESPACE=flux-system KUBECONFIG=$kubeconfig "$built/source-controller" \
    --storage-path="$dir/data" --storage-addr="127.0.0.1:$storage" \
    --storage-adv-addr="127.0.0.1:$storage" --health-addr="127.0.0.1:$health" \
    --metrics-addr="127.0.0.1:$metrics" --enable-leader-election=false \
    --watch-all-namespaces=true --log-level=info > "$dir/source-controller.log" 2>&1 &
  echo $! > "$dir/source-controller.pid"
  for _ in $(seq 200); do
    if curl -sf "http://127.0.0.1:$health/readyz" > /dev/null; then break; fi
    kill -0 "$(cat "$dir/source-controller.pid")" || { log "source-controller exited"; false; }
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$health/readyz" > /dev/null
  echo "STORAGE=127.0.0.1:$storage" > "$dir/env"
  if [ -n "$owner" ]; then
    watch_owner "$owner" "$dir" "$here/run.sh"
  fi
  trap - ERR
  log "source-controller ready, artifacts on http://127.0.0.1:$storage (log: $dir/source-controller.log)"
  echo "$dir"
}

case ${1:-} in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 start KUBECONFIG [--until-exit PID] | stop FOLDER" >&2; exit 2 ;;
esac
