#!/usr/bin/env bash
# The guide's Docker Compose deployment with podman-compose, as `make compose-up/compose-down` run it:
#   scripts/image/compose.sh up      start the three containers, join node2 and node3 as the
#                                    guide does (on an existing deployment: just start them)
#   scripts/image/compose.sh status  /cluster/status through konsul1's published port
#   scripts/image/compose.sh down    remove the containers, the network and the data volumes
# Files: deploy/compose/docker-compose-cluster.yml (the guide's, only the image name changed)
# plus docker-compose-forward.yml (KONSUL_FORWARD_WRITES, see that file), which
# KONSUL_FORWARD_WRITES=false leaves out: the guide's file alone. The image must exist
# (`make image`); KONSUL_IMAGE runs another tag than the file's konsul:<version> (as build.sh
# builds it). COMPOSE_PROJECT names the deployment (default konsul).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/scripts/image/containers.conf}
project=${COMPOSE_PROJECT:-konsul}
compose=(.venv/bin/podman-compose -p "$project" -f deploy/compose/docker-compose-cluster.yml)
[ "${KONSUL_FORWARD_WRITES:-true}" = false ] || compose+=(-f deploy/compose/docker-compose-forward.yml)
if [ -n "${KONSUL_IMAGE:-}" ]; then
  # Another image than the file's (a private tag: build.sh and the tests honour KONSUL_IMAGE
  # too), given in one more file so that the guide's stays as it is.
  override=$(mktemp --suffix .yml)
  trap 'rm -f "$override"' EXIT
  printf 'services:\n' >"$override"
  for n in 1 2 3; do
    printf '  konsul%s:\n    image: %s\n' "$n" "$KONSUL_IMAGE" >>"$override"
  done
  compose+=(-f "$override")
fi

wait_for() {  # url
  for _ in $(seq 1 600); do
    curl -fsS --max-time 2 "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "compose: timed out waiting for $1" >&2
  return 1
}

join() {  # n: the guide's join step, through konsul1's published port
  curl -fsS --max-time 30 -X POST http://localhost:8501/cluster/join \
    -H "Content-Type: application/json" \
    -d "{\"node_id\": \"node$1\", \"address\": \"konsul$1:7000\"}"
  echo
}

case "${1:-up}" in
  up)
    scripts/image/install-podman.sh
    # The file publishes fixed host ports: refuse early if something else holds them.
    if [ -z "$(podman ps -q --filter "label=io.podman.compose.project=$project")" ]; then
      busy=$(ss -Hltn '( sport = :8501 or sport = :8502 or sport = :8503 or sport = :7001 or sport = :7002 or sport = :7003 )')
      if [ -n "$busy" ]; then
        echo "compose: ports 8501-8503/7001-7003 are in use (another deployment? make compose-down):" >&2
        echo "$busy" >&2
        exit 1
      fi
    fi
    "${compose[@]}" up -d >/dev/null
    # The guide sleeps 10 s; polling is enough: every node serving, and a leader (node1 alone
    # on a new deployment; whoever wins on one that already holds a cluster).
    wait_for http://localhost:8502/health/live
    wait_for http://localhost:8503/health/live
    wait_for http://localhost:8501/health/ready
    peers=$(curl -fsS --max-time 5 http://localhost:8501/cluster/peers)
    for n in 2 3; do
      [[ $peers == *"\"node$n\""* ]] || join "$n"
    done
    curl -fsS --max-time 5 http://localhost:8501/cluster/status
    echo
    ;;
  status)
    curl -fsS --max-time 5 http://localhost:8501/cluster/status
    echo
    ;;
  down)
    "${compose[@]}" down --volumes >/dev/null
    ;;
  *)
    echo "usage: $0 up|status|down" >&2
    exit 2
    ;;
esac
