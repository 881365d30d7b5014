#!/usr/bin/env bash
# A real control plane for tests and the demo: etcd + kube-apiserver built from source
# (hack/testenv/build.sh), on free loopback ports, in a fresh temporary folder.
#
#   hack/testenv.sh start [--node] [--until-exit PID]   prints the kubeconfig path last
#   hack/testenv.sh stop KUBECONFIG|FOLDER      stops exactly what that start started
#   hack/testenv.sh import KUBECONFIG|FOLDER ARCHIVE   loads an oci-archive into the node
#
# RBAC is on. The admin is a static token in group system:masters; tests impersonate
# other users. Requests are audited to FOLDER/audit.log. Service-account keys are set up
# so that TokenRequest works. Without --node there is no kube-controller-manager:
# namespaces are never finalized and nothing is garbage collected.
#
# --node adds a real node that runs pods (hack/testenv/node.sh): the kubelet, containerd,
# runc, CNI, kube-proxy, kube-scheduler and kube-controller-manager, with the whole
# environment in a network namespace of its own; the kubeconfig then names the API server
# at that namespace's address (FOLDER/node-ip), and stop removes every process, mount,
# cgroup, iptables rule and network namespace it made.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

log() { echo "testenv: $*" >&2; }

# shellcheck source=hack/lib.sh
. "$here/lib.sh"
# shellcheck source=hack/testenv/node.sh
. "$here/testenv/node.sh"

folder_of() {
  local target=${1:?a kubeconfig or a folder}
  [ -f "$target" ] && target=$(dirname "$target")
  [ -f "$target/.fleetgate-testenv" ] || { log "$target is not a test environment"; return 1; }
  echo "$target"
}

stop() {
  local dir; dir=$(folder_of "${1:?usage: testenv.sh stop KUBECONFIG|FOLDER}")
  node_stop "$dir"
  stop_pids "$dir" watchdog kube-apiserver etcd
  rm -rf --one-file-system "$dir"
  log "stopped $dir"
}

start() {
  local owner="" node=""
  while [ $# -gt 0 ]; do
    case $1 in
      --until-exit) owner=${2:?--until-exit needs a pid}; shift 2 ;;
      --node) node=yes; shift ;;
      *) log "unknown option $1"; return 2 ;;
    esac
  done
  local bin; bin=$("$here/testenv/build.sh" | tail -n 1)
  local nodebin=""
  [ -z "$node" ] || nodebin=$("$here/testenv/node/build.sh" | tail -n 1)
  local dir; dir=$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-testenv.XXXXXX")
  touch "$dir/.fleetgate-testenv"
  # If anything below fails, leave nothing behind.
  trap 'log "start failed; logs follow"; tail -n 30 "$dir"/*.log >&2 || true; stop "$dir" || true' ERR

  # Where the servers listen: loopback, or inside the node's network namespace.
  local addr=127.0.0.1 launch=background
  local san="IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc"
  if [ -n "$node" ]; then
    local id; id=$(basename "$dir" | cut -d. -f2 | tr 'A-Z' 'a-z')
    echo "$id" > "$dir/id"
    echo "node-$id" > "$dir/node-name"
    node_network "$dir"
    node_cgroups "$dir"
    node_mount_namespace "$dir"
    addr=$NODE_IP launch=node_daemon
    san+=",IP:$NODE_IP,IP:$node_kubernetes_service_ip,DNS:kubernetes,DNS:kubernetes.default"
    san+=",DNS:kubernetes.default.svc.cluster.local"
  fi

  local etcd_port etcd_peer_port api_port
  { read -r etcd_port; read -r etcd_peer_port; read -r api_port; } < <(free_ports 3)

  # A CA, the API server's serving certificate, and the service-account signing key.
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=fleetgate-testenv-ca" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$dir/apiserver.key" -out "$dir/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=%s\n' "$san" > "$dir/san.ext"
  openssl x509 -req -in "$dir/apiserver.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 7 -extfile "$dir/san.ext" -out "$dir/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  # Every request is audited (metadata only), so tests can check what a client did.
  cat > "$dir/audit-policy.yaml" <<POLICY
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
POLICY
  local token; token=$(openssl rand -hex 24)
  echo "$token,admin,admin,system:masters" > "$dir/tokens.csv"
  local apiserver_flags=(--authorization-mode RBAC --disable-admission-plugins ServiceAccount)
  if [ -n "$node" ]; then
    # The node's components, each with its own identity (RBAC's default bindings name them).
    local component user groups
    for component in kubelet kube-proxy kube-router kube-scheduler kube-controller-manager; do
      case $component in
        kubelet) user=system:node:$(cat "$dir/node-name") groups=system:nodes ;;
        kube-proxy|kube-router) user=system:$component groups="" ;;
        *) user=system:$component groups="" ;;
      esac
      openssl rand -hex 24 > "$dir/$component.token"
      echo "$(cat "$dir/$component.token"),$user,$user,\"$groups\"" >> "$dir/tokens.csv"
    done
    # How the API server authenticates to the kubelet (logs, exec, port-forward).
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      -keyout "$dir/kubelet-client.key" -out "$dir/kubelet-client.csr" 2>/dev/null
    openssl x509 -req -in "$dir/kubelet-client.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 7 -out "$dir/kubelet-client.crt" 2>/dev/null
    apiserver_flags=(--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction
      --kubelet-client-certificate "$dir/kubelet-client.crt" --kubelet-client-key "$dir/kubelet-client.key"
      --kubelet-preferred-address-types InternalIP)
  fi

  $launch "$dir" etcd "$bin/etcd" --name testenv --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "testenv=http://127.0.0.1:$etcd_peer_port" --unsafe-no-fsync

  $launch "$dir" kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$addr" --advertise-address "$addr" --secure-port "$api_port" \
    --cert-dir "$dir/certs" --tls-cert-file "$dir/apiserver.crt" --tls-private-key-file "$dir/apiserver.key" \
    --client-ca-file "$dir/ca.crt" --token-auth-file "$dir/tokens.csv" \
    "${apiserver_flags[@]}" \
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range "$node_service_cidr" \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" --audit-log-format json \
    --allow-privileged=true

  local url="https://$addr:$api_port"
  local ready=""
  # Up to 3 minutes: an environment started while others apply large fleets and build
  # images (the node tests run side by side on 2 cores) once took more than 60 s.
  for _ in $(seq 1800); do
    if curl -sf --cacert "$dir/ca.crt" -H "Authorization: Bearer $token" "$url/readyz" >/dev/null 2>&1; then
      ready=yes; break
    fi
    kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$ready" ] || { log "kube-apiserver did not become ready"; false; }

  cat > "$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: $url
    certificate-authority: $dir/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: testenv
  context: {cluster: testenv, user: admin, namespace: default}
current-context: testenv
KUBECONFIG

  [ -z "$node" ] || node_start "$dir" "$bin" "$nodebin" "$url"

  if [ -n "$owner" ]; then
    # Stops the environment once the process that asked for it is gone.
    watch_owner "$owner" "$dir" "$here/testenv.sh"
  fi
  trap - ERR
  log "ready at $url (logs in $dir)"
  echo "$dir/kubeconfig"
}

# background DIR NAME COMMAND...: COMMAND in the background, logging to DIR/NAME.log.
background() {
  local dir=$1 name=$2; shift 2
  "$@" > "$dir/$name.log" 2>&1 &
  echo $! > "$dir/$name.pid"
}

import() {
  local dir; dir=$(folder_of "${1:?usage: testenv.sh import KUBECONFIG|FOLDER ARCHIVE}")
  [ -f "$dir/node-bin" ] || { log "$dir has no node (start it with --node)"; return 1; }
  node_import "$dir" "${2:?an oci-archive}"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  import) shift; import "$@" ;;
  *) echo "usage: $0 start [--node] [--until-exit PID] | stop KUBECONFIG|FOLDER | import KUBECONFIG|FOLDER ARCHIVE" >&2; exit 2 ;;
esac
