"""Every name the local plane uses: paths, address ranges, ports, object names. Nothing else in
e2e/plane spells them (the ranges are agreed with the other users of this machine: podman and
the compose tests keep 10.88/16 and 10.89/16, the netns tests random 10.200-250.x/24)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("KONSUL_PLANE_STATE", REPO / "build" / "k8s"))
KUBECONFIG = STATE / "kubeconfig"          # the admin kubeconfig `make k8s-up` prints
PKI = STATE / "pki"
LOGS = STATE / "logs"
RUN = STATE / "run"                        # pid files
ETCD_DATA = STATE / "etcd"
KUBELET_ROOT = STATE / "kubelet"           # per node: pods/<uid>/ with volumes and logs
VERSIONS_FILE = REPO / "scripts" / "k8s" / "versions.env"
BUILD_SCRIPT = REPO / "scripts" / "k8s" / "build.sh"
# podman with the repository's settings, the same file `make image` builds with.
CONTAINERS_CONF = REPO / "scripts" / "image" / "containers.conf"
# KCM's host-path provisioner creates its volumes here (fixed in pkg/volume/hostpath: it only
# deletes under /tmp); `make k8s-down` removes the directory.
HOSTPATH_PV_ROOT = Path("/tmp/hostpath_pv")

# --- network ------------------------------------------------------------------------------
BRIDGE = "kpl0"
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")       # all on the bridge
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")    # unreachable: no kube-proxy here
BRIDGE_IP = ipaddress.ip_address("10.244.0.1")         # API server, DNS; pods' gateway
UNREACHABLE = (SERVICE_CIDR,)                          # every range we use that is not on kpl0
NFT_TABLE = "kpl"                                      # inet table: no forwarding off the bridge
NETNS_PREFIX = "kpl-"
VETH_PREFIX = "kpl"                                    # host side: kpl<10 hex>
CLUSTER_DOMAIN = "cluster.local"
HOSTS_FILE = Path("/etc/hosts")
HOSTS_BEGIN = "# BEGIN konsul local plane (make k8s-down removes this block)"
HOSTS_END = "# END konsul local plane"

# --- ports (the API server and DNS on the bridge; the rest on loopback) ---------------------
ETCD_CLIENT_PORT = 23790   # not etcd's 2379: the benchmark runs its own etcd on this machine
ETCD_PEER_PORT = 23800
APISERVER_PORT = 6443
KCM_PORT = 10257
SCHEDULER_PORT = 10259
DNS_PORT = 53
KUBELET_PORT = 10250
API_URL = f"https://{BRIDGE_IP}:{APISERVER_PORT}"
ETCD_URL = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"

# --- nodes ----------------------------------------------------------------------------------
NODE_COUNT = int(os.environ.get("KONSUL_PLANE_NODES", "3"))
NODE_PREFIX = "kpl-node-"
LEASE_SECONDS = 20        # the kubelet renews every quarter of it, as a real one does
NODE_GRACE = "20s"        # KCM marks a node NotReady once its lease is this old
STORAGE_CLASS = "standard"


def node_name(index: int) -> str:
    return f"{NODE_PREFIX}{index}"


def node_index(name: str) -> int:
    return int(name.removeprefix(NODE_PREFIX))


def node_ip(index: int) -> ipaddress.IPv4Address:
    """Node i answers on 10.244.i.1 (an extra address of the bridge) and gives its pods
    10.244.i.2-254, so a pod IP says which node runs it."""
    return ipaddress.IPv4Address(int(POD_CIDR.network_address) + (index << 8) + 1)


def node_pod_range(index: int) -> list[ipaddress.IPv4Address]:
    base = int(POD_CIDR.network_address) + (index << 8)
    return [ipaddress.IPv4Address(base + host) for host in range(2, 255)]


def versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in VERSIONS_FILE.read_text().splitlines()
             if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def bin_dir() -> Path:
    """Where scripts/k8s/build.sh puts the programs (same rule as the script)."""
    v = versions()
    cache = os.environ.get("KONSUL_K8S_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "konsul-k8s")
    return Path(cache) / f"kube-{v['KUBE_VERSION']}-etcd-{v['ETCD_VERSION']}" / "bin"


def kubectl() -> str:
    return str(bin_dir() / "kubectl")
