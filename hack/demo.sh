#!/usr/bin/env bash
# make demo: from a clone to a plan approved and applied, three times, on a local control
# plane, with the lab provider realizing the fleet on this machine (network namespaces,
# BIRD, keepalived; needs root). Everything it starts it stops again and removes, also on
# failure or Ctrl-C.
set -euo pipefail
. "$(dirname "$0")/demo-common.sh"
# The kubectl plugin is built beside it.
kubectl_fleet="$(dirname "$fleetgate")/kubectl-fleet"

work=$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-demo.XXXXXX")
kubeconfig=""
controller=""
lab=""
ui=""
receiver=""
cleanup() {
  [ -n "$ui" ] && kill "$ui" 2>/dev/null && wait "$ui" 2>/dev/null || true
  [ -n "$controller" ] && kill "$controller" 2>/dev/null && wait "$controller" 2>/dev/null || true
  if [ -n "$lab" ]; then
    kill "$lab" 2>/dev/null && wait "$lab" 2>/dev/null || true
    "$fleetgate" lab-provider --cleanup --instance demo --state-dir "$work/lab" >/dev/null 2>&1 || true
  fi
  [ -n "$receiver" ] && kill "$receiver" 2>/dev/null && wait "$receiver" 2>/dev/null || true
  [ -n "$kubeconfig" ] && hack/testenv.sh stop "$kubeconfig" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

heading "Starting kube-apiserver and etcd"
kubeconfig=$(hack/testenv.sh start 2>/dev/null | tail -n 1)
export KUBECONFIG=$kubeconfig
show kubectl version
show kubectl apply --server-side -f crds/fleetgate.yaml
kubectl wait --for condition=established --timeout=60s crd --all >/dev/null
show kubectl create namespace fleet-demo

heading "A git repository holding examples/fleet.yaml"
git init -q --bare -b main "$work/fleet-config.git"
git clone -q "$work/fleet-config.git" "$work/checkout" 2>/dev/null
cp examples/fleet.yaml "$work/checkout/fleet.yaml"
git -C "$work/checkout" add fleet.yaml
git -C "$work/checkout" -c user.name=demo -c user.email=demo@example.com commit -q -m "the reference fleet"
git -C "$work/checkout" push -q origin main
echo "file://$work/fleet-config.git @ $(git -C "$work/checkout" rev-parse --short HEAD)"

heading "Starting the controller"
"$fleetgate" controller --namespace fleet-demo --lease-namespace fleet-demo --http-addr 127.0.0.1:0 \
  --work-dir "$work/cache" --allow-unverified-approvals --allow-file-urls --allow-http-urls \
  2>"$work/controller.log" &
controller=$!
echo "fleetgate controller running (pid $controller, log $work/controller.log)"

heading "Starting the lab provider: the fleet realized on this machine"
[ "$(id -u)" -eq 0 ] || { echo "demo: the lab provider makes network namespaces and needs root" >&2; exit 1; }
"$fleetgate" lab-provider -n fleet-demo --instance demo --state-dir "$work/lab" 2>"$work/lab.log" &
lab=$!
echo "fleetgate lab-provider running (pid $lab, log $work/lab.log): each FleetNode becomes a network"
echo "namespace, each SdwanPeer a link into its network's bridge with BIRD speaking BGP, each"
echo "VirtualIp an address keepalived (VRRP) keeps on its first holder that is up"

heading "A NotificationTarget: a local webhook receiver is told of every plan awaiting approval"
mkdir -p "$work/notifications"
python3 hack/notify-receiver.py demo-token "$work/notifications" &
receiver=$!
for _ in $(seq 50); do [ -s "$work/notifications/port" ] && break; sleep 0.1; done
kubectl create secret generic fleet-hook -n fleet-demo >/dev/null \
  --from-literal=address="http://127.0.0.1:$(cat "$work/notifications/port")/" --from-literal=token=demo-token
cat > "$work/notify.yaml" <<YAML
apiVersion: gitops.fleetgate.dev/v1alpha1
kind: NotificationTarget
metadata:
  name: team-hook
  namespace: fleet-demo
spec:
  type: Webhook
  secretRef: {name: fleet-hook}   # address: the receiver's URL; token: the HMAC-SHA256 key
  events: [PlanAwaitingApproval, ApprovalRefused, Applied, Failed]
YAML
cat "$work/notify.yaml"
show kubectl apply -f "$work/notify.yaml"

heading "Applying a GitopsRepository"
cat > "$work/repository.yaml" <<YAML
apiVersion: gitops.fleetgate.dev/v1alpha1
kind: GitopsRepository
metadata:
  name: fleet
  namespace: fleet-demo
spec:
  url: file://$work/fleet-config.git
  ref: {branch: main}
  interval: 5s
  account: acme-edge
  rollout: {minReadyTime: 5s}   # each wave stays Ready 5s before the next goes out
YAML
sed "s|$work|/tmp/fleet-demo|" "$work/repository.yaml"
show kubectl apply -f "$work/repository.yaml"

wait_phase() { # revision phase -> prints the SyncRun's name
  local rev=$1 phase=$2
  # Applied comes only once the lab reports every object Ready: up to three minutes.
  for _ in $(seq 900); do
    local name
    name=$(kubectl get syncruns -n fleet-demo -o jsonpath="{range .items[?(@.spec.revision==\"$rev\")]}{.metadata.name} {.status.phase}{'\n'}{end}" | awk -v p="$phase" '$2==p {print $1; exit}')
    if [ -n "$name" ]; then echo "$name"; return; fi
    sleep 0.2
  done
  echo "demo: no SyncRun of $rev reached $phase" >&2; tail -20 "$work/controller.log" >&2; exit 1
}

# Until every fleet object is Current: its provider reported Ready for its latest spec
# (status.observedGeneration equals metadata.generation), as kstatus reads it.
converged() {
  local line all
  for _ in $(seq 300); do
    all=$(kubectl get fleetnodes,sdwannetworks,sdwanpeers,virtualips -n fleet-demo -o jsonpath='{range .items[*]}{.metadata.generation}/{.status.observedGeneration}/{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
    line=$(echo "$all" | awk -F/ '$1!=$2 || $3!="True"' | head -n 1)
    [ -n "$all" ] && [ -z "$line" ] && return 0
    sleep 0.2
  done
  echo "demo: the fleet did not converge (see $work/lab.log)" >&2; tail -20 "$work/lab.log" >&2; exit 1
}
netns_of() { # node -> its network namespace, from its providerID (lab://demo/<netns>)
  kubectl get fleetnode "$1" -n fleet-demo -o jsonpath='{.status.providerID}' | sed 's|^lab://demo/||'
}
# Pings the virtual IP from a node's namespace through the fabric, and names the node
# whose link answered (the MAC address the answer came from).
ping_vip() { # from-node
  local from=$1 vip mac holder node ns
  vip=$(kubectl get virtualip edge-fabric.cdn-frontend -n fleet-demo -o jsonpath='{.status.address}')
  ns=$(netns_of "$from")
  show ip netns exec "$ns" ping -c 3 -i 0.2 "$vip"
  mac=$(ip -n "$ns" -j neigh show to "$vip" | python3 -c 'import json,sys; print(next((n.get("lladdr","") for n in json.load(sys.stdin)), ""))')
  holder=""
  for node in $(kubectl get fleetnodes -n fleet-demo -o jsonpath='{.items[*].metadata.name}'); do
    ip -n "$(netns_of "$node")" -j link show | grep -q "\"address\":\"$mac\"" && holder=$node
  done
  echo "$vip answered from $mac: the link of $holder"
}

push_revision() { # fleet file, commit message: commits it as the next revision, then reviews and approves its plan
  cp "$1" "$work/checkout/fleet.yaml"
  git -C "$work/checkout" -c user.name=demo -c user.email=demo@example.com commit -q -am "$2"
  git -C "$work/checkout" push -q origin main
  echo "pushed $(git -C "$work/checkout" rev-parse --short HEAD)"
  review_and_approve "$(git -C "$work/checkout" rev-parse HEAD)"
}

review_and_approve() { # revision
  local rev=$1 run plan
  run=$(wait_phase "$rev" AwaitingApproval)
  heading "The receiver was told (checked signature, then the JSON body)"
  local seen=""
  for _ in $(seq 100); do
    seen=$(grep -l "\"$run\"" "$work"/notifications/*.json 2>/dev/null | xargs -r grep -l PlanAwaitingApproval | head -n 1 || true)
    [ -n "$seen" ] && break
    sleep 0.1
  done
  if [ -n "$seen" ]; then cat "$seen"; echo; else echo "demo: no notification for $run (see $work/controller.log)" >&2; exit 1; fi
  heading "The plan the operator recorded"
  show kubectl get syncruns -n fleet-demo
  plan=$(kubectl get syncrun "$run" -n fleet-demo -o jsonpath='{.status.planId}')
  kubectl get syncrun "$run" -n fleet-demo -o jsonpath='{.status.message}{"\n"}'
  kubectl get syncrun "$run" -n fleet-demo -o jsonpath='{range .status.diff[*]}{.operation} {.kind}/{.name}{range .fields[*]}{"\n    "}{@}{end}{"\n"}{end}'
  echo "Rollout ($(kubectl get syncrun "$run" -n fleet-demo -o jsonpath='{.status.rollout.policy}')):"
  kubectl get syncrun "$run" -n fleet-demo -o jsonpath='{range .status.rollout.waves[*]}  wave {.name}: {.actions} actions, {.disrupted} machines disrupted{"\n"}{end}{range .status.rollout.findings[*]}  ! {@}{"\n"}{end}'
  heading "Approving plan $plan"
  show kubectl annotate -n fleet-demo "syncrun/$run" "gitops.fleetgate.dev/approve=$plan"
  wait_phase "$rev" Applied >/dev/null
  show kubectl get syncruns -n fleet-demo
}

review_and_approve "$(git -C "$work/checkout" rev-parse HEAD)"
heading "The fleet, converged: applied by fleetgate, realized and reported Ready by the lab provider"
converged
show kubectl get fleet -n fleet-demo

heading "The fabric, for real: a network namespace per node, BGP sessions Established"
echo "${dim}\$ ip netns list | grep fgl-demo-${off}"; ip netns list | grep "^fgl-demo-"
tokyo02=$(kubectl get sdwanpeer edge-fabric.edge-tokyo-02 -n fleet-demo -o jsonpath='{.status.address}')
show birdc -s "$work/lab/bird/$(echo "$tokyo02" | cut -d. -f3)-$(echo "$tokyo02" | cut -d. -f4).ctl" show protocols
kubectl get sdwanpeers -n fleet-demo -o jsonpath='{range .items[*]}{.spec.host}:{range .status.sessions[*]} {.peer} {.state};{end}{"\n"}{end}'

heading "The virtual IP answers through the fabric, from its primary holder"
show kubectl get virtualips -n fleet-demo
ping_vip edge-london-01

heading "Next revision: paris replaces london, tokyo-01 is resized, nginx is re-pinned"
push_revision examples/fleet-v2.yaml "paris replaces london"
heading "The fleet after the second plan"
converged
show kubectl get fleetnodes,sdwanpeers,virtualips -n fleet-demo
show kubectl get gitopsrepository -n fleet-demo

heading "Someone changes the cluster by hand"
show kubectl patch -n fleet-demo fleetnode edge-tokyo-02 --type merge -p '{"spec":{"instanceType":"t3-xlarge"}}'
show kubectl delete -n fleet-demo sdwanpeer edge-fabric.edge-paris-01
for _ in $(seq 150); do
  [ "$(kubectl get gitopsrepository fleet -n fleet-demo -o jsonpath='{.status.drift.count}')" = "2" ] && break
  sleep 0.2
done
show kubectl get gitopsrepository -n fleet-demo
kubectl get gitopsrepository fleet -n fleet-demo -o jsonpath='{range .status.drift.objects[*]}{.drift} {.kind}/{.name}{range .fields[*]}{"\n    "}{@}{end}{"\n"}{end}'
head_rev=$(git -C "$work/checkout" rev-parse HEAD)
drift_run=""
for _ in $(seq 150); do
  drift_run=$(kubectl get syncruns -n fleet-demo -o jsonpath='{range .items[?(@.spec.trigger=="Drift")]}{.metadata.name} {.status.phase}{"\n"}{end}' | awk '$2=="AwaitingApproval" {print $1; exit}')
  [ -n "$drift_run" ] && break
  sleep 0.2
done
heading "The operator planned the way back; approving it"
show kubectl get syncruns -n fleet-demo
plan=$(kubectl get syncrun "$drift_run" -n fleet-demo -o jsonpath='{.status.planId}')
show kubectl annotate -n fleet-demo "syncrun/$drift_run" "gitops.fleetgate.dev/approve=$plan"
for _ in $(seq 150); do
  [ "$(kubectl get gitopsrepository fleet -n fleet-demo -o jsonpath='{.status.conditions[?(@.type=="Drifted")].status}')" = "False" ] && break
  sleep 0.2
done
show kubectl get gitopsrepository -n fleet-demo
show kubectl get fleetnode/edge-tokyo-02 sdwanpeer/edge-fabric.edge-paris-01 -n fleet-demo

heading "Next revision: edge-tokyo-01, the virtual IP's primary holder, leaves the fleet"
push_revision examples/fleet-v3.yaml "edge-tokyo-01 leaves"
heading "The virtual IP answers from edge-paris-01, its failover holder until now; tokyo-01's namespace is gone"
converged
show kubectl get virtualips -n fleet-demo
ping_vip edge-tokyo-02
echo "${dim}\$ ip netns list | grep fgl-demo-${off}"; ip netns list | grep "^fgl-demo-"

heading "Reviewing in a browser: kubectl fleet ui"
"$kubectl_fleet" ui --no-browser -n fleet-demo >"$work/ui.out" 2>&1 &
ui=$!
for _ in $(seq 100); do grep -q '^fleetgate UI: ' "$work/ui.out" && break; sleep 0.1; done
url=$(sed -n 's/^fleetgate UI: //p' "$work/ui.out")
echo "$ kubectl fleet ui -n fleet-demo"
echo "fleetgate UI: ${url%%token=*}token=…   (on 127.0.0.1 only; opens your browser when there is one)"
if curl -sf -L -c "$work/ui.cookies" -b "$work/ui.cookies" "$url" | grep -q 'fleet-demo/fleet'; then
  echo "it lists fleet-demo/fleet with its runs, plans, drift and Approve / Reject / Sync now buttons"
fi
kill "$ui" 2>/dev/null && wait "$ui" 2>/dev/null || true
ui=""

heading "Done; stopping everything the demo started"
