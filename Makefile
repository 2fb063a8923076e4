# Konsul: every target installs what it needs first, so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SEEDS  ?= 20000
RUNS   ?= 50

.PHONY: run test test-deps lint typecheck unit sim jepsen cluster cluster-stop bench bench-quick bench-scale bench-scale-quick e2e manifests clean \
        k8s-build image image-test compose-up compose-down ui-screenshots k8s-up k8s-down

# -P keeps the working directory off sys.path: run from here, `python -m` would otherwise take
# operator/ for the standard library's operator module. (Once Konsul is installed, its editable
# finder imports the real one first, so later `python -m` calls are safe.)
$(STAMP): pyproject.toml
	$(PYTHON) -P -m venv $(VENV)
	$(PY) -P -m pip install --quiet --upgrade pip
	$(PY) -P -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Start a standalone node on 0.0.0.0:8500 with its data in ./data
run: $(STAMP)
	KONSUL_DATA_DIR=$${KONSUL_DATA_DIR:-./data} $(VENV)/bin/konsul

## Lint, type-check and run the whole suite
test: lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check konsul operator tests bench e2e scripts containers

# operator/ imports as konsul_operator. mypy searches the working directory first, where
# operator/ would pass for the standard library's operator, so it runs from a directory that
# holds both packages under their import names.
typecheck: $(STAMP)
	mkdir -p build/typecheck
	ln -sfn ../../konsul build/typecheck/konsul
	ln -sfn ../../operator build/typecheck/konsul_operator
	cd build/typecheck && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p konsul -p konsul_operator

# System tools the tests drive for real: ip/nft (partition tests), helm and promtool (chart),
# python-consul and VictoriaMetrics (Consul clients of the /v1 tests), Debian's Chromium (the web
# UI's browser tests).
test-deps: $(STAMP)
	scripts/install-test-deps.sh
	scripts/install-helm.sh
	scripts/install-consul-clients.sh

unit: $(STAMP) test-deps
	$(PY) -m pytest -q -p no:cacheprovider

## Three local nodes on 127.0.0.1-3 (HTTP 8500, Raft 7000), joined as the guide's quick start does
cluster: $(STAMP)
	scripts/cluster.sh start

cluster-stop:
	scripts/cluster.sh stop

## Konsul beside etcd on this machine; results in bench/results/. Then ten leader kills each
## as processes, with their network namespace, and as compose containers (bench/failover.py)
bench: $(STAMP) image
	scripts/install-bench-deps.sh
	$(PY) -m bench.run
	$(PY) -m bench.failover
	$(PY) -m bench.scale

## Issue 16's scale figures alone (checks, watchers beside etcd, catalog); -quick: one short round
bench-scale: $(STAMP)
	scripts/install-bench-deps.sh
	$(PY) -m bench.scale

bench-scale-quick: $(STAMP)
	scripts/install-bench-deps.sh
	$(PY) -m bench.scale --quick

bench-quick: $(STAMP)
	scripts/install-bench-deps.sh
	$(PY) -m bench.run --quick

## End-to-end on a real control plane (docs/testing.md): the local plane's own tests
## (e2e/test_plane.py) and the operator, chart and manifests scenarios (e2e/test_konsul.py). The
## plane is brought up if it is not running and taken down after; the image and the programs are
## built first. KONSUL_E2E_DRIVER=kind runs the scenarios on kind instead (docker and kind needed).
E2E_DRIVER := $(or $(KONSUL_E2E_DRIVER),plane)
e2e: $(STAMP) $(if $(filter kind,$(E2E_DRIVER)),,image k8s-build)
	scripts/install-helm.sh
	scripts/k8s/install-deps.sh
	$(PY) -m pytest -q -p no:cacheprovider -rs --timeout=1800 --durations=15 \
	  $(if $(filter kind,$(E2E_DRIVER)),e2e/test_konsul.py,e2e)

## Build the local Kubernetes plane's programs (kube-apiserver, controller-manager, scheduler,
## kubectl, etcd) from the Go module proxy into ~/.cache/konsul-k8s/, once per version
k8s-build:
	scripts/k8s/build.sh

## The image konsul:<version> from the Dockerfile, with podman on base images made here by
## debootstrap (no Docker engine or registry needed); podman's settings: scripts/image/containers.conf
image:
	scripts/image/build.sh

## The image's tests and the guide's compose deployment, run for real with podman (containers/)
image-test: $(STAMP) image
	$(PY) -m pytest -q -p no:cacheprovider containers

## The guide's Docker Compose deployment: three containers, joined as the guide does, writes
## accepted on every published port (8501-8503); compose-down removes it, volumes included
compose-up: $(STAMP) image
	scripts/image/compose.sh up

compose-down: $(STAMP)
	scripts/image/compose.sh down

## The local Kubernetes plane (docs/testing.md): builds what is missing, starts etcd, the API
## server, controller manager, scheduler, DNS and our kubelets, prints `export KUBECONFIG=...`
k8s-up: $(STAMP)
	scripts/k8s/install-deps.sh
	$(PY) -m e2e.plane up

## Stop the plane and remove every process, container, namespace, route and file it made
k8s-down: $(STAMP)
	$(PY) -m e2e.plane down

## Re-render manifests/, the chart's CRD copy and values.schema.json after a chart or CRD change
manifests: $(STAMP)
	scripts/install-helm.sh
	$(PY) scripts/render-manifests.py

## Re-make the README's pictures of the web UI (docs/img/ui-*.png) in Debian's headless Chromium
ui-screenshots: $(STAMP)
	scripts/install-test-deps.sh
	$(PY) scripts/ui-screenshots.py

## Long simulation campaign: make sim SEEDS=20000
sim: $(STAMP)
	$(PY) -m konsul.raft.sim --seeds $(SEEDS) --nodes 3
	$(PY) -m konsul.raft.sim --seeds $(SEEDS) --nodes 5

## Linearizability under faults, long campaign (about 30 s a run): make jepsen RUNS=50
## (JEPSEN_ARGS=--secure: TLS between members and on the API, ACLs on)
jepsen: $(STAMP)
	$(PY) -m tests.linearizability.jepsen --runs $(RUNS) --seconds 20 $(JEPSEN_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
