# Shared by hack/testenv.sh and hack/gitserver.sh: loopback ports, processes started
# by pid file, and a watchdog that stops an environment when its owner exits.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# free_ports N: N distinct free loopback ports, one per line. Asked one at a time, the
# kernel may hand out a port just released again (etcd once got the same port for its
# clients and its peers, and did not start).
free_ports() {
  python3 -c 'import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in held))' "$1"
}

# stop_pids DIR NAME...: stops each DIR/NAME.pid process, waiting up to 5 s before KILL.
stop_pids() {
  local dir=$1; shift
  for name in "$@"; do
    local pidfile="$dir/$name.pid"
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    # The watchdog runs this very stop (bash may exec it in place): never kill ourselves.
    [ "$pid" = "$$" ] || [ "$pid" = "$PPID" ] && continue
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}

# watch_owner OWNER_PID DIR SCRIPT: runs `SCRIPT stop DIR` once OWNER_PID is gone.
watch_owner() {
  local owner=$1 dir=$2 script=$3
  nohup bash -c "while kill -0 $owner 2>/dev/null; do sleep 1; done; '$script' stop '$dir'" \
    > /dev/null 2>&1 &
  echo $! > "$dir/watchdog.pid"
}
