"""``python -m konsul.raft.sim --bench``: entries committed per CPU-second.

A 3-node, fault-free cluster on the simulated network and disk (instant fsyncs, one-tick
delivery), clients keeping the leader busy with batches of proposals, the invariant checks
switched off so that the figure is dominated by the core (three cores do the work a real
cluster spreads over three machines, so this is the cost of a commit summed over the cluster).
"""

from __future__ import annotations

import time
from dataclasses import replace

from konsul.raft.core import CoreConfig
from konsul.raft.sim.cluster import Cluster, SimConfig
from konsul.raft.sim.invariants import Ack, Checker
from konsul.raft.sim.nemesis import Operator
from konsul.raft.sim.run import _setup
from konsul.raft.types import Entry


class _NoChecks(Checker):
    """The checker with its per-entry work removed (elections are still counted)."""

    def entries_written(self, node: str, prev_term: int | None, entries: list[Entry]) -> None:
        pass

    def applied(self, node: str, entry: Entry, digest: int) -> None:
        pass

    def acknowledged(self, ack: Ack) -> None:
        pass


def bench(ticks: int = 3000, batch: int = 64, nodes: int = 3) -> str:
    cfg = SimConfig(nodes=nodes, fault_rate=0.0, membership=False, disk_loss=False)
    defaults = CoreConfig()  # the runtime's byte limits, not the simulator's small ones
    cfg.core = replace(
        cfg.core,
        max_append_bytes=defaults.max_append_bytes,
        max_inflight_bytes=defaults.max_inflight_bytes,
    )
    cfg.read_rate = 0.0
    cfg.propose_rate = 0.0
    cfg.wire_rate = 0.0
    cfg.snapshot_threshold = 10_000
    cluster = Cluster(1, cfg)
    _setup(cluster, Operator(cluster))
    cluster.checker = _NoChecks()
    cluster.network.faults.max_delay = 1
    cluster.network.faults.min_delay = 1
    leader = cluster.leader()
    assert leader is not None
    first = leader.fsm.applied
    start_cpu = time.process_time()
    start_tick = cluster.now
    for _ in range(ticks):
        # Keep about four batches in flight, like clients waiting on their acknowledgements.
        if leader.core is not None and leader.core.last_index - leader.fsm.applied < 4 * batch:
            cluster.propose(leader, batch)
        cluster.step()
    cpu = time.process_time() - start_cpu
    committed = leader.fsm.applied - first
    sim_seconds = (cluster.now - start_tick) / 100
    return (
        f"bench nodes={nodes} batch={batch} committed={committed} cpu_s={cpu:.2f} "
        f"entries_per_cpu_s={committed / cpu:.0f} sim_s={sim_seconds:.0f} "
        f"entries_per_sim_s={committed / sim_seconds:.0f}"
    )
