#!/usr/bin/env bash
# System tools some tests need, installed once and only when missing (idempotent):
#   ip (iproute2) and nft (nftables) for the network-partition tests in tests/cluster, which
#   also need root; promtool (prometheus) for the operator's alert-rule tests; chromium for the
#   web UI's browser tests.
#   Without root this prints why and exits 0: those tests then skip with a reason.
set -euo pipefail
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
# promtool (Debian package prometheus) for the alert-rule tests in tests/operator/test_manifests.py.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# Debian's Chromium for the web UI's browser tests in tests/ui: Playwright drives /usr/bin/chromium
# (executable_path), never a browser download of its own.
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: not root, not installing ${missing[*]} (partition and browser tests will skip)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: no apt-get; install ${missing[*]} by hand (partition and browser tests will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Several installs may run at once on a shared machine: wait for dpkg's lock instead of failing.
apt() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
apt install -y -q "${missing[@]}" >/dev/null 2>&1 \
  || { apt update -q >/dev/null && apt install -y -q "${missing[@]}" >/dev/null; }
