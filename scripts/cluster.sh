#!/usr/bin/env bash
# A local three-node cluster, exactly as the guide's quick start builds one:
# node1 on 127.0.0.1, node2 on 127.0.0.2, node3 on 127.0.0.3 (HTTP 8500, Raft 7000), data under
# ./data/<node>, node1 bootstraps, node2 and node3 are joined through POST /cluster/join.
#   scripts/cluster.sh start | stop | status
set -euo pipefail
cd "$(dirname "$0")/.."
KONSUL=${KONSUL:-.venv/bin/konsul}
DATA=${DATA:-./data}

wait_for() {  # url, what
  for _ in $(seq 1 200); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "timed out waiting for $2 ($1)" >&2
  return 1
}

start_node() {  # n, bootstrap
  local n=$1 ip=127.0.0.$1
  mkdir -p "$DATA/node$n"
  KONSUL_HOST=$ip KONSUL_PORT=8500 \
  KONSUL_DATA_DIR="$DATA/node$n" \
  KONSUL_RAFT_ENABLED=true \
  KONSUL_RAFT_NODE_ID="node$n" \
  KONSUL_RAFT_BIND_ADDR="$ip:7000" \
  KONSUL_RAFT_ADVERTISE_ADDR="$ip:7000" \
  KONSUL_RAFT_DATA_DIR="$DATA/node$n/raft" \
  KONSUL_RAFT_BOOTSTRAP=$2 \
    nohup "$KONSUL" >"$DATA/node$n.log" 2>&1 &
  echo $! >"$DATA/node$n.pid"
  wait_for "http://$ip:8500/health/live" "node$n"
}

join() {  # n
  curl -fsS -X POST http://127.0.0.1:8500/cluster/join \
    -H "Content-Type: application/json" \
    -d "{\"node_id\": \"node$1\", \"address\": \"127.0.0.$1:7000\"}"
  echo
}

case "${1:-start}" in
  start)
    if [ -d "$DATA/node1/raft/wal" ]; then
      # A cluster from an earlier run: its members know each other, so just start them.
      start_node 1 false
      start_node 2 false
      start_node 3 false
      wait_for http://127.0.0.1:8500/health/ready "the cluster to elect a leader"
    else
      start_node 1 true
      wait_for http://127.0.0.1:8500/health/ready "node1 to lead"
      start_node 2 false
      start_node 3 false
      join 2
      join 3
    fi
    curl -fsS http://127.0.0.1:8500/cluster/status
    echo
    ;;
  stop)
    pids=()
    for n in 1 2 3; do
      if [ -f "$DATA/node$n.pid" ]; then
        pids+=("$(cat "$DATA/node$n.pid")")
        rm -f "$DATA/node$n.pid"
      fi
    done
    [ ${#pids[@]} -gt 0 ] || exit 0
    kill "${pids[@]}" 2>/dev/null || true
    # SIGTERM makes a leader hand over first: wait until every node has really exited.
    for _ in $(seq 1 150); do
      alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 1 ] || exit 0
      sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
    ;;
  status)
    curl -fsS http://127.0.0.1:8500/cluster/status
    echo
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
