"""The pure planning function: observed state in, the one next step out.

Every decision the operator makes is here, with no I/O, clock or randomness, so it is tested
exhaustively with hand-built observations. The reconcile loop observes, calls ``plan``, executes
at most the one action returned, records it in status and requeues; because nothing is
remembered between calls except ``status.bootstrapped``, a crash between any two steps (after
"leave" before "shrink", after "scale up" before "join") converges on the next call.

Order of concerns:
 1. bootstrap pod-0 exactly once (``status.bootstrapped``; an existing cluster is only recorded);
 2. quorum guard: no leader or fewer than a majority of voters healthy -> no step at all;
 3. repair: a member whose node reports empty Raft state (volume lost) is removed, then joined;
 4. scale down: highest ordinal first, leadership moved away first, then shrink, then PVCs;
 5. scale up: grow the StatefulSet, then join running pods one at a time;
 6. rolling restart of outdated pods: not-ready first, followers high ordinal first, leader
    last after a leadership transfer, each only when every other pod is healthy again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A member is "caught up" when it has applied within this many entries of the leader's commit
# index (observed a few milliseconds apart under write load, so exact equality is too strict).
MAX_LAG = 500


@dataclass(frozen=True)
class NodeView:
    """What a pod's own node says on ``/cluster/status`` and ``/health/ready``."""

    node_id: str
    address: str  # its Raft advertise address: what the leader must be told on join
    http_address: str
    state: str
    leader_id: str | None
    term: int
    commit_index: int
    applied_index: int
    last_index: int
    peer_count: int
    ready: bool
    catching_up: bool = False  # started empty, not promoted since: it never votes until re-added

    @property
    def empty(self) -> bool:
        """No Raft state at all: a new node, or one whose volume was lost."""
        return self.term == 0 and self.last_index == 0 and self.peer_count == 0

    @property
    def lost_state(self) -> bool:
        """Empty, or refilled by a leader after starting empty (the leader reached it before we
        looked): either way its volume was lost, and only a remove and re-add makes it vote."""
        return self.empty or self.catching_up


@dataclass(frozen=True)
class PodView:
    name: str
    ordinal: int
    ip: str | None
    template_hash: str
    deleting: bool = False
    node: NodeView | None = None  # None: no answer (starting, crashed, no IP yet)


@dataclass(frozen=True)
class Member:
    id: str
    address: str
    voter: bool


@dataclass(frozen=True)
class Observed:
    name: str
    desired_replicas: int
    desired_hash: str
    sts_replicas: int | None  # None: no StatefulSet yet
    pods: tuple[PodView, ...]
    members: tuple[Member, ...]  # the leader's configuration; empty without a leader
    leader_id: str | None
    leader_commit: int
    bootstrapped: bool
    claims: tuple[str, ...] = ()  # PVC names of this cluster

    def pod(self, name: str) -> PodView | None:
        return next((p for p in self.pods if p.name == name and not p.deleting), None)

    def member(self, node_id: str) -> Member | None:
        return next((m for m in self.members if m.id == node_id), None)

    @property
    def voters(self) -> list[Member]:
        return [m for m in self.members if m.voter]

    def ordinal_of(self, node_id: str) -> int | None:
        prefix = f"{self.name}-"
        tail = node_id[len(prefix) :] if node_id.startswith(prefix) else ""
        return int(tail) if tail.isdigit() else None


# ------------------------------------------------------------------------------ actions


@dataclass(frozen=True)
class Action:
    """One step. ``kind`` names it for events, metrics and ``status.operation``."""

    kind: str
    target: str = ""
    reason: str = ""
    # Join: the Raft and HTTP addresses the new member advertises. Transfer: the new leader.
    address: str = ""
    http_address: str = ""
    to: str = ""
    replicas: int = 0
    claims: tuple[str, ...] = ()


WAIT = "Wait"
BOOTSTRAP = "Bootstrap"
RECORD_BOOTSTRAPPED = "RecordBootstrapped"
JOIN = "Join"
REMOVE = "RemoveMember"
TRANSFER = "TransferLeadership"
SCALE_STS = "ScaleStatefulSet"
DELETE_CLAIMS = "DeleteClaims"
RESTART_POD = "RestartPod"
NONE = "None"  # converged

# Condition reasons (operator-practices.md).
BOOTSTRAPPING = "Bootstrapping"
SCALING_UP = "ScalingUp"
SCALING_DOWN = "ScalingDown"
ROLLING_RESTART = "RollingRestart"
REPAIRING = "Repairing"
QUORUM_LOST = "QuorumLost"
MEMBER_UNHEALTHY = "MemberUnhealthy"
MEMBER_NOT_REJOINING = "MemberNotRejoining"


@dataclass(frozen=True)
class Plan:
    action: Action
    phase: str  # Pending | Bootstrapping | Scaling | Restarting | Repairing | Running | Degraded
    available: bool
    progressing: str | None = None  # a Progressing reason while work remains
    degraded: str | None = None  # a Degraded reason
    message: str = ""
    restart_queue: tuple[str, ...] = field(default_factory=tuple)

    @property
    def converged(self) -> bool:
        return self.action.kind == NONE


def majority(n: int) -> int:
    return n // 2 + 1


# ------------------------------------------------------------------------------ helpers


def _caught_up(obs: Observed, node: NodeView | None) -> bool:
    """Knows a leader and has applied close to the leader's commit index.

    Not the node's own readiness answer: under a steady write load a follower's applied index
    trails the commit index it just learned by a few entries, so ``/health/ready`` flickers.
    """
    if node is None or node.empty or node.leader_id is None:
        return False
    return node.applied_index + MAX_LAG >= obs.leader_commit


def healthy_voters(obs: Observed) -> set[str]:
    """Voters whose own node is caught up (what ``status.readyReplicas`` counts)."""
    return _healthy(obs)


def _healthy(obs: Observed) -> set[str]:
    """Voters whose own node is caught up."""
    out: set[str] = set()
    for member in obs.voters:
        pod = obs.pod(member.id)
        if pod is not None and _caught_up(obs, pod.node):
            out.add(member.id)
    return out


def _quorum_after_losing(obs: Observed, healthy: set[str], target: str, removing: bool) -> bool:
    """Would a caught-up majority of voters remain if ``target`` stopped (or was removed)?"""
    voters = {m.id for m in obs.voters}
    remaining_voters = len(voters - {target}) if removing else len(voters)
    return len(healthy - {target}) >= majority(max(1, remaining_voters))


def _wait(reason: str, phase: str, available: bool, progressing: str | None = None,
          degraded: str | None = None, queue: tuple[str, ...] = ()) -> Plan:
    return Plan(Action(WAIT, reason=reason), phase, available, progressing, degraded, reason,
                queue)


# ------------------------------------------------------------------------------ the planner


def plan(obs: Observed) -> Plan:
    if not obs.bootstrapped:
        return _plan_bootstrap(obs)

    healthy = _healthy(obs)
    voters = obs.voters
    if obs.leader_id is None or not voters or len(healthy) < majority(len(voters)):
        # Not a membership change: pods the StatefulSet no longer runs (scaled down by hand)
        # are how the quorum comes back, so it may grow back over the volumes that exist (the
        # members' data), never beyond them.
        restore = min(obs.desired_replicas, _claimed_ordinals(obs))
        if obs.sts_replicas is not None and obs.sts_replicas < restore:
            return Plan(Action(SCALE_STS, replicas=restore,
                               reason="pods of existing volumes missing while quorum is lost"),
                        "Degraded", False, SCALING_UP, QUORUM_LOST, "restoring pods")
        if obs.leader_id is None:
            why = "no node leads"
        else:
            need = majority(len(voters))
            why = f"{len(healthy)} caught-up voters of {len(voters)}, {need} needed"
        return _wait(f"quorum lost: {why}; no step until pods return", "Degraded", False,
                     degraded=QUORUM_LOST)

    for step in (_plan_repair, _plan_scale_down, _plan_scale_up, _plan_restart):
        result = step(obs, healthy)
        if result is not None:
            return result

    unhealthy = sorted(
        p.name for p in obs.pods
        if p.ordinal < obs.desired_replicas and p.name not in healthy
    )
    if unhealthy:
        return _wait(f"members not healthy: {', '.join(unhealthy)}", "Running", True,
                     degraded=MEMBER_UNHEALTHY)
    return Plan(Action(NONE), "Running", True, message="converged")


def _plan_bootstrap(obs: Observed) -> Plan:
    # A node that already has Raft state means the cluster exists (the operator stopped between
    # bootstrapping and recording it): record it, never bootstrap again.
    for pod in obs.pods:
        if pod.node is not None and not pod.node.empty:
            return Plan(Action(RECORD_BOOTSTRAPPED, target=pod.name,
                               reason=f"{pod.name} already has Raft state"),
                        "Bootstrapping", False, BOOTSTRAPPING)
    if obs.sts_replicas is None:
        return _wait("waiting for the StatefulSet", "Pending", False, BOOTSTRAPPING)
    first = obs.pod(f"{obs.name}-0")
    if first is None or first.node is None:
        return _wait(f"waiting for {obs.name}-0 to answer", "Bootstrapping", False,
                     BOOTSTRAPPING)
    return Plan(Action(BOOTSTRAP, target=first.name, reason="new cluster"),
                "Bootstrapping", False, BOOTSTRAPPING)


def _plan_repair(obs: Observed, healthy: set[str]) -> Plan | None:
    """A member whose node is empty lost its volume: remove it so it can join afresh."""
    for pod in sorted(obs.pods, key=lambda p: p.ordinal):
        member = obs.member(pod.name)
        # A non-voter is a member still receiving its first entries: empty is expected there.
        if pod.deleting or pod.node is None or member is None or not pod.node.lost_state:
            continue
        if not member.voter:
            continue
        if not _quorum_after_losing(obs, healthy, pod.name, removing=True):
            return _wait(f"{pod.name} lost its data but removing it would break quorum",
                         "Degraded", True, REPAIRING, MEMBER_NOT_REJOINING)
        return Plan(Action(REMOVE, target=pod.name, reason="its node lost its Raft state"),
                    "Repairing", True, REPAIRING, MEMBER_NOT_REJOINING)
    return None


def _plan_scale_down(obs: Observed, healthy: set[str]) -> Plan | None:
    extra = sorted(
        (m for m in obs.members if (obs.ordinal_of(m.id) or 0) >= obs.desired_replicas),
        key=lambda m: obs.ordinal_of(m.id) or 0,
    )
    if extra:
        target = extra[-1]
        if target.id == obs.leader_id:
            successor = _best_successor(obs, healthy, exclude={m.id for m in extra})
            if successor is None:
                return _wait(f"{target.id} leads and no caught-up member may take over",
                             "Scaling", True, SCALING_DOWN)
            return Plan(Action(TRANSFER, target=target.id, to=successor,
                               reason=f"{target.id} is being removed"),
                        "Scaling", True, SCALING_DOWN)
        if target.voter and not _quorum_after_losing(obs, healthy, target.id, removing=True):
            return _wait(f"removing {target.id} would leave no caught-up majority",
                         "Scaling", True, SCALING_DOWN, MEMBER_UNHEALTHY)
        return Plan(Action(REMOVE, target=target.id, reason="scale down"),
                    "Scaling", True, SCALING_DOWN)
    if obs.sts_replicas is not None and obs.sts_replicas > obs.desired_replicas:
        return Plan(Action(SCALE_STS, replicas=obs.desired_replicas,
                           reason="members removed, shrink the StatefulSet"),
                    "Scaling", True, SCALING_DOWN)
    stale = _stale_claims(obs)
    if stale:
        return Plan(Action(DELETE_CLAIMS, claims=stale, reason="volumes of removed members"),
                    "Scaling", True, SCALING_DOWN)
    return None


def _claimed_ordinals(obs: Observed) -> int:
    """One more than the highest ordinal that has a volume (0 without any)."""
    prefix = f"data-{obs.name}-"
    tails = [c[len(prefix):] for c in obs.claims if c.startswith(prefix)]
    return max((int(t) + 1 for t in tails if t.isdigit()), default=0)


def _stale_claims(obs: Observed) -> tuple[str, ...]:
    prefix = f"data-{obs.name}-"
    stale = []
    for claim in obs.claims:
        tail = claim[len(prefix) :] if claim.startswith(prefix) else ""
        if not tail.isdigit() or int(tail) < obs.desired_replicas:
            continue
        if any(p.ordinal == int(tail) for p in obs.pods):
            continue  # its pod is still terminating
        stale.append(claim)
    return tuple(sorted(stale))


def _best_successor(obs: Observed, healthy: set[str], exclude: set[str]) -> str | None:
    candidates = []
    for member_id in healthy - exclude - {obs.leader_id or ""}:
        pod = obs.pod(member_id)
        if pod is not None and pod.node is not None:
            candidates.append((-pod.node.applied_index, pod.ordinal, member_id))
    return min(candidates)[2] if candidates else None


def _plan_scale_up(obs: Observed, healthy: set[str]) -> Plan | None:
    if obs.sts_replicas is None or obs.sts_replicas < obs.desired_replicas:
        return Plan(Action(SCALE_STS, replicas=obs.desired_replicas, reason="scale up"),
                    "Scaling", True, SCALING_UP)
    # One membership change at a time: a member still being promoted holds the next join.
    for member in obs.members:
        if not member.voter:
            return _wait(f"{member.id} is catching up before promotion", "Scaling", True,
                         SCALING_UP)
    wanted = sorted(
        (p for p in obs.pods if p.ordinal < obs.desired_replicas and not p.deleting),
        key=lambda p: p.ordinal,
    )
    for pod in wanted:
        if obs.member(pod.name) is not None:
            continue
        if pod.node is None:
            return _wait(f"waiting for {pod.name} to answer before it joins", "Scaling", True,
                         SCALING_UP)
        return Plan(Action(JOIN, target=pod.name, address=pod.node.address,
                           http_address=pod.node.http_address, reason="not a member"),
                    "Scaling", True, SCALING_UP)
    missing = [
        f"{obs.name}-{n}" for n in range(obs.desired_replicas)
        if obs.pod(f"{obs.name}-{n}") is None and obs.member(f"{obs.name}-{n}") is None
    ]
    if missing:
        return _wait(f"waiting for pods {', '.join(missing)}", "Scaling", True, SCALING_UP)
    return None


def restart_queue(obs: Observed) -> tuple[str, ...]:
    """Outdated pods in the order they will be replaced: not-ready first, then followers from
    the highest ordinal, the leader last."""
    outdated = [
        p for p in obs.pods
        if p.ordinal < obs.desired_replicas and not p.deleting
        and p.template_hash != obs.desired_hash
    ]

    healthy = _healthy(obs)

    def key(p: PodView) -> tuple[int, int]:
        tier = 2 if p.name == obs.leader_id else (1 if p.name in healthy else 0)
        return (tier, -p.ordinal)

    return tuple(p.name for p in sorted(outdated, key=key))


def _plan_restart(obs: Observed, healthy: set[str]) -> Plan | None:
    queue = restart_queue(obs)
    if not queue:
        return None
    first = obs.pod(queue[0])
    assert first is not None
    if first.name not in healthy:
        # A pod that is not serving anyway is replaced first: its restart costs no quorum.
        return Plan(Action(RESTART_POD, target=first.name, reason="outdated and not ready"),
                    "Restarting", True, ROLLING_RESTART, restart_queue=queue)
    # Every pod that is not waiting in the queue must be healthy (the previous one has come
    # back, rejoined and caught up) before the next goes.
    waiting = [
        f"{obs.name}-{n}" for n in range(obs.desired_replicas)
        if f"{obs.name}-{n}" not in queue and f"{obs.name}-{n}" not in healthy
    ]
    if waiting:
        return _wait(f"waiting for {', '.join(waiting)} to be ready and caught up",
                     "Restarting", True, ROLLING_RESTART, queue=queue)
    if first.name == obs.leader_id:
        if len(obs.voters) == 1:  # one replica: a restart is an outage, nobody to hand over to
            return Plan(Action(RESTART_POD, target=first.name, reason="outdated (single node)"),
                        "Restarting", True, ROLLING_RESTART, restart_queue=queue)
        successor = _best_successor(obs, healthy, exclude=set())
        if successor is None:
            return _wait("no caught-up follower to hand leadership to", "Restarting", True,
                         ROLLING_RESTART, queue=queue)
        return Plan(Action(TRANSFER, target=first.name, to=successor,
                           reason="the leader is restarted last"),
                    "Restarting", True, ROLLING_RESTART, restart_queue=queue)
    if not _quorum_after_losing(obs, healthy, first.name, removing=False):
        return _wait(f"restarting {first.name} would leave no caught-up majority",
                     "Restarting", True, ROLLING_RESTART, MEMBER_UNHEALTHY, queue=queue)
    return Plan(Action(RESTART_POD, target=first.name, reason="outdated pod template"),
                "Restarting", True, ROLLING_RESTART, restart_queue=queue)
