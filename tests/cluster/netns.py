"""Network namespaces for partition tests (root only): each node in its own namespace on a
private /24, all joined by a bridge in a "switch" namespace, and one more namespace for the
test's own HTTP client. A partition is an nftables table inside a node's namespace that drops
everything to and from the other nodes while the client can still watch it.

Safety (docs: /work/shared/reference/tooling.md, "Network faults"): before any namespace exists
the root namespace gets ``ip route add blackhole <subnet>``, removed again at teardown, so no
packet for the private subnet can ever leave through the default route; test traffic is sent
only from inside the namespaces (the client namespace's sockets are made by threads that
``setns`` into it).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster_harness import HTTP_PORT, RAFT_PORT, ClusterNode, LocalCluster
from tests.processes import REPO, http, wait_until

CLONE_NEWNET = 0x40000000
CLIENT = 200  # the client's host number in the subnet
NETNS_ETC = Path("/etc/netns")  # per-namespace files that `ip netns exec` mounts over /etc


def unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces and nftables need root"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}: run scripts/install-test-deps.sh"
    return None


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def _routed_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination in any routing table (types such as ``unreachable`` skipped)."""
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    ).stdout
    networks = []
    for line in routes.splitlines():
        for word in line.split()[:2]:
            try:
                networks.append(ipaddress.IPv4Network(word, strict=False))
                break
            except ValueError:
                continue
    return networks


def _free_private_prefix() -> str:
    """A 10.x.y /24 that overlaps no route on this machine (the local Kubernetes plane's
    10.244.0.0/16, podman's networks, another lab's subnet)."""
    taken = _routed_networks()
    rng = random.Random()
    for _ in range(100):
        prefix = f"10.{rng.randint(200, 250)}.{rng.randint(0, 255)}"
        candidate = ipaddress.IPv4Network(f"{prefix}.0/24")
        if not any(candidate.overlaps(net) for net in taken if net.prefixlen > 0):
            return prefix
    raise RuntimeError("no free private /24")


@dataclass
class NetnsLab:
    prefix: str = field(default_factory=_free_private_prefix)
    tag: str = field(default_factory=lambda: f"{random.getrandbits(24):06x}")
    namespaces: list[str] = field(default_factory=list)
    names: dict[str, int] = field(default_factory=dict)  # name -> host number (hosts files)
    _pool: concurrent.futures.ThreadPoolExecutor | None = None
    _blackholed: bool = False

    @property
    def subnet(self) -> str:
        return f"{self.prefix}.0/24"

    def ns(self, host: int) -> str:
        return f"k{self.tag}-{host}"

    @property
    def switch(self) -> str:
        return f"k{self.tag}-sw"

    def setup(self, hosts: list[int]) -> NetnsLab:
        _run("ip", "route", "add", "blackhole", self.subnet)  # first, before any namespace
        self._blackholed = True
        _run("ip", "netns", "add", self.switch)
        self.namespaces.append(self.switch)
        _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for host in [*hosts, CLIENT]:
            self.add_host(host)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=8, initializer=self._enter_client_namespace
        )
        return self

    def add_host(self, host: int) -> None:
        ns, port = self.ns(host), f"p{self.tag}{host}"
        _run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port,
             "netns", self.switch)
        _run("ip", "-n", ns, "addr", "add", f"{self.prefix}.{host}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", self.switch, "link", "set", port, "master", "br0")
        _run("ip", "-n", self.switch, "link", "set", port, "up")
        if self.names:
            self._write_hosts()

    # --------------------------------------------------------------------------- names

    def name(self, name: str, host: int) -> None:
        """Make ``name`` resolve to ``host``'s address in every namespace, as a container
        network's DNS does (through the hosts file ``ip netns exec`` mounts over /etc/hosts).
        Naming it again to another host is how a restarted container comes back elsewhere."""
        self.names[name] = host
        self._write_hosts()

    def _write_hosts(self) -> None:
        lines = ["127.0.0.1 localhost"]
        lines += [f"{self.prefix}.{host} {name}" for name, host in self.names.items()]
        for ns in self.namespaces:
            folder = NETNS_ETC / ns
            folder.mkdir(parents=True, exist_ok=True)
            # Rewritten in place (same inode): processes already running see the new address.
            (folder / "hosts").write_text("\n".join(lines) + "\n")
            # Names outside the lab fail at once: nothing answers DNS on the namespace's loopback.
            (folder / "resolv.conf").write_text("nameserver 127.0.0.1\n")

    def remove_host(self, host: int) -> None:
        """Delete a namespace whose processes are dead: its veth and its address vanish, and
        whatever is still sent there meets silence, not a connection reset."""
        ns = self.ns(host)
        _run("ip", "netns", "del", ns)
        self.namespaces.remove(ns)
        shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        self.namespaces.clear()
        if self._blackholed:  # last, after every namespace is gone
            subprocess.run(["ip", "route", "del", "blackhole", self.subnet], capture_output=True)
            self._blackholed = False

    # ------------------------------------------------------------------------ partitions

    def isolate(self, host: int, *, inbound_only: bool = False) -> None:
        """Drop every packet between ``host`` and the other nodes (with ``inbound_only``, only
        what they send to it: a one-way cut); the client still reaches it both ways."""
        client = f"{self.prefix}.{CLIENT}"
        output = "" if inbound_only else f"ip daddr {self.subnet} ip daddr != {client} drop;"
        rules = f"""
table inet partition {{
  chain input {{ type filter hook input priority 0; policy accept;
    ip saddr {self.subnet} ip saddr != {client} drop; }}
  chain output {{ type filter hook output priority 0; policy accept;
    {output} }}
}}
"""
        subprocess.run(
            ["ip", "netns", "exec", self.ns(host), "nft", "-f", "-"],
            input=rules.encode(), check=True, capture_output=True, timeout=20,
        )

    def heal(self, host: int) -> None:
        _run("ip", "netns", "exec", self.ns(host), "nft", "delete", "table", "inet", "partition")

    # ---------------------------------------------------------------------------- client

    def _enter_client_namespace(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.ns(CLIENT)}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the client namespace failed")
        finally:
            os.close(fd)

    def http(
        self, method: str, url: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, dict[str, str], Any]:
        """``tests.processes.http`` run from inside the client namespace."""
        assert self._pool is not None
        return self._pool.submit(http, method, url, body, timeout).result(timeout + 5)


@dataclass
class NetnsNode(ClusterNode):
    lab: NetnsLab | None = None
    number: int = 0

    def start(self, timeout: float = 20.0) -> NetnsNode:
        assert self.lab is not None
        env = {
            **os.environ,
            "KONSUL_HOST": self.host,
            "KONSUL_PORT": str(self.port),
            "KONSUL_DATA_DIR": str(self.data_dir),
            **self.env,
        }
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.lab.ns(self.number), sys.executable, "-m", "konsul"],
                env=env, stdout=log, stderr=log, cwd=REPO,
            )
        wait_until(self.healthy, timeout, f"konsul in {self.lab.ns(self.number)} to answer")
        return self

    def healthy(self) -> bool:
        assert self.lab is not None
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"konsul exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            code, _, _ = self.lab.http("GET", self.url + self.ready_path, timeout=1.0)
        except OSError:
            return False
        return code == 200

    def status(self) -> dict[str, Any] | None:
        assert self.lab is not None
        try:
            code, _, body = self.lab.http("GET", self.url + "/cluster/status", timeout=2)
        except OSError:
            return None
        return body if code == 200 else None


@dataclass
class NetnsCluster(LocalCluster):
    lab: NetnsLab | None = None

    def make_node(self, n: int, bootstrap: bool = False) -> ClusterNode:
        base = super().make_node(n, bootstrap)
        return NetnsNode(
            data_dir=base.data_dir, host=base.host, port=base.port, env=base.env,
            node_id=base.node_id, ready_path=base.ready_path, lab=self.lab, number=n,
        )

    def start(self) -> NetnsCluster:
        first = self.nodes[0]
        first.start()
        wait_until(lambda: (first.status() or {}).get("state") == "Leader", 20, "node1 to lead")
        for node in self.nodes[1:]:
            node.start()
            self.join(node)
        self.wait_converged()
        return self

    def join(self, node: ClusterNode, via: ClusterNode | None = None) -> dict[str, Any]:
        assert self.lab is not None
        target = via or self.leader()
        code, _, body = self.lab.http(
            "POST", target.url + "/cluster/join",
            {"node_id": node.node_id, "address": f"{node.host}:{RAFT_PORT}"}, timeout=40,
        )
        assert code == 200, f"join {node.node_id} -> {code} {body}"
        return dict(body)


def make_cluster(root: Path, lab: NetnsLab, size: int = 3) -> NetnsCluster:
    return NetnsCluster(root, size=size, prefix=lab.prefix, lab=lab)


# A member killed with its namespace comes back elsewhere under its name, as a container or pod
# does (tests/cluster/test_cluster_netns_kill.py, bench/failover.py).
MOVED = 10  # a member that moves from host n comes back as host n + MOVED


class NamedCluster(NetnsCluster):
    """Members advertised as ``k<n>:7000``; the lab's hosts files say where k<n> is now."""

    def make_node(self, n: int, bootstrap: bool = False) -> ClusterNode:
        node = super().make_node(n, bootstrap)
        assert self.lab is not None
        self.lab.name(f"k{n}", n)
        node.env.update({
            "KONSUL_RAFT_BIND_ADDR": f"0.0.0.0:{RAFT_PORT}",
            "KONSUL_RAFT_ADVERTISE_ADDR": f"k{n}:{RAFT_PORT}",
        })
        return node

    def join(self, node: ClusterNode, via: ClusterNode | None = None) -> dict[str, object]:
        assert self.lab is not None and isinstance(node, NetnsNode)
        target = via or self.leader()
        code, _, body = self.lab.http(
            "POST", target.url + "/cluster/join",
            {"node_id": node.node_id, "address": f"k{node.number}:{RAFT_PORT}"}, timeout=40,
        )
        assert code == 200, f"join {node.node_id} -> {code} {body}"
        return dict(body)

    def kill_namespace(self, node: NetnsNode) -> None:
        """The process dies (its connections are closed), then its address vanishes."""
        assert self.lab is not None
        node.kill(signal.SIGKILL)
        self.lab.remove_host(node.number)

    def restart_elsewhere(self, node: NetnsNode) -> None:
        assert self.lab is not None
        name = f"k{node.number % MOVED}"
        node.number += MOVED
        node.host = f"{self.lab.prefix}.{node.number}"
        self.lab.add_host(node.number)
        self.lab.name(name, node.number)
        node.env["KONSUL_HTTP_ADVERTISE_ADDR"] = f"{node.host}:{HTTP_PORT}"
        node.start()
