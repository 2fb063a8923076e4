"""A member's whole network namespace killed, and the member back at a new address under the
same name: what a container runtime or Kubernetes does to a killed container or pod (network
namespaces, root only; see tests/cluster/netns.py).

Members are advertised by name (``k1:7000``), as in the guide's compose file. Killing a member
kills its process (the kernel closes its connections) and then deletes its namespace: its address
vanishes, and anything still sent there meets silence, not a reset. The member restarts in a new
namespace at a new address, and its name now resolves there.

The scenario leaves a follower holding a connection to a peer that has since moved, then kills
the leader: that follower and the moved peer must elect each other at once. (Before the
transport noticed a peer closing its end, the follower's votes went into the old connection
and vanished for seconds; a killed leader container took 2-7 s to replace.)
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.cluster.conftest import Figure
from tests.cluster.netns import NamedCluster, NetnsLab, NetnsNode, unavailable_reason
from tests.cluster_harness import ClusterNode
from tests.processes import wait_until

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

FAILOVER_BOUND_S = 1.5  # the bar for the slowest of ten kills


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    lab = NetnsLab()
    try:
        try:
            lab.setup([1, 2, 3])
        except subprocess.CalledProcessError as exc:
            if b"Operation not permitted" not in (exc.stderr or b""):
                raise
            pytest.skip(f"network namespaces not permitted here: {exc.stderr.decode().strip()}")
        yield lab
    finally:
        lab.teardown()


@pytest.fixture
def cluster(tmp_path: pytest.TempPathFactory, lab: NetnsLab) -> Iterator[NamedCluster]:
    c = NamedCluster(tmp_path, size=3, prefix=lab.prefix, lab=lab)  # type: ignore[arg-type]
    try:
        yield c.start()  # type: ignore[misc]
    finally:
        c.stop()


def accepts_write(cluster: NamedCluster, node: ClusterNode) -> bool:
    assert cluster.lab is not None
    try:
        code, _, _ = cluster.lab.http("PUT", node.url + "/kv/failover", {"value": "x"}, 0.5)
    except OSError:
        return False
    return code == 200


def test_leader_killed_with_its_namespace_after_a_peer_moved_is_replaced_at_once(
    cluster: NamedCluster, figure: Figure
) -> None:
    assert cluster.lab is not None
    node1, node2, node3 = (n for n in cluster.nodes if isinstance(n, NetnsNode))
    assert cluster.leader() is node1
    # node1 leads and has talked to node3; handing leadership to node2 leaves node1 a follower
    # whose connection to node3 now sits idle.
    code, _, body = cluster.lab.http("POST", node1.url + "/cluster/transfer-leadership",
                                     {"node_id": "node2"}, timeout=10)
    assert code == 200, body
    wait_until(lambda: cluster.leader() is node2, 10, "node2 to lead")

    # node3 is killed with its namespace and comes back elsewhere as k3.
    cluster.kill_namespace(node3)
    cluster.restart_elsewhere(node3)
    cluster.wait_converged()

    # The leader dies with its namespace: node1 and the moved node3 must elect each other.
    cluster.kill_namespace(node2)
    killed = time.monotonic()
    wait_until(lambda: accepts_write(cluster, node1) or accepts_write(cluster, node3), 20,
               "a write to be accepted", interval=0.005)
    seconds = time.monotonic() - killed
    figure("failover_after_peer_moved_s", seconds, "s")
    assert seconds < FAILOVER_BOUND_S, f"a new leader took {seconds:.2f} s"


class ForwardingCluster(NamedCluster):
    """The guide's compose setting: followers forward writes (KONSUL_FORWARD_WRITES)."""

    def make_node(self, n: int, bootstrap: bool = False) -> ClusterNode:
        node = super().make_node(n, bootstrap)
        node.env["KONSUL_FORWARD_WRITES"] = "true"
        return node


@contextmanager
def silent_leader(cluster: NamedCluster, lab: NetnsLab) -> Iterator[tuple[NetnsNode, ClusterNode]]:
    """The cluster started and converged, then its leader's packets made to vanish (no reset: a
    killed container's address), both ways; yields that leader and a follower."""
    try:
        cluster.start()  # inside: a start that fails half-way stops what it started
        leader = cluster.leader()
        assert isinstance(leader, NetnsNode)
        follower = next(n for n in cluster.nodes if n is not leader)
        cluster.wait_converged()
        lab.isolate(leader.number)
        yield leader, follower
    finally:
        cluster.stop()


def test_a_write_forwarded_to_a_leader_gone_silent_goes_to_the_next_leader(
    tmp_path: pytest.TempPathFactory, lab: NetnsLab
) -> None:
    """A follower still forwarding to a leader whose packets now vanish gives up the connection
    early and forwards to the new leader, rather than answering 503 after the full connect
    timeout."""
    cluster = ForwardingCluster(tmp_path, size=3, prefix=lab.prefix, lab=lab)  # type: ignore[arg-type]
    with silent_leader(cluster, lab) as (leader, follower):
        code, _, body = lab.http("PUT", follower.url + "/kv/forwarded", {"value": "x"}, 10)
        assert code == 200, body
        new_leader = cluster.leader()
        assert new_leader is not leader
        code, _, body = lab.http("GET", new_leader.url + "/kv/forwarded", None, 5)
        assert code == 200 and body["value"] == "x", body


def test_a_v1_write_to_a_follower_whose_leader_went_silent_goes_to_the_next_leader(
    tmp_path: pytest.TempPathFactory, lab: NetnsLab
) -> None:
    """Consul's clients write to any member and never follow a redirect: a follower forwards
    every /v1 write. Its connection to a leader gone silent fails early (nothing was sent), and
    the write goes to the new leader, not back to the client as an unknown outcome."""
    cluster = NamedCluster(tmp_path, size=3, prefix=lab.prefix, lab=lab)  # type: ignore[arg-type]
    with silent_leader(cluster, lab) as (leader, follower):
        code, _, body = lab.http("PUT", follower.url + "/v1/kv/forwarded", "x", 15)
        assert (code, body) == (200, True), body
        new_leader = cluster.leader()
        assert new_leader is not leader
        code, _, body = lab.http("GET", new_leader.url + "/v1/kv/forwarded?raw", None, 5)
        assert code == 200 and body == "x", body
