"""The local Kubernetes plane: real kube-apiserver, controller-manager, scheduler and etcd built
from the Go modules (scripts/k8s/build.sh), plus a kubelet and a DNS server of our own that run
pods as podman containers in per-pod network namespaces on the bridge ``kpl0``.

    python -m e2e.plane up      # make k8s-up: build what is missing, start, print KUBECONFIG=
    python -m e2e.plane down    # make k8s-down: stop everything, remove every trace

Where things live: ``names`` (every path, address, port and name), ``pki`` (certificates),
``hostnet`` (bridge, routes, firewall, pod namespaces), ``daemons`` (detached processes with
pid files), ``launcher`` (up/down), ``kube`` (a small asyncio API client), ``dns`` (cluster DNS),
``kubelet/`` (nodes and pods). docs/testing.md tells what the plane is and is not.
"""
