#!/usr/bin/env bash
# What the local Kubernetes plane needs on a Debian machine, installed once and only when
# missing (idempotent): iproute2 and nftables (bridge, pod
# namespaces, the forward firewall), and podman as `make image` installs it. Without podman the
# plane still runs, its kubelet falling back to local processes (and saying so).
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "install-deps: run as root: apt-get install ${need[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt="apt-get -o DPkg::Lock::Timeout=600 -y -q"
  $apt install --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { $apt update >/dev/null && $apt install --no-install-recommends "${need[@]}" >/dev/null; }
fi
if [ -x scripts/image/install-podman.sh ]; then
  scripts/image/install-podman.sh || echo "install-deps: podman not installed; pods will run as local processes" >&2
fi
