#!/usr/bin/env bash
# `make image`: the repository's Dockerfile built with podman, tagged konsul:<version>, on base
# images made here (base-images.sh). What differs from `docker build -t konsul:0.1.0 .` is only
# how podman is told about this machine, never the Dockerfile:
#   --pull=never       there is no registry; the base images are the local ones
#   --network host     pip installs from PyPI through the host's network, not a NATed bridge
#   /etc/ssl/certs     the host's CA bundle, which that network's TLS is verified against
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/image/install-podman.sh
scripts/image/base-images.sh
version=$(python3 -P -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
tag=${KONSUL_IMAGE:-konsul:$version}
start=$(date +%s.%N)
# build/image.id names exactly this build (other checkouts on the machine tag theirs konsul:<version>
# too); the local Kubernetes plane copies that image into its own store.
mkdir -p build
scripts/image/podman.sh build --pull=never --network host \
  --volume /etc/ssl/certs:/etc/ssl/certs:ro --iidfile build/image.id \
  --tag "$tag" --file Dockerfile . >&2
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
size=$(scripts/image/podman.sh image inspect --format '{{.Size}}' "$tag")
printf 'image %s: built in %.1f s, %d MB\n' "$tag" "$elapsed" $((size / 1000000))
