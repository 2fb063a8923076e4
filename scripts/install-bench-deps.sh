#!/usr/bin/env bash
# What `make bench` needs beyond the venv: etcd (the comparison), wrk (the load generator),
# matplotlib (the chart). Idempotent; installs only what is missing.
set -euo pipefail
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install as root: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
"${VENV:-.venv}/bin/python" -c "import matplotlib" 2>/dev/null \
  || "${VENV:-.venv}/bin/python" -m pip install --quiet matplotlib
