#!/usr/bin/env bash
# Build the local Kubernetes plane's programs from the Go module proxy, once per version:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                             (go.etcd.io/etcd/server/v3)
# into a versioned cache outside the repository (default ~/.cache/konsul-k8s/<versions>/bin).
# Does nothing when every binary is there. Prints the bin directory on its last line.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod requires every staging module at
# v0.0.0 and replaces them with ./staging paths. So we generate a wrapper module that requires
# the release and replaces each of those v0.0.0 requirements with the same module at the
# matching v0.X.Y tag, reading the list from the release's own go.mod (never typed by hand).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"

cache_root="${KONSUL_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/konsul-k8s}"
dest="$cache_root/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"
bin="$dest/bin"
programs=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

missing() {
    local p
    for p in "${programs[@]}" etcd; do [[ -x "$bin/$p" ]] || return 0; done
    return 1
}
if ! missing; then echo "$bin"; exit 0; fi

# Go lives in /usr/local/go on these machines; a shell without it on PATH still finds it.
export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "build.sh: Go is not installed (the release needs Go 1.26)" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod
work="$dest/src"
rm -rf "$work" "$bin.partial"
mkdir -p "$work/kube" "$work/etcd" "$bin.partial"

log() { echo "build.sh: $*" >&2; }

# --- Kubernetes ---------------------------------------------------------------------------
minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
staging_version="v0.${KUBE_VERSION#v1.}"
release_gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
[[ -f "$release_gomod" ]] || { log "cannot download k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }
go_directive="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$release_gomod")"

cd "$work/kube"
cp "$repo/e2e/k8s/kube/tools.go" .
go mod init konsul.test/k8sbin >/dev/null 2>&1
go mod edit -go="$go_directive" -require="k8s.io/kubernetes@$KUBE_VERSION"
# Every `k8s.io/X v0.0.0` requirement of the release becomes `replace k8s.io/X => k8s.io/X v0.MM.P`.
staging=$(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$release_gomod")
[[ -n "$staging" ]] || { log "no v0.0.0 staging requirements found in $release_gomod"; exit 1; }
for m in $staging; do go mod edit -replace="$m=$m@$staging_version"; done
log "k8s.io/kubernetes $KUBE_VERSION (go $go_directive): $(wc -w <<<"$staging") staging modules at $staging_version"
go mod tidy

build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
for p in "${programs[@]}"; do
    log "building $p"
    go build -trimpath -ldflags "$ldflags" -o "$bin.partial/$p" "k8s.io/kubernetes/cmd/$p"
done

# --- etcd -----------------------------------------------------------------------------------
cd "$work/etcd"
cp "$repo/e2e/k8s/etcd/tools.go" .
go mod init konsul.test/etcdbin >/dev/null 2>&1
go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
go mod tidy
log "building etcd $ETCD_VERSION"
go build -trimpath -ldflags "-s -w" -o "$bin.partial/etcd" go.etcd.io/etcd/server/v3

# Publish all binaries at once: a build killed half-way leaves no half-filled bin/.
rm -rf "$bin"
mv "$bin.partial" "$bin"
rm -rf "$work"
"$bin/kube-apiserver" --version >&2
"$bin/etcd" --version | head -1 >&2
echo "$bin"
