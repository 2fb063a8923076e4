#!/usr/bin/env bash
# podman with the repository's settings (scripts/image/containers.conf): use it wherever you
# would type `podman`, e.g. scripts/image/podman.sh ps -a
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "$0")" && pwd)/containers.conf}"
exec podman "$@"
