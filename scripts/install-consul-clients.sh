#!/usr/bin/env bash
# Real Consul clients the /v1 tests drive (tests/consul), installed once and only when missing:
#   python3-consul   python-consul 0.7.1, the older client, for Debian's /usr/bin/python3 (the
#                    tests run it there, in a process of its own, never in the venv);
#   victoria-metrics Prometheus-compatible consul_sd_configs discovery.
# py-consul comes from PyPI with the test extras. Without root or apt this prints why and exits 0:
# those tests then skip with the reason.
set -euo pipefail
missing=()
/usr/bin/python3 -I -c 'import consul' >/dev/null 2>&1 || missing+=(python3-consul)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-consul-clients: cannot install ${missing[*]} (not root or no apt-get);" \
       "the tests that drive them will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
apt install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || { apt update -q >/dev/null && apt install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
