"""What goes wrong, and who fixes membership: the nemesis and the operator.

The nemesis injects one fault at a time at random moments (each seed draws its own rate and
mix, so seeds differ in character, not only in detail) and schedules its end: partitions
(symmetric, one-way, leader isolated), crashes and restarts (unsynced writes lost), pauses
(a stopped process: nothing ticks, messages wait), lossy / duplicating / reordering network
spells, late fsyncs, whole-disk loss, leadership transfers and membership changes.

The operator plays the Kubernetes operator's part: it joins new members, removes leaving ones
(then stops them), and handles a node whose disk was lost: it comes back empty under the same
id, is removed from the configuration and joined again as a fresh (non-voting, then promoted)
member. Like the Kubernetes operator's planner, it also repairs that way a voter whose node
still reports catching up some time after its promotion committed (the promotion reached it
only inside a snapshot it cannot trust, or it restarted before trusting it): such a voter
never votes, so it uses up the cluster's tolerated failure until it is re-added.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from konsul.raft.core import NotLeaderError, ProposalRejected
from konsul.raft.types import Configuration

# How long a voter may report catching up (its promotion in flight) before the operator
# re-adds it; the Kubernetes operator's reconcile period is of the same order.
STUCK_TICKS = 100

if TYPE_CHECKING:
    from konsul.raft.sim.cluster import Cluster, SimNode


class Operator:
    """Drives membership towards what it was asked for, one change at a time, on the leader."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.joining: list[str] = []  # to add (as non-voters; the core promotes them)
        self.leaving: list[str] = []  # to remove, then stop
        self.rejoining: list[str] = []  # wiped: remove, then join again
        self.stuck_since: dict[str, int] = {}  # voter still catching up -> first tick seen

    @property
    def busy(self) -> bool:
        """A membership change is under way, or a wiped member has not rejoined yet (no other
        change starts meanwhile: an empty voter already uses up a four-voter cluster's one
        tolerated failure), or a node still catches up (a voter that cannot vote yet)."""
        return bool(self.joining or self.leaving or self.rejoining) or any(
            n.wiped or (n.core is not None and n.core.catching_up)
            for n in self.c.nodes.values()
        )

    def voters_wanted(self) -> int:
        leader = self.c.leader()
        if leader is None or leader.core is None:
            return 0
        return len(leader.core.configuration.voters())

    def step(self) -> None:
        c = self.c
        if c.now % 10:
            return
        leader = c.leader()
        if leader is None or leader.core is None or leader.paused_until > c.now:
            return
        core = leader.core
        latest = core.configuration
        committed = core.committed_configuration
        if latest != committed and c.rng.random() < 0.8:
            # One change at a time: mostly wait for the pending one; sometimes push anyway,
            # so that the core's own refusal (ProposalRejected) is what keeps it single.
            return
        for node_id in list(self.leaving):
            if committed.get(node_id) is None:
                self.leaving.remove(node_id)
                node = c.nodes[node_id]
                if node.core is not None:
                    node.crash()
                node.removed = True
                c.trace.add(c.now, node_id, "stopped", "removed from the configuration")
                continue
            self._change(leader, "remove", node_id)
            return
        self._find_stuck_voters(committed)
        for node_id in list(self.rejoining):
            node = c.nodes[node_id]
            if node.removed:
                self.rejoining.remove(node_id)
                continue
            if node.core is None:
                continue  # wait for the empty node to be up again
            if committed.get(node_id) is not None:
                self._change(leader, "remove", node_id)
                return
            self.rejoining.remove(node_id)
            self.joining.append(node_id)
        for node_id in list(self.joining):
            member = committed.get(node_id)
            if member is not None:
                # the core promotes a caught-up non-voter by itself; done once the node trusts
                # its promotion (else _find_stuck_voters takes it over)
                joiner = c.nodes[node_id].core
                if member.voter and joiner is not None and not joiner.catching_up:
                    self.joining.remove(node_id)
                    c.nodes[node_id].wiped = False
                continue
            node = c.nodes[node_id]
            if node.core is None:
                continue
            self._change(leader, "add", node_id)
            return

    def _find_stuck_voters(self, committed: Configuration) -> None:
        """Voters that have reported catching up for STUCK_TICKS are re-added (see above)."""
        c = self.c
        for node_id in committed.voters():
            node = c.nodes.get(node_id)
            if node is None or node.core is None or not node.core.catching_up:
                self.stuck_since.pop(node_id, None)
                continue
            since = self.stuck_since.setdefault(node_id, c.now)
            if c.now - since >= STUCK_TICKS and node_id not in self.rejoining:
                self.stuck_since.pop(node_id)
                if node_id in self.joining:
                    self.joining.remove(node_id)
                self.rejoining.append(node_id)
                c.trace.add(c.now, node_id, "stuck", "voter still catching up: re-add it")

    def _change(self, leader: SimNode, kind: str, node_id: str) -> None:
        c = self.c
        core = leader.core
        assert core is not None
        try:
            if kind == "add":
                index, term = core.propose_add(c.nodes[node_id].member(voter=False))
            else:
                index, term = core.propose_remove(node_id)
        except (NotLeaderError, ProposalRejected) as exc:
            c.trace.add(c.now, leader.id, f"{kind}-refused", f"{node_id}: {exc}")
            return
        c.trace.add(c.now, leader.id, kind, f"{node_id} at {index}@{term}")
        leader.pump()


Undo = tuple[int, int, str, Callable[[], None]]


class Nemesis:
    def __init__(self, cluster: Cluster, operator: Operator, rng: random.Random) -> None:
        self.c = cluster
        self.op = operator
        self.rng = rng
        self._undo: list[Undo] = []
        self._seq = 0
        # Each seed gets its own temperament: how often faults come and which kinds.
        self.rate = rng.uniform(0.002, 0.012) * cluster.cfg.fault_rate
        kinds = [
            ("partition", 3.0), ("one_way", 2.0), ("isolate_leader", 2.0),
            ("crash", 2.5), ("crash_leader", 2.0), ("pause", 1.5), ("lossy", 2.0),
            ("slow_disk", 1.5), ("transfer", 2.0), ("drift", 1.0),
        ]
        if cluster.cfg.membership:
            kinds += [("add", 1.0), ("remove", 1.0)]
        if cluster.cfg.disk_loss:
            kinds.append(("disk_loss", 0.6))
        overrides = cluster.cfg.fault_weights
        kinds = [(k, overrides.get(k, w)) for k, w in kinds]
        self.kinds = [k for k, _ in kinds]
        self.weights = [w * rng.uniform(0.2, 1.8) for _, w in kinds]
        self.faults_injected = 0

    # ------------------------------------------------------------------ scheduling

    def _later(self, ticks: int, label: str, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._undo, (self.c.now + ticks, self._seq, label, action))

    def step(self) -> None:
        c = self.c
        while self._undo and self._undo[0][0] <= c.now:
            _, _, label, action = heapq.heappop(self._undo)
            c.trace.add(c.now, "-", "nemesis", f"end {label}")
            action()
        if self.rng.random() < self.rate:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            getattr(self, "_" + kind)()

    def stop(self) -> None:
        """Undo every fault still in force (the quiet period begins)."""
        while self._undo:
            _, _, label, action = heapq.heappop(self._undo)
            self.c.trace.add(self.c.now, "-", "nemesis", f"end {label}")
            action()
        c = self.c
        c.network.heal()
        c.network.faults.calm()
        c.fsync_slow = 0.0
        for node in c.nodes.values():
            node.paused_until = 0
            node.drift = 0
            if node.core is None and not node.removed:
                node.start()

    def _duration(self) -> int:
        # mostly short spells, sometimes long enough for several elections
        return int(self.rng.choice((self.rng.randint(10, 150), self.rng.randint(100, 900))))

    def _members(self) -> list[str]:
        return [n.id for n in self.c.nodes.values() if not n.removed]

    def _note(self, what: str) -> None:
        self.faults_injected += 1
        self.c.trace.add(self.c.now, "-", "nemesis", what)

    # ------------------------------------------------------------------ faults

    def _cut(self, a: list[str], b: list[str], one_way: bool, label: str) -> None:
        net = self.c.network
        pairs = [(x, y) for x in a for y in b] + ([] if one_way else [(y, x) for x in a for y in b])
        for src, dst in pairs:
            net.block(src, dst)
        self._note(label)

        def heal() -> None:
            for src, dst in pairs:
                net.unblock(src, dst)

        self._later(self._duration(), label, heal)

    def _partition(self) -> None:
        ids = self._members()
        self.rng.shuffle(ids)
        k = self.rng.randint(1, max(1, len(ids) // 2))
        a, b = sorted(ids[:k]), sorted(ids[k:])
        self._cut(a, b, False, f"partition {a} | {b}")

    def _one_way(self) -> None:
        ids = self._members()
        x = self.rng.choice(ids)
        others = [i for i in ids if i != x]
        if self.rng.random() < 0.5:
            self._cut([x], others, True, f"one-way: {x} cannot send")
        else:
            self._cut(others, [x], True, f"one-way: {x} cannot receive")

    def _isolate_leader(self) -> None:
        leader = self.c.leader()
        if leader is None:
            return self._partition()
        others = [i for i in self._members() if i != leader.id]
        self._cut([leader.id], others, False, f"isolate leader {leader.id}")

    def _crash_node(self, node: SimNode, wipe: bool = False) -> None:
        c = self.c
        node.crash(wipe=wipe)
        self._note(("wipe disk of " if wipe else "crash ") + node.id)
        # Peers' transports see the connection reset.
        for peer in c.live():
            if self.rng.random() < 0.7:
                peer.core.peer_unreachable(node.id)  # type: ignore[union-attr]
                peer.pump()

        def restart() -> None:
            if node.core is None and not node.removed:
                node.start()
                if wipe:
                    self.op.rejoining.append(node.id)
            elif wipe:
                node.wiped = False

        # A supervisor often restarts a crashed process within a tick or two.
        down = self.rng.randint(1, 5) if self.rng.random() < 0.3 else self._duration()
        self._later(down, f"down {node.id}", restart)

    def _crash(self) -> None:
        live = [n for n in self.c.live() if not n.removed]
        if live:
            self._crash_node(self.rng.choice(live))

    def _crash_leader(self) -> None:
        leader = self.c.leader()
        if leader is None:
            return self._crash()
        self._crash_node(leader)

    def _disk_loss(self) -> None:
        # One lost disk at a time, and only once the last one has fully rejoined: two empty
        # voters in a four-voter cluster is a lost quorum no consensus protocol survives.
        if self.op.busy or any(n.wiped for n in self.c.nodes.values()):
            return
        leader = self.c.leader()
        if leader is None or leader.core is None:
            return
        config = leader.core.committed_configuration
        if config != leader.core.configuration or len(config.voters()) < 3:
            return  # with two voters, one empty disk is a lost quorum
        live = [n for n in self.c.live() if not n.removed]
        if live:
            self._crash_node(self.rng.choice(live), wipe=True)

    def _pause(self) -> None:
        live = self.c.live()
        if not live:
            return
        node = self.rng.choice(live)
        ticks = self.rng.randint(10, 300)
        node.paused_until = self.c.now + ticks
        self._note(f"pause {node.id} for {ticks} ticks")

    def _drift(self) -> None:
        live = self.c.live()
        if not live:
            return
        node = self.rng.choice(live)
        node.drift = self.rng.choice((1, -1)) * self.rng.randint(2, 10)
        self._note(f"clock of {node.id} {'fast' if node.drift > 0 else 'slow'} by "
                   f"1/{abs(node.drift)}")

        def fix() -> None:
            node.drift = 0

        self._later(self._duration(), f"clock drift of {node.id}", fix)

    def _lossy(self) -> None:
        f = self.c.network.faults
        f.drop = self.rng.choice((0.0, self.rng.uniform(0.02, 0.4)))
        f.duplicate = self.rng.uniform(0.0, 0.2)
        f.slow = self.rng.uniform(0.0, 0.3)
        self._note(f"lossy network drop={f.drop:.2f} dup={f.duplicate:.2f} slow={f.slow:.2f}")
        self._later(self._duration(), "lossy network", f.calm)

    def _slow_disk(self) -> None:
        c = self.c
        c.fsync_slow = self.rng.uniform(0.1, 0.6)
        self._note(f"late fsyncs {c.fsync_slow:.2f}")

        def fast() -> None:
            c.fsync_slow = 0.0

        self._later(self._duration(), "late fsyncs", fast)

    def _transfer(self) -> None:
        leader = self.c.leader()
        if leader is None or leader.core is None:
            return
        voters = [v for v in leader.core.configuration.voters() if v != leader.id]
        target = self.rng.choice([*voters, None]) if voters else None
        try:
            got = leader.core.transfer_leadership(target)
        except (NotLeaderError, ProposalRejected) as exc:
            self.c.trace.add(self.c.now, leader.id, "transfer-refused", str(exc))
            return
        self._note(f"transfer leadership {leader.id} -> {got}")
        leader.pump()

    def _add(self) -> None:
        c = self.c
        if self.op.busy or len(self._members()) >= c.cfg.nodes + 1:
            return
        node = c.new_node()
        node.start()
        self.op.joining.append(node.id)
        self._note(f"operator: add {node.id}")

    def _remove(self) -> None:
        c = self.c
        leader = c.leader()
        if self.op.busy or leader is None or leader.core is None:
            return
        voters = leader.core.committed_configuration.voters()
        if len(voters) <= max(3, c.cfg.nodes - 1):
            return
        victim = self.rng.choice(voters)
        self.op.leaving.append(victim)
        self._note(f"operator: remove {victim}")
