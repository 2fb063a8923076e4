"""One seed from start to verdict: bootstrap, faults, quiet period, liveness.

1. Setup (fault-free): the first node bootstraps a one-voter cluster and the operator joins
   the others one by one, as the Kubernetes operator does.
2. Faults: `steps` ticks of nemesis, operator and clients; invariants checked as it goes.
3. Quiet: every fault is undone (partitions healed, crashed nodes restarted, loss stopped);
   within `quiet_limit` ticks a leader must commit a fresh write, every proposal still pending
   must be resolved (applied, or provably lost: a leader of a later term does not hold it), the
   operator's pending membership work must finish and every member must apply the fresh write.
"""

from __future__ import annotations

import traceback

from konsul.raft.core import RaftCore, Role
from konsul.raft.sim.cluster import (
    MS_PER_TICK,
    Cluster,
    CoreFactory,
    RunResult,
    SimConfig,
    SimNode,
)
from konsul.raft.sim.invariants import Violation
from konsul.raft.sim.nemesis import Nemesis, Operator

SETUP_LIMIT = 3000  # ticks to form the initial cluster


def run_seed(seed: int, cfg: SimConfig, factory: CoreFactory = RaftCore) -> RunResult:
    cluster = Cluster(seed, cfg, factory)
    operator = Operator(cluster)
    nemesis = Nemesis(cluster, operator, cluster.rng)
    recovery = 0
    try:
        _setup(cluster, operator)
        end = cluster.now + cfg.steps
        while cluster.now < end:
            nemesis.step()
            operator.step()
            cluster.client_step()
            cluster.step()
        cluster.trace.add(cluster.now, "-", "quiet", "faults stop: heal, restart, no loss")
        nemesis.stop()
        recovery = _quiet(cluster, operator)
    except Violation as violation:
        return cluster.result(violation, recovery)
    except Exception as exc:  # the core (or the sim) raised: a bug either way, report it
        where = traceback.extract_tb(exc.__traceback__)[-3:]
        frames = " <- ".join(f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in
                             reversed(where))
        return cluster.result(Violation("exception", f"{exc!r} in {frames}"), recovery)
    return cluster.result(None, recovery)


def _setup(cluster: Cluster, operator: Operator) -> None:
    first = cluster.new_node()
    first.start()
    assert first.core is not None
    first.core.bootstrap(first.member(voter=True))
    cluster.trace.add(cluster.now, first.id, "bootstrap", "")
    first.pump()
    for _ in range(cluster.cfg.nodes - 1):
        node = cluster.new_node()
        node.start()
        operator.joining.append(node.id)
    deadline = cluster.now + SETUP_LIMIT
    while cluster.now < deadline:
        operator.step()
        cluster.client_step()
        cluster.step()
        leader = cluster.leader()
        if leader is not None and leader.core is not None and not operator.busy:
            voters = leader.core.committed_configuration.voters()
            if len(voters) == cluster.cfg.nodes:
                return
    raise Violation(
        "liveness",
        f"the initial {cluster.cfg.nodes}-node cluster did not form in {SETUP_LIMIT} ticks",
    )


def _quiet(cluster: Cluster, operator: Operator) -> int:
    """Returns the ticks from the start of the quiet period to the fresh write's ack."""
    start = cluster.now
    deadline = start + cluster.cfg.quiet_limit
    final: tuple[SimNode, int, int] | None = None  # node, index, term of the fresh write
    acked_at = 0
    while cluster.now < deadline:
        operator.step()
        cluster.step()
        leader = cluster.leader()
        if leader is None or leader.core is None:
            continue
        if final is not None and not acked_at and (
            final[0] is not leader or leader.core.term != final[2]
        ):
            final = None  # leadership moved before the write committed: write again
        if final is None:
            if cluster.propose(leader):
                index = max(leader.proposals)
                final = (leader, index, leader.proposals[index][0])
            continue
        node, index, _ = final
        if not acked_at:
            if node.fsm.applied < index:
                continue
            acked_at = cluster.now
        if _settled(cluster, operator, leader, index):
            image = leader.disk.written
            cluster.checker.durable_acks(leader.id, image.term_at, image.offset + 1)
            return acked_at - start
    raise Violation("liveness", _stuck(cluster, operator, final, start))


def _settled(cluster: Cluster, operator: Operator, leader: SimNode, index: int) -> bool:
    core = leader.core
    assert core is not None
    if operator.busy or core.configuration != core.committed_configuration:
        return False
    for member in core.committed_configuration.members:
        node = cluster.nodes[member.id]
        if node.core is None or node.fsm.applied < index:
            return False
    image = leader.disk.written
    for node in cluster.live():
        for i, (term, _) in list(node.proposals.items()):
            if i <= node.fsm.applied:
                continue  # resolved when applied
            if term < core.term and image.term_at(i) != term:
                del node.proposals[i]  # lost: the leader of a later term does not hold it
                continue
            return False
    return True


def _stuck(
    cluster: Cluster, operator: Operator, final: tuple[SimNode, int, int] | None, start: int
) -> str:
    parts = [f"no progress {cluster.now - start} ticks after faults stopped"]
    leader = cluster.leader()
    parts.append(f"leader={leader.id if leader else None}")
    if final is not None:
        parts.append(f"fresh write at {final[1]}@{final[2]} on {final[0].id}")
    for node in cluster.nodes.values():
        core = node.core
        if core is None:
            parts.append(f"{node.id}: down{' (removed)' if node.removed else ''}")
            continue
        parts.append(
            f"{node.id}: {core.role.value}{' (catching up)' if core.catching_up else ''} "
            f"term={core.term} commit={core.commit_index} "
            f"applied={node.fsm.applied} last={core.last_index} "
            f"config={[m.id + ('' if m.voter else '(nv)') for m in core.configuration.members]}"
            f" pending={sorted(node.proposals)[:5]}"
        )
    if operator.busy:
        parts.append(
            f"operator: joining={operator.joining} leaving={operator.leaving} "
            f"rejoining={operator.rejoining}"
        )
    return "; ".join(parts)


__all__ = ["Role", "run_seed"]


class Campaign:
    """Totals over many seeds."""

    def __init__(self) -> None:
        self.seeds = 0
        self.violations: list[RunResult] = []
        self.elections = 0
        self.commits = 0
        self.acked = 0
        self.reads = 0
        self.max_recovery_ticks = 0
        self.ticks = 0

    def add(self, result: RunResult) -> None:
        self.seeds += 1
        self.elections += result.elections
        self.commits += result.commits
        self.acked += result.acked
        self.reads += result.reads
        self.ticks += result.ticks
        if result.violation is not None:
            self.violations.append(result)
        else:
            self.max_recovery_ticks = max(self.max_recovery_ticks, result.recovery_ticks)

    def summary(self) -> str:
        return (
            f"seeds={self.seeds} violations={len(self.violations)} elections={self.elections} "
            f"commits={self.commits} max_recovery_ms={self.max_recovery_ticks * MS_PER_TICK}"
        )


def campaign(
    seeds: range, cfg: SimConfig, factory: CoreFactory = RaftCore, stop_at_first: bool = False
) -> Campaign:
    totals = Campaign()
    for seed in seeds:
        totals.add(run_seed(seed, cfg, factory))
        if stop_at_first and totals.violations:
            break
    return totals
