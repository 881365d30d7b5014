#!/usr/bin/env bash
# make demo-environments: one fleet.yaml serving staging and production, production
# promoting only what staging applied and held for a soak, each environment approving
# its own plans. On a local control plane; everything it starts it stops again and
# removes, also on failure or Ctrl-C. No provider runs: the fleet objects are written,
# and reported Ready by no one (the runs end Applied once written).
set -euo pipefail
. "$(dirname "$0")/demo-common.sh"
export PATH="$(dirname "$fleetgate"):$PATH"   # kubectl-fleet, built beside it

work=$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-envs.XXXXXX")
kubeconfig=""
controller=""
cleanup() {
  [ -n "$controller" ] && kill "$controller" 2>/dev/null && wait "$controller" 2>/dev/null || true
  [ -n "$kubeconfig" ] && hack/testenv.sh stop "$kubeconfig" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

heading "Starting kube-apiserver and etcd"
kubeconfig=$(hack/testenv.sh start 2>/dev/null | tail -n 1)
export KUBECONFIG=$kubeconfig
kubectl apply --server-side -f crds/fleetgate.yaml >/dev/null
kubectl wait --for condition=established --timeout=60s crd --all >/dev/null
show kubectl create namespace staging
show kubectl create namespace production

heading "One fleet.yaml, two environments"
git init -q --bare -b main "$work/fleet-config.git"
git clone -q "$work/fleet-config.git" "$work/checkout" 2>/dev/null
cp examples/fleet-environments.yaml "$work/checkout/fleet.yaml"
git -C "$work/checkout" add fleet.yaml
git -C "$work/checkout" -c user.name=demo -c user.email=demo@example.com commit -q -m "the reference fleet, two environments"
git -C "$work/checkout" push -q origin main
rev=$(git -C "$work/checkout" rev-parse HEAD)
sed -n '/^environments:/,$p' examples/fleet-environments.yaml
show fleetgate validate examples/fleet-environments.yaml

heading "Starting the controller for both namespaces"
"$fleetgate" controller --namespace staging --namespace production --lease-namespace staging \
  --http-addr 127.0.0.1:0 --work-dir "$work/cache" --allow-unverified-approvals --allow-file-urls \
  2>"$work/controller.log" &
controller=$!
echo "fleetgate controller running (pid $controller, log $work/controller.log)"

heading "Staging lets production promote from its repository"
cat > "$work/grant.yaml" <<YAML
apiVersion: gitops.fleetgate.dev/v1alpha1
kind: PromotionGrant
metadata:
  name: production
  namespace: staging
spec:
  from: [{namespace: production}]
  to: [{name: fleet}]
YAML
cat "$work/grant.yaml"
show kubectl apply -f "$work/grant.yaml"

heading "A repository per environment: production promotes from staging after a 30s soak"
cat > "$work/repositories.yaml" <<YAML
apiVersion: gitops.fleetgate.dev/v1alpha1
kind: GitopsRepository
metadata:
  name: fleet
  namespace: staging
spec:
  url: file://$work/fleet-config.git
  ref: {branch: main}
  interval: 5s
  environment: staging
---
apiVersion: gitops.fleetgate.dev/v1alpha1
kind: GitopsRepository
metadata:
  name: fleet
  namespace: production
spec:
  url: file://$work/fleet-config.git
  ref: {branch: main}
  interval: 5s
  environment: production
  promotion:
    from: {namespace: staging, name: fleet}
    requireHealthyFor: 30s
YAML
sed "s|$work|/tmp/fleet-envs|" "$work/repositories.yaml"
show kubectl apply -f "$work/repositories.yaml"

wait_phase() { # namespace revision phase -> prints the SyncRun's name
  local ns=$1 rev=$2 phase=$3
  for _ in $(seq 600); do
    local name
    name=$(kubectl get syncruns -n "$ns" -o jsonpath="{range .items[?(@.spec.revision==\"$rev\")]}{.metadata.name} {.status.phase}{'\n'}{end}" | awk -v p="$phase" '$2==p {print $1; exit}')
    if [ -n "$name" ]; then echo "$name"; return; fi
    sleep 0.2
  done
  echo "demo: no SyncRun of $rev in $ns reached $phase" >&2; tail -20 "$work/controller.log" >&2; exit 1
}
promotion() { # -> production's promotion line, once its reason is $1
  for _ in $(seq 600); do
    local line
    line=$(kubectl get gitopsrepository fleet -n production -o jsonpath='{.status.promotion.reason}: {.status.promotion.message}')
    case "$line" in "$1:"*) echo "$line"; return ;; esac
    sleep 0.2
  done
  echo "demo: production's promotion never read $1" >&2; tail -20 "$work/controller.log" >&2; exit 1
}
approve() { # namespace run
  local plan
  plan=$(kubectl get syncrun "$2" -n "$1" -o jsonpath='{.status.planId}')
  show kubectl annotate -n "$1" "syncrun/$2" "gitops.fleetgate.dev/approve=$plan"
}

heading "Staging plans the revision at once; production plans nothing yet"
run=$(wait_phase staging "$rev" AwaitingApproval)
show kubectl get syncruns -n staging
kubectl get syncrun "$run" -n staging -o jsonpath='{range .status.diff[?(@.kind=="FleetNode")]}{.operation} {.kind}/{.name}{range .fields[*]}{"\n    "}{@}{end}{"\n"}{end}'
printf '%s$ kubectl get syncruns -n production -o name%s\n' "$dim" "$off"
runs=$(kubectl get syncruns -n production -o name)
echo "${runs:-(none)}"
promotion NothingEligible

heading "Staging approves and applies it"
approve staging "$run"
wait_phase staging "$rev" Applied >/dev/null
show kubectl get fleetnodes -n staging
promotion Waiting

heading "30 seconds later: production plans exactly what staging held"
promoted=$(wait_phase production "$rev" AwaitingApproval)
show kubectl fleet history fleet -n production
kubectl get syncrun "$promoted" -n production -o jsonpath='{range .status.diff[?(@.kind=="FleetNode")]}{.operation} {.kind}/{.name}{range .fields[*]}{"\n    "}{@}{end}{"\n"}{end}'
show kubectl get events -n production --field-selector reason=Promoted -o custom-columns=REASON:.reason,MESSAGE:.message

heading "Production approves its own plan"
approve production "$promoted"
wait_phase production "$rev" Applied >/dev/null
show kubectl get fleetnodes -n production
echo "staging's nginx: $(kubectl get fleettemplate edge-cdn -n staging -o jsonpath='{.spec.modules}')"
echo "production's nginx: $(kubectl get fleettemplate edge-cdn -n production -o jsonpath='{.spec.modules}')"

heading "Done; stopping everything the demo started"
