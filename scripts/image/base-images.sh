#!/usr/bin/env bash
# The two base images the Dockerfile names, made locally because these machines reach no image
# registry: Debian bookworm root filesystems with Debian's Python 3.11 (debootstrap), imported
# under the official names, so `podman build` runs the very Dockerfile users build with Docker.
#   python:3.11-slim-bookworm  the runtime stage: python3, certificates
#   python:3.11-bookworm       the build stage: the same plus venv and pip (every dependency of
#                              Konsul installs from a wheel, so no compilers are needed)
# Each root filesystem is kept as a tarball under $KONSUL_IMAGE_CACHE (outside the repository),
# so only the first run pays for debootstrap; an image already in podman's store is left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
podman="$here/podman.sh"
cache=${KONSUL_IMAGE_CACHE:-/var/cache/konsul-image}
suite=bookworm
python=3.11
common=python3,python-is-python3,ca-certificates,netbase,tzdata
trim='var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb var/log/* tmp/*
      usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/*'
declare -A include=(
  [slim-$suite]=$common
  [$suite]=$common,python3-venv,python3-pip
)

rootfs_tarball() {  # flavour -> path of its cached tarball, made if missing
  local flavour=$1 packages=${include[$1]}
  # The recipe is part of the name: a changed package list or trim makes a new tarball.
  local tarball="$cache/$flavour-$(printf '%s %s' "$packages" "$trim" | sha256sum | cut -c1-12).tar"
  if [ ! -s "$tarball" ]; then
    local dir
    dir=$(mktemp -d "$cache/rootfs.XXXXXX")
    echo "base-images: debootstrap $suite ($flavour) into $dir" >&2
    debootstrap --variant=minbase --include="$packages" --cache-dir="$cache/debs" \
      "$suite" "$dir" >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }
    local got
    got=$(chroot "$dir" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [ "$got" = "$python" ] || { echo "base-images: $suite has Python $got, not $python" >&2; exit 1; }
    # What Debian's slim images leave out too: package lists, caches, logs, docs, translations.
    (cd "$dir" && rm -rf $trim)
    tar --numeric-owner --sort=name -C "$dir" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$dir" "$dir.log"
  fi
  printf '%s\n' "$tarball"
}

mkdir -p "$cache/debs"
for flavour in "slim-$suite" "$suite"; do
  name="docker.io/library/python:$python-$flavour"
  "$podman" image exists "$name" && continue
  tarball=$(rootfs_tarball "$flavour")
  # The official images' environment: UTF-8 locale, python3 as the default command.
  "$podman" import --quiet \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    "$tarball" "$name" >/dev/null
  echo "base-images: imported $name from $tarball" >&2
done
