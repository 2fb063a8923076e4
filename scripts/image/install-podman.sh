#!/usr/bin/env bash
# What building and running the image needs on a Debian machine without Docker, installed once
# and only when missing (idempotent): podman (rootful) with the runc runtime (crun refuses the
# hybrid cgroup layout of these machines), netavark + aardvark-dns (compose networks and their
# name resolution) with iptables (netavark's firewall driver), debootstrap (the base images, see base-images.sh), and podman-compose in the
# venv (PyPI's, newer than Debian's 1.0.3).
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
for tool in podman:podman runc:runc debootstrap:debootstrap \
            /usr/lib/podman/netavark:netavark /usr/lib/podman/aardvark-dns:aardvark-dns \
            iptables:iptables conmon:conmon; do
  probe=${tool%%:*} pkg=${tool##*:}
  if [[ $probe == /* ]]; then [ -x "$probe" ] || need+=("$pkg")
  else command -v "$probe" >/dev/null 2>&1 || need+=("$pkg"); fi
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-podman: run as root (rootful podman): apt-get install ${need[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt="apt-get -o DPkg::Lock::Timeout=600 -y -q"
  # --no-install-recommends: no crun, no slirp/fuse-overlayfs for rootless, no buildah.
  $apt install --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { $apt update >/dev/null && $apt install --no-install-recommends "${need[@]}" >/dev/null; }
fi
venv=${VENV:-.venv}
if [ -x "$venv/bin/python" ] && [ ! -x "$venv/bin/podman-compose" ]; then
  "$venv/bin/python" -P -m pip install --quiet 'podman-compose==1.6.0'
fi
# Network safety: packets for the container ranges never leave by the default route, even while
# no podman network holds them (after a compose down, say). More specific bridge routes win.
if [ "$(id -u)" -eq 0 ]; then
  guarded=$(ip route show type unreachable)
  for range in 10.88.0.0/16 10.89.0.0/16; do
    [[ $guarded == *"unreachable $range metric 4000"* ]] || ip route add unreachable "$range" metric 4000
  done
fi
