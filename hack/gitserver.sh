#!/usr/bin/env bash
# A real git server for tests, from Debian's packages: sshd on a loopback port with a
# generated host key and client key (so SSH auth and known_hosts checks are real), and
# git daemon for git://. Repositories live in FOLDER/repos and are also file:// URLs.
#
#   hack/gitserver.sh start [--until-exit PID] [--netns NAME --address ADDR]
#                                                prints FOLDER (holding an `env` file) last
#   hack/gitserver.sh stop FOLDER
#
# With --netns, both listen on ADDR inside that network namespace (the test node's, where
# pods reach them) instead of on loopback.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "gitserver: $*" >&2; }
# shellcheck source=hack/lib.sh
. "$here/lib.sh"

stop() {
  local dir=${1:?usage: gitserver.sh stop FOLDER}
  [ -f "$dir/.fleetgate-gitserver" ] || { log "$dir is not a git server folder"; return 1; }
  stop_pids "$dir" watchdog sshd git-daemon
  rm -rf "$dir"
}

start() {
  local owner="" netns="" addr=127.0.0.1
  while [ $# -gt 0 ]; do
    case $1 in
      --until-exit) owner=${2:?--until-exit needs a pid}; shift 2 ;;
      --netns) netns=${2:?--netns needs a name}; shift 2 ;;
      --address) addr=${2:?--address needs an address}; shift 2 ;;
      *) log "unknown option $1"; return 2 ;;
    esac
  done
  local in_netns=()
  [ -z "$netns" ] || in_netns=(nsenter --net="/run/netns/$netns" --)
  local sshd=/usr/sbin/sshd
  [ -x "$sshd" ] || { log "sshd is missing: apt-get install openssh-server"; exit 1; }
  local dir; dir=$(mktemp -d "${TMPDIR:-/tmp}/fleetgate-gitserver.XXXXXX")
  touch "$dir/.fleetgate-gitserver"
  trap 'log "start failed"; cat "$dir"/*.log >&2 || true; stop "$dir" || true' ERR
  mkdir -p "$dir/repos" "$dir/ssh"
  # sshd insists on its privilege-separation folder.
  mkdir -p /run/sshd 2>/dev/null || true
  ssh-keygen -q -t ed25519 -N "" -C testenv-host -f "$dir/ssh/host_ed25519"
  ssh-keygen -q -t ed25519 -N "" -C testenv-other-host -f "$dir/ssh/other_host_ed25519"
  ssh-keygen -q -t ed25519 -N "" -C testenv-client -f "$dir/ssh/client_ed25519"
  cp "$dir/ssh/client_ed25519.pub" "$dir/ssh/authorized_keys"
  local ssh_port git_port user
  { read -r ssh_port; read -r git_port; } < <(free_ports 2); user=$(id -un)
  echo "[$addr]:$ssh_port $(cut -d' ' -f1,2 "$dir/ssh/host_ed25519.pub")" > "$dir/ssh/known_hosts"
  echo "[$addr]:$ssh_port $(cut -d' ' -f1,2 "$dir/ssh/other_host_ed25519.pub")" > "$dir/ssh/wrong_known_hosts"
  cat > "$dir/ssh/sshd_config" <<CONFIG
Port $ssh_port
ListenAddress $addr
HostKey $dir/ssh/host_ed25519
AuthorizedKeysFile $dir/ssh/authorized_keys
PidFile $dir/sshd.pid
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
CONFIG
  "${in_netns[@]}" "$sshd" -D -e -f "$dir/ssh/sshd_config" > "$dir/sshd.log" 2>&1 &
  echo $! > "$dir/sshd.pid"
  "${in_netns[@]}" git daemon --reuseaddr --listen="$addr" --port="$git_port" --base-path="$dir/repos" \
    --export-all --enable=receive-pack "$dir/repos" > "$dir/git-daemon.log" 2>&1 &
  echo $! > "$dir/git-daemon.pid"
  for _ in $(seq 100); do
    if "${in_netns[@]}" bash -c "(exec 3<>/dev/tcp/$addr/$ssh_port) && (exec 3<>/dev/tcp/$addr/$git_port)" 2>/dev/null; then
      break
    fi
    sleep 0.05
  done
  cat > "$dir/env" <<ENV
SSH_PORT=$ssh_port
GIT_PORT=$git_port
SSH_USER=$user
ADDRESS=$addr
ENV
  if [ -n "$owner" ]; then
    watch_owner "$owner" "$dir" "$here/gitserver.sh"
  fi
  trap - ERR
  log "ssh://$user@$addr:$ssh_port$dir/repos/NAME.git and git://$addr:$git_port/NAME.git"
  echo "$dir"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 start [--until-exit PID] [--netns NAME --address ADDR] | stop FOLDER" >&2; exit 2 ;;
esac
