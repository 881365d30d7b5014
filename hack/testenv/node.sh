# The test node of `hack/testenv.sh start --node` (sourced by hack/testenv.sh): a real
# kubelet, containerd and runc, Debian's CNI plugins, kube-proxy, kube-scheduler and
# kube-controller-manager, kube-router (NetworkPolicy), all built by
# hack/testenv/node/build.sh.
#
# Everything of one environment lives in places that stop can remove whole:
# - a network namespace of its own (NODE_NETNS), joined to the host by a veth pair with a
#   /30 of 100.80.N.0/30 that is routed nowhere else: the API server, etcd, the kubelet,
#   kube-proxy's iptables rules, the CNI bridge (cni0, pods on 10.244.0.0/24) and the pods
#   are all inside it; the tests reach the API server at the namespace's end of the pair;
# - a mount namespace held by a `sleep` (NODE_HOLDER), shared by containerd and the kubelet,
#   so that their mounts (overlay snapshots, volumes, the pods' network namespaces) vanish
#   with it and none propagates to the host;
# - a cgroup of its own, /fleetgate-<id>, in every hierarchy: the daemons in .../system, the
#   pods under .../kubepods (the kubelet's cgroupRoot), so that stop finds every process of
#   the environment, container or not, by its cgroup;
# - the environment's folder (containerd's root and state, the kubelet's root, the pod logs,
#   the CNI configuration and IP allocations).
# Nothing is written to the host's sysctls: the kubelet wants vm.overcommit_memory=1,
# kernel.panic=10 and kernel.panic_on_oops=1, which are machine-wide, so the node's mount
# namespace shows it those values (bind mounts over /proc/sys) and protectKernelDefaults
# makes it refuse, rather than change, any other one. kube-proxy is told to leave the
# conntrack table's size and timeouts alone.
#
# The machine mounts cgroup v1 hierarchies, and its init keeps its own cgroups in the v1
# memory hierarchy, so the controllers cannot move to cgroup v2 without taking them from
# it: the kubelet runs on cgroup v1 with failCgroupV1: false (cgroupfs driver, no systemd).

node_pod_cidr=10.244.0.0/24
node_service_cidr=10.96.0.0/24
node_kubernetes_service_ip=10.96.0.1
node_pause_image=registry.k8s.io/pause:3.10.2
# A client image for tests (wget, nc): Debian's busybox-static, packed here.
node_client_image=fleetgate.test/busybox:latest

# The cgroup v1 hierarchies (and the unified one) mounted here.
node_cgroup_hierarchies() {
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts
}

# node_network DIR: the network namespace and the veth pair; sets NODE_IP, HOST_IP.
node_network() {
  local dir=$1 id; id=$(cat "$dir/id")
  local ns=fleetgate-$id host_if=fgh$id node_if=fgn$id
  # One /30 per environment: the first N whose host address is on no interface.
  exec 9> "${TMPDIR:-/tmp}/fleetgate-testenv-net.lock"
  flock 9
  local n
  for n in $(seq 0 255); do
    ip -o -4 addr show | grep -q " 100\.80\.$n\.1/" || break
  done
  HOST_IP=100.80.$n.1 NODE_IP=100.80.$n.2
  ip netns add "$ns"
  echo "$ns" > "$dir/netns"
  ip link add "$host_if" type veth peer name "$node_if" netns "$ns"
  ip addr add "$HOST_IP/30" dev "$host_if"
  ip link set "$host_if" up
  flock -u 9
  exec 9>&-
  node_in_netns "$dir" ip addr add "$NODE_IP/30" dev "$node_if"
  node_in_netns "$dir" ip link set "$node_if" up
  node_in_netns "$dir" ip link set lo up
  # Pods reach the API server and the git server on NODE_IP (local to the namespace) and
  # nothing beyond it: no default route, and nothing forwarded to the host's end.
  node_in_netns "$dir" iptables -w -I FORWARD -o "$node_if" -j DROP
  # Service traffic between pods on the bridge passes through iptables (per namespace).
  node_in_netns "$dir" sysctl -q -w net.bridge.bridge-nf-call-iptables=1
  node_in_netns "$dir" sysctl -q -w net.ipv4.ip_forward=1
  echo "$NODE_IP" > "$dir/node-ip"
}

node_in_netns() {
  local dir=$1; shift
  nsenter --net="/run/netns/$(cat "$dir/netns")" -- "$@"
}

# node_cgroups DIR: /fleetgate-<id> and its system/ child in every hierarchy.
node_cgroups() {
  local dir=$1 id; id=$(cat "$dir/id")
  local h
  for h in $(node_cgroup_hierarchies); do
    mkdir -p "$h/fleetgate-$id/system"
    if [ -f "$h/cpuset.cpus" ]; then
      for g in "$h/fleetgate-$id" "$h/fleetgate-$id/system"; do
        cat "$h/cpuset.cpus" > "$g/cpuset.cpus"
        cat "$h/cpuset.mems" > "$g/cpuset.mems"
      done
    fi
  done
  echo "/fleetgate-$id" > "$dir/cgroup"
}

# node_mount_namespace DIR: the mount namespace the node's daemons share.
node_mount_namespace() {
  local dir=$1
  unshare --mount --propagation slave sleep infinity < /dev/null > /dev/null 2>&1 &
  echo $! > "$dir/holder.pid"
  for _ in $(seq 50); do
    [ "$(readlink "/proc/$(cat "$dir/holder.pid")/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] && break
    sleep 0.02
  done
  # The kernel tunables the kubelet checks, as it wants to see them (see above).
  mkdir -p "$dir/sysctl/vm" "$dir/sysctl/kernel"
  local spec
  for spec in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1; do
    echo "${spec#*=}" > "$dir/sysctl/${spec%%=*}"
  done
  # Paths the kubelet and containerd use whatever their configuration says.
  mkdir -p "$dir/var-log-containers" "$dir/run-containerd" /var/log/containers /run/containerd
  node_in_mounts "$dir" sh -c "
    for f in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops; do
      mount --bind '$dir/sysctl/'\$f /proc/sys/\$f
    done
    mount --bind '$dir/var-log-containers' /var/log/containers
    mount --bind '$dir/run-containerd' /run/containerd"
}

node_in_mounts() {
  local dir=$1; shift
  nsenter --mount="/proc/$(cat "$dir/holder.pid")/ns/mnt" -- "$@"
}

# node_daemon DIR NAME COMMAND...: starts COMMAND in the node's network and mount
# namespaces and its system cgroup, logging to DIR/NAME.log, its pid in DIR/NAME.pid.
node_daemon() {
  local dir=$1 name=$2; shift 2
  local cgroup; cgroup=$(cat "$dir/cgroup")
  nsenter --mount="/proc/$(cat "$dir/holder.pid")/ns/mnt" --net="/run/netns/$(cat "$dir/netns")" -- \
    bash -c 'for h in $(awk '\''$3 == "cgroup" || $3 == "cgroup2" {print $2}'\'' /proc/self/mounts); do
               echo $$ > "$h'"$cgroup"'/system/cgroup.procs"
             done
             exec "$@"' "$name" "$@" > "$dir/$name.log" 2>&1 &
  echo $! > "$dir/$name.pid"
}

# wait_for WHAT TEST...: polls TEST for up to a minute.
wait_for() {
  local what=$1; shift
  for _ in $(seq 600); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "$what did not come up"
  return 1
}

# node_images DIR NODEBIN: the pause and client images, packed once per machine.
node_images() {
  local dir=$1 bin=$2
  # shellcheck source=hack/image/oci.sh
  . "$here/image/oci.sh"
  local work
  if [ ! -f "$bin/pause.oci.tar" ]; then
    work=$(mktemp -d)
    mkdir -p "$work/rootfs"
    install -m 0755 "$bin/pause" "$work/rootfs/pause"
    find "$work/rootfs" -exec touch -h -d @0 {} +
    oci_image "$work/oci" pause "$work/rootfs" 1970-01-01T00:00:00Z \
      --config.entrypoint /pause --config.user 65535:65535 >/dev/null
    oci_archive "$work/oci" pause "$bin/pause.oci.tar.tmp" "$node_pause_image"
    mv "$bin/pause.oci.tar.tmp" "$bin/pause.oci.tar"
    rm -rf "$work"
  fi
  if [ ! -f "$bin/client.oci.tar" ]; then
    [ -x /bin/busybox ] || { log "busybox is missing: apt-get install busybox-static"; return 1; }
    work=$(mktemp -d)
    mkdir -p "$work/rootfs/bin"
    install -m 0755 /bin/busybox "$work/rootfs/bin/busybox"
    # (busybox 1.35's `wget -T` crashes: use `timeout N wget`.)
    for applet in sh wget nc sleep cat timeout; do ln -s busybox "$work/rootfs/bin/$applet"; done
    find "$work/rootfs" -exec touch -h -d @0 {} +
    oci_image "$work/oci" client "$work/rootfs" 1970-01-01T00:00:00Z \
      --config.entrypoint /bin/sh --config.user 65534:65534 --config.env PATH=/bin >/dev/null
    oci_archive "$work/oci" client "$bin/client.oci.tar.tmp" "$node_client_image"
    mv "$bin/client.oci.tar.tmp" "$bin/client.oci.tar"
    rm -rf "$work"
  fi
}

# node_import DIR ARCHIVE: loads an oci-archive into the node's containerd (no registry).
node_import() {
  local dir=$1 archive=$2 bin; bin=$(cat "$dir/node-bin")
  node_in_mounts "$dir" "$bin/ctr" --address "$dir/containerd/containerd.sock" -n k8s.io \
    images import --no-unpack=false --local "$archive" >&2
}

# node_start DIR CPBIN NODEBIN TOKEN URL: containerd, the kubelet, kube-proxy, the
# scheduler and the controller manager, against the API server at URL.
node_start() {
  local dir=$1 cpbin=$2 bin=$3 url=$4
  local node; node=$(cat "$dir/node-name")
  echo "$bin" > "$dir/node-bin"
  node_images "$dir" "$bin"

  mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/cni/ipam" "$dir/kubelet" "$dir/pod-logs"
  cat > "$dir/containerd/config.toml" <<TOML
version = 3
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$node_pause_image"
[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # This machine's root lacks CAP_SYS_RESOURCE, so no process may lower its OOM score
  # below its parent's: containerd keeps the containers' scores at or above its own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$dir/cni/net.d"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$bin/runc"
        SystemdCgroup = false
TOML
  cat > "$dir/cni/net.d/10-fleetgate.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "fleetgate",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$dir/cni/ipam",
              "ranges": [[{"subnet": "$node_pod_cidr"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  # containerd finds its shim on PATH.
  node_daemon "$dir" containerd env PATH="$bin:$PATH" "$bin/containerd" --config "$dir/containerd/config.toml"
  wait_for containerd node_in_mounts "$dir" "$bin/ctr" --address "$dir/containerd/containerd.sock" version
  node_import "$dir" "$bin/pause.oci.tar"
  node_import "$dir" "$bin/client.oci.tar"

  # Credentials: static tokens for the components (tokens.csv), client certificates
  # would serve as well. The kubelet's serving certificate names the node's address.
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$node" \
    -keyout "$dir/kubelet.key" -out "$dir/kubelet.csr" 2>/dev/null
  printf 'subjectAltName=IP:%s,DNS:%s\n' "$NODE_IP" "$node" > "$dir/kubelet-san.ext"
  openssl x509 -req -in "$dir/kubelet.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 7 -extfile "$dir/kubelet-san.ext" -out "$dir/kubelet.crt" 2>/dev/null
  local component
  for component in kubelet kube-proxy kube-router kube-scheduler kube-controller-manager; do
    component_kubeconfig "$dir" "$component" "$url" "$(cat "$dir/$component.token")"
  done

  cat > "$dir/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $dir/kubelet.crt
tlsPrivateKeyFile: $dir/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: $(cat "$dir/cgroup")
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: true
podLogsDir: $dir/pod-logs
resolvConf: $dir/resolv.conf
clusterDomain: cluster.local
maxPods: 40
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
enforceNodeAllocatable: [pods]
registerNode: true
YAML
  : > "$dir/resolv.conf"
  node_daemon "$dir" kubelet "$bin/kubelet" --config "$dir/kubelet/config.yaml" \
    --kubeconfig "$dir/kubelet.kubeconfig" --root-dir "$dir/kubelet" \
    --hostname-override "$node" --node-ip "$NODE_IP" --v 1

  cat > "$dir/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
hostnameOverride: $node
mode: iptables
clusterCIDR: $node_pod_cidr
detectLocalMode: ClusterCIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  node_daemon "$dir" kube-proxy "$bin/kube-proxy" --config "$dir/kube-proxy.yaml"
  # NetworkPolicy: kube-router's firewall alone (iptables and ipset in the namespace); the
  # bridge plugin connects the pods and kube-proxy serves the Services. It reads pods,
  # namespaces, nodes and policies.
  "$cpbin/kubectl" --kubeconfig "$dir/kubeconfig" apply -f - > /dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "testenv:kube-router"}
rules:
- apiGroups: ["", networking.k8s.io, discovery.k8s.io]
  resources: [pods, namespaces, nodes, services, endpoints, endpointslices, networkpolicies]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "testenv:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "testenv:kube-router"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:kube-router"}
YAML
  # kube-router looks its node up once when it starts and exits if the kubelet has not
  # registered it yet (then no policy is ever enforced): start it after the registration.
  wait_for "the node $node registered" "$cpbin/kubectl" --kubeconfig "$dir/kubeconfig" \
    get node "$node"
  node_daemon "$dir" kube-router "$bin/kube-router" --kubeconfig "$dir/kube-router.kubeconfig" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --hostname-override "$node" --health-port 0 --metrics-port 0
  node_daemon "$dir" kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$dir/kube-scheduler.kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port 10259
  node_daemon "$dir" kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$dir/kube-controller-manager.kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port 10257 \
    --service-account-private-key-file "$dir/sa.key" --root-ca-file "$dir/ca.crt" \
    --use-service-account-credentials \
    --allocate-node-cidrs --cluster-cidr "$node_pod_cidr" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$node_service_cidr"

  wait_for "the node $node" node_ready "$dir" "$cpbin/kubectl"
  # Every daemon still running once the node is Ready (kube-router, above, would exit
  # quietly otherwise).
  local daemon
  for daemon in containerd kubelet kube-proxy kube-router kube-scheduler kube-controller-manager; do
    if ! kill -0 "$(cat "$dir/$daemon.pid")" 2>/dev/null; then
      log "$daemon exited: $(tail -n 3 "$dir/$daemon.log")"
      return 1
    fi
  done
  # Pods need their namespace's default ServiceAccount, which the controller manager makes.
  wait_for "the default ServiceAccount" "$cpbin/kubectl" --kubeconfig "$dir/kubeconfig" \
    get serviceaccount default -n default
}

node_ready() {
  local dir=$1 kubectl=$2
  [ "$("$kubectl" --kubeconfig "$dir/kubeconfig" get node "$(cat "$dir/node-name")" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# component_kubeconfig DIR NAME URL TOKEN
component_kubeconfig() {
  local dir=$1 name=$2 url=$3 token=$4
  cat > "$dir/$name.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster: {server: "$url", certificate-authority: "$dir/ca.crt"}
users:
- name: $name
  user: {token: "$token"}
contexts:
- name: testenv
  context: {cluster: testenv, user: $name}
current-context: testenv
KUBECONFIG
}

# node_stop DIR: ends every process in the environment's cgroup (the daemons, the shims,
# every container), then removes the cgroups, the network namespace and the veth pair.
# The mount namespace goes with its last process.
node_stop() {
  local dir=$1
  [ -f "$dir/cgroup" ] || return 0
  local cgroup; cgroup=$(cat "$dir/cgroup")
  # The kubelet first, so that it does not start what is being stopped.
  stop_pids "$dir" kubelet
  local h pids round
  for round in $(seq 100); do
    # A process may leave (and its cgroup go) between find and cat: that is no failure
    # of the stop, which under pipefail and set -e would end it here, silently.
    pids=$(for h in $(node_cgroup_hierarchies); do
      if [ -d "$h$cgroup" ]; then
        find "$h$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null || true
      fi
    done | sort -u)
    [ -n "$pids" ] || break
    # TERM first (containerd and etcd stop cleanly), KILL after a second.
    if [ "$round" -le 10 ]; then kill $pids 2>/dev/null || true; else kill -9 $pids 2>/dev/null || true; fi
    sleep 0.1
  done
  [ -f "$dir/holder.pid" ] && stop_pids "$dir" holder
  for h in $(node_cgroup_hierarchies); do
    [ -d "$h$cgroup" ] || continue
    # Deepest first; a cgroup whose last task just exited may need a moment.
    for _ in $(seq 50); do
      find "$h$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$h$cgroup" ] || break
      sleep 0.1
    done
    [ -d "$h$cgroup" ] && log "could not remove the cgroup $h$cgroup"
  done
  if [ -f "$dir/netns" ]; then
    local id; id=$(cat "$dir/id")
    ip netns del "$(cat "$dir/netns")" 2>/dev/null || true
    ip link del "fgh$id" 2>/dev/null || true
  fi
}
