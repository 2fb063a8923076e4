"""The plane's network on this host, and each pod's namespace on it.

Safety (the developers' guide): pods may talk to each other, to the bridge's addresses (API
server, DNS, kubelets) and to nothing else. The bridge ``kpl0`` holds the whole pod range; every
other range the plane uses (the Service range: there is no kube-proxy) gets an ``unreachable``
route on the host and in each pod; and an nftables ``forward`` chain drops anything routed from
the bridge to another interface or back, because podman turns ``net.ipv4.ip_forward`` on and a
pod's default route points at the host. IPv6 is off on the bridge and in the pods.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

from e2e.plane import names

NFT_RULES = f"""
table inet {names.NFT_TABLE} {{
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "{names.BRIDGE}" oifname "{names.BRIDGE}" accept
        iifname "{names.BRIDGE}" counter drop comment "pod traffic never leaves the plane"
        oifname "{names.BRIDGE}" counter drop comment "nothing from outside reaches a pod"
    }}
}}
"""


def sh(*argv: str, stdin: str | None = None,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _write_sysctl(path: str, value: str) -> None:
    Path(path).write_text(value)


def ensure_host(node_count: int) -> None:
    """Bridge, its addresses (gateway + one per node), unreachable routes, firewall. Idempotent."""
    if sh("ip", "link", "show", names.BRIDGE, check=False).returncode != 0:
        sh("ip", "link", "add", names.BRIDGE, "type", "bridge")
    _write_sysctl(f"/proc/sys/net/ipv6/conf/{names.BRIDGE}/disable_ipv6", "1")
    batch = [f"addr replace {names.BRIDGE_IP}/{names.POD_CIDR.prefixlen} dev {names.BRIDGE}"]
    batch += [f"addr replace {names.node_ip(i)}/32 dev {names.BRIDGE}"
              for i in range(1, node_count + 1)]
    batch += [f"route replace unreachable {net}" for net in names.UNREACHABLE]
    batch.append(f"link set {names.BRIDGE} up")
    sh("ip", "-batch", "-", stdin="\n".join(batch) + "\n")
    # Replace the table whole: `add` then `delete` makes the delete safe on a first run.
    sh("nft", "-f", "-", stdin=f"table inet {names.NFT_TABLE}\n"
       f"delete table inet {names.NFT_TABLE}\n{NFT_RULES}")


def node_address(index: int, present: bool = True) -> None:
    """Add (or remove) node ``index``'s address on the bridge: a node started by hand."""
    verb = "replace" if present else "del"
    sh("ip", "addr", verb, f"{names.node_ip(index)}/32", "dev", names.BRIDGE, check=present)


def teardown_host() -> list[str]:
    """Remove every pod namespace and veth, the bridge, the routes and the table. Returns what
    it removed, for the log."""
    removed = []
    for netns in pod_namespaces():
        # The process fallback's containers live in these namespaces: they go first.
        for pid in sh("ip", "netns", "pids", netns, check=False).stdout.split():
            sh("kill", "-KILL", pid, check=False)
            removed.append(f"process {pid} in {netns}")
        sh("ip", "netns", "del", netns, check=False)
        removed.append(f"netns {netns}")
    links = sh("ip", "-o", "link", "show").stdout.splitlines()
    for line in links:
        ifname = line.split(":")[1].strip().split("@")[0]
        if ifname == names.BRIDGE or (ifname.startswith(names.VETH_PREFIX) and ifname != "kpl0"):
            sh("ip", "link", "del", ifname, check=False)
            removed.append(f"link {ifname}")
    for net in names.UNREACHABLE:
        if sh("ip", "route", "del", "unreachable", str(net), check=False).returncode == 0:
            removed.append(f"route unreachable {net}")
    if sh("nft", "delete", "table", "inet", names.NFT_TABLE, check=False).returncode == 0:
        removed.append(f"nft table inet {names.NFT_TABLE}")
    return removed


def pod_namespaces() -> list[str]:
    netns_dir = Path("/run/netns")
    if not netns_dir.is_dir():
        return []
    return sorted(p.name for p in netns_dir.iterdir() if p.name.startswith(names.NETNS_PREFIX))


def pod_netns_name(uid: str) -> str:
    return names.NETNS_PREFIX + uid.replace("-", "")[:12]


def pod_veth_name(uid: str) -> str:
    return names.VETH_PREFIX + uid.replace("-", "")[:10]   # interface names stop at 15 bytes


def create_pod_netns(uid: str, ip: ipaddress.IPv4Address) -> str:
    """A namespace with loopback and eth0 (veth to the bridge) holding ``ip``; default route via
    the bridge, the Service range unreachable. Returns the namespace name. Idempotent."""
    netns, veth = pod_netns_name(uid), pod_veth_name(uid)
    if netns in pod_namespaces():
        return netns
    sh("ip", "netns", "add", netns)
    try:
        # Before eth0 exists, so it never gets an IPv6 address, and announces its address
        # with a gratuitous ARP when it comes up (arp_notify), as CNI's bridge plugin does: a
        # pod often gets an address a deleted pod had, and neighbours still holding the old
        # MAC would otherwise send into the void until their entry expires (up to a minute).
        sh("ip", "netns", "exec", netns, "sh", "-c",
           "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6;"
           " echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6;"
           " echo 1 > /proc/sys/net/ipv4/conf/default/arp_notify")
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        sh("ip", "-batch", "-", stdin=(
            f"link set {veth} master {names.BRIDGE}\nlink set {veth} up\n"))
        inside = ["link set lo up",
                  f"addr add {ip}/{names.POD_CIDR.prefixlen} dev eth0",
                  "link set eth0 up",
                  f"route add default via {names.BRIDGE_IP}"]
        inside += [f"route add unreachable {net}" for net in names.UNREACHABLE]
        sh("ip", "-n", netns, "-batch", "-", stdin="\n".join(inside) + "\n")
    except Exception:
        delete_pod_netns(uid)
        raise
    return netns


def delete_pod_netns(uid: str) -> None:
    sh("ip", "netns", "del", pod_netns_name(uid), check=False)   # takes the veth pair with it
    sh("ip", "link", "del", pod_veth_name(uid), check=False)


def forward_drops() -> int:
    """Packets the firewall dropped on their way off the bridge (the safety test reads it)."""
    out = sh("nft", "list", "chain", "inet", names.NFT_TABLE, "forward").stdout
    for line in out.splitlines():
        if "pod traffic never leaves" in line:
            return int(line.split("packets")[1].split()[0])
    raise AssertionError(f"no drop rule in:\n{out}")
