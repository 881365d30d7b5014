#!/usr/bin/env bash
# A real control plane for tests and the demo: etcd + kube-apiserver built from source
# (hack/testenv/build.sh), on free loopback ports, in a fresh temporary folder.
#
#   hack/testenv.sh start [--until-exit PID]   prints the kubeconfig path as its last line
#   hack/testenv.sh stop KUBECONFIG|FOLDER      stops exactly what that start started
#
# RBAC is on. The admin is a static token in group system:masters; tests impersonate
# other users. Requests are audited to FOLDER/audit.log. Service-account keys are set up so that TokenRequest works. Without
# kube-controller-manager, namespaces are never finalized and nothing is garbage collected.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

log() { echo "testenv: $*" >&2; }

# shellcheck source=hack/lib.sh
. "$here/lib.sh"

stop() {
  local target=${1:?usage: testenv.sh stop KUBECONFIG|FOLDER}
  local dir=$target
  [ -f "$target" ] && dir=$(dirname "$target")
  [ -f "$dir/.fleetgate-testenv" ] || { log "$dir is not a test environment"; return 1; }
  stop_pids "$dir" watchdog kube-apiserver etcd
  rm -rf "$dir"
  log "stopped $dir"
}

start() {
  local owner=""
  if [ "${1:-}" = "--until-exit" ]; then owner=${2:?--until-exit needs a pid}; fi
  local bin; bin=$("$here/testenv/build.sh" | tail -n 1)
  local dir; dir=$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-testenv.XXXXXX")
  touch "$dir/.fleetgate-testenv"
  # If anything below fails, leave nothing behind.
  trap 'log "start failed; logs follow"; tail -n 30 "$dir"/*.log >&2 || true; stop "$dir" || true' ERR

  local etcd_port etcd_peer_port api_port
  etcd_port=$(free_port); etcd_peer_port=$(free_port); api_port=$(free_port)

  # A CA, the API server's serving certificate, and the service-account signing key.
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=fleetgate-testenv-ca" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$dir/apiserver.key" -out "$dir/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' > "$dir/san.ext"
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

  "$bin/etcd" --name testenv --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "testenv=http://127.0.0.1:$etcd_peer_port" --unsafe-no-fsync \
    > "$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"

  "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$dir/certs" --tls-cert-file "$dir/apiserver.crt" --tls-private-key-file "$dir/apiserver.key" \
    --client-ca-file "$dir/ca.crt" --token-auth-file "$dir/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/24 \
    --disable-admission-plugins ServiceAccount \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" --audit-log-format json \
    --allow-privileged=true \
    > "$dir/kube-apiserver.log" 2>&1 &
  echo $! > "$dir/kube-apiserver.pid"

  local url="https://127.0.0.1:$api_port"
  local ready=""
  for _ in $(seq 600); do
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

  if [ -n "$owner" ]; then
    # Stops the environment once the process that asked for it is gone.
    watch_owner "$owner" "$dir" "$here/testenv.sh"
  fi
  trap - ERR
  log "ready at $url (logs in $dir)"
  echo "$dir/kubeconfig"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 start [--until-exit PID] | stop KUBECONFIG|FOLDER" >&2; exit 2 ;;
esac
