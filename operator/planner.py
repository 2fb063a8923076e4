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
    last after a leadership transfer, each only when every other pod is healthy again;
 7. certificate renewal (operator-made TLS): one member at a time, when its certificate is
    within ``renewBefore`` of expiring or older than a ``renewCertificates`` request, only while
    every member is healthy and serves the certificate the Secret holds for it; nodes reload
    their files, nothing restarts;
 8. with ACLs, the read-only metrics token Prometheus scrapes with, once there is a leader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, assert_never

from konsul_operator import names
from konsul_operator.backups import JobView
from konsul_operator.names import (
    BOOTSTRAPPING,
    MEMBER_NOT_REJOINING,
    MEMBER_UNHEALTHY,
    QUORUM_LOST,
    RENEWING_CERTIFICATES,
    REPAIRING,
    RESTORE_FAILED,
    RESTORING,
    ROLLING_RESTART,
    SCALING_DOWN,
    SCALING_UP,
    Phase,
)

# A member is "caught up" when it has applied within this many entries of the leader's commit
# index (observed a few milliseconds apart under write load, so exact equality is too strict).
MAX_LAG = 500


@dataclass(frozen=True)
class MemberCert:
    """One member's certificate as the operator's TLS Secret holds it."""

    pod: str
    serial: int
    issued_at: float  # seconds since the epoch
    not_after: float

    def due(self, now: float, renew_before: float, renew_requested: float | None) -> bool:
        if self.not_after - now <= renew_before:
            return True
        return renew_requested is not None and self.issued_at < renew_requested <= now


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
    served_serial: int | None = None  # the TLS certificate it presents (None: no TLS)

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
class RestoreView:
    """``spec.restore`` and its Job (None until the operator creates it)."""

    file: str
    claim: str
    job: JobView | None = None


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
    restore: RestoreView | None = None  # spec.restore: pod-0 is seeded from a backup
    # Operator-made TLS: each member's certificate as the Secret holds it, and when to renew.
    certificates: tuple[MemberCert, ...] = ()
    renew_before: float = 0.0  # seconds
    renew_requested: float | None = None  # konsul.io/renewCertificates, seconds since the epoch
    now: float = 0.0
    metrics_token: bool | None = None  # ACLs: whether the metrics token exists (None: unknown)

    def pod(self, name: str) -> PodView | None:
        return next((p for p in self.pods if p.name == name and not p.deleting), None)

    def member(self, node_id: str) -> Member | None:
        return next((m for m in self.members if m.id == node_id), None)

    @property
    def voters(self) -> list[Member]:
        return [m for m in self.members if m.voter]

    def ordinal_of(self, node_id: str) -> int | None:
        return names.pod_ordinal(self.name, node_id)

    def pod_name(self, ordinal: int) -> str:
        return names.pod(self.name, ordinal)


# ------------------------------------------------------------------------------ actions
#
# One class per step. ``KIND`` names it for events, metrics and ``status.operation``; the
# executor (actions.py) handles each in an exhaustive ``match``.

WAIT = "Wait"
NONE = "None"  # converged
BOOTSTRAP = "Bootstrap"
RECORD_BOOTSTRAPPED = "RecordBootstrapped"
JOIN = "Join"
REMOVE = "RemoveMember"
TRANSFER = "TransferLeadership"
SCALE_STS = "ScaleStatefulSet"
DELETE_CLAIMS = "DeleteClaims"
RESTART_POD = "RestartPod"
SEED = "SeedFromBackup"
RENEW_CERTIFICATE = "RenewCertificate"
CREATE_METRICS_TOKEN = "CreateMetricsToken"


class _Kind:
    __slots__ = ()
    KIND: ClassVar[str]

    @property
    def kind(self) -> str:
        return self.KIND


@dataclass(frozen=True, kw_only=True)
class Wait(_Kind):
    """Nothing to do now; ``reason`` says what is awaited."""

    KIND: ClassVar[str] = WAIT
    reason: str


@dataclass(frozen=True, kw_only=True)
class Converged(_Kind):
    KIND: ClassVar[str] = NONE
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class Bootstrap(_Kind):
    """Make pod ``target`` a one-voter cluster (once in the cluster's life)."""

    KIND: ClassVar[str] = BOOTSTRAP
    target: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class SeedFromBackup(_Kind):
    """Bootstrap pod ``target`` from ``spec.restore``'s backup instead (a Job does it)."""

    KIND: ClassVar[str] = SEED
    target: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class RecordBootstrapped(_Kind):
    """``target`` already has Raft state: record ``status.bootstrapped`` (no I/O)."""

    KIND: ClassVar[str] = RECORD_BOOTSTRAPPED
    target: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class Join(_Kind):
    """Add pod ``target`` to the configuration, at the addresses its node advertises."""

    KIND: ClassVar[str] = JOIN
    target: str
    address: str
    http_address: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class RemoveMember(_Kind):
    KIND: ClassVar[str] = REMOVE
    target: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class TransferLeadership(_Kind):
    """Move leadership from ``target`` (the leader) to ``to``."""

    KIND: ClassVar[str] = TRANSFER
    target: str
    to: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class ScaleStatefulSet(_Kind):
    KIND: ClassVar[str] = SCALE_STS
    replicas: int
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class DeleteClaims(_Kind):
    KIND: ClassVar[str] = DELETE_CLAIMS
    claims: tuple[str, ...]
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class RestartPod(_Kind):
    KIND: ClassVar[str] = RESTART_POD
    target: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class RenewCertificate(_Kind):
    """A new certificate for member ``target`` in the mounted Secret (it reloads it)."""

    KIND: ClassVar[str] = RENEW_CERTIFICATE
    target: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class CreateMetricsToken(_Kind):
    """The read-only token (and its policy) the ServiceMonitor scrapes with, via the leader."""

    KIND: ClassVar[str] = CREATE_METRICS_TOKEN
    reason: str = ""


# The steps the executor takes, and every action the planner returns.
Step = (
    Bootstrap
    | SeedFromBackup
    | RecordBootstrapped
    | Join
    | RemoveMember
    | TransferLeadership
    | ScaleStatefulSet
    | DeleteClaims
    | RestartPod
    | RenewCertificate
    | CreateMetricsToken
)
Action = Wait | Converged | Step


def target_of(action: Action) -> str:
    """The member or pod an action is about ("" for the cluster as a whole)."""
    match action:
        case (
            Bootstrap() | SeedFromBackup() | RecordBootstrapped() | Join() | RemoveMember()
            | TransferLeadership() | RestartPod() | RenewCertificate()
        ):
            return action.target
        case Wait() | Converged() | ScaleStatefulSet() | DeleteClaims() | CreateMetricsToken():
            return ""
        case _:
            assert_never(action)


@dataclass(frozen=True, kw_only=True)
class Plan:
    action: Action
    phase: Phase
    available: bool
    progressing: str | None = None  # a Progressing reason while work remains
    degraded: str | None = None  # a Degraded reason
    message: str = ""
    restart_queue: tuple[str, ...] = field(default_factory=tuple)

    @property
    def converged(self) -> bool:
        return isinstance(self.action, Converged)


def majority(n: int) -> int:
    return n // 2 + 1


# ------------------------------------------------------------------------------ helpers


def _caught_up(obs: Observed, node: NodeView | None) -> bool:
    """Ready by its own account and close to the leader's commit index.

    The node's readiness compares its applied index with the commit index the leader announced
    to it, in the same instant, with a small allowance (a member back from a restart is not
    ready until it has applied what it missed); ours compares two answers taken some
    milliseconds apart, hence the larger ``MAX_LAG``: both must hold.
    """
    if node is None or node.empty or node.leader_id is None or not node.ready:
        return False
    return node.applied_index + MAX_LAG >= obs.leader_commit


def healthy_voters(obs: Observed) -> set[str]:
    """Voters whose own node is caught up (what ``status.readyReplicas`` counts)."""
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


def _wait(reason: str, phase: Phase, available: bool, progressing: str | None = None,
          degraded: str | None = None, queue: tuple[str, ...] = ()) -> Plan:
    return Plan(action=Wait(reason=reason), phase=phase, available=available,
                progressing=progressing, degraded=degraded, message=reason, restart_queue=queue)


# ------------------------------------------------------------------------------ the planner


def plan(obs: Observed) -> Plan:
    if not obs.bootstrapped:
        return _plan_bootstrap(obs)

    healthy = healthy_voters(obs)
    voters = obs.voters
    if obs.leader_id is None or not voters or len(healthy) < majority(len(voters)):
        # Not a membership change: pods the StatefulSet no longer runs (scaled down by hand)
        # are how the quorum comes back, so it may grow back over the volumes that exist (the
        # members' data), never beyond them.
        restore = min(obs.desired_replicas, _claimed_ordinals(obs))
        if obs.sts_replicas is not None and obs.sts_replicas < restore:
            return Plan(
                action=ScaleStatefulSet(
                    replicas=restore, reason="pods of existing volumes missing while quorum is lost"
                ),
                phase=Phase.DEGRADED, available=False, progressing=SCALING_UP,
                degraded=QUORUM_LOST, message="restoring pods",
            )
        if obs.leader_id is None:
            why = "no node leads"
        else:
            need = majority(len(voters))
            why = f"{len(healthy)} caught-up voters of {len(voters)}, {need} needed"
        return _wait(f"quorum lost: {why}; no step until pods return", Phase.DEGRADED, False,
                     degraded=QUORUM_LOST)

    for step in (_plan_repair, _plan_scale_down, _plan_scale_up, _plan_restart,
                 _plan_certificates, _plan_metrics_token):
        result = step(obs, healthy)
        if result is not None:
            return result

    unhealthy = sorted(
        p.name for p in obs.pods
        if p.ordinal < obs.desired_replicas and p.name not in healthy
    )
    if unhealthy:
        return _wait(f"members not healthy: {', '.join(unhealthy)}", Phase.RUNNING, True,
                     degraded=MEMBER_UNHEALTHY)
    return Plan(action=Converged(), phase=Phase.RUNNING, available=True, message="converged")


def _plan_bootstrap(obs: Observed) -> Plan:
    # A node that already has Raft state means the cluster exists (the operator stopped between
    # bootstrapping and recording it): record it, never bootstrap again.
    for pod in obs.pods:
        if pod.node is not None and not pod.node.empty:
            return Plan(
                action=RecordBootstrapped(target=pod.name,
                                          reason=f"{pod.name} already has Raft state"),
                phase=Phase.BOOTSTRAPPING, available=False, progressing=BOOTSTRAPPING,
            )
    if obs.sts_replicas is None:
        return _wait("waiting for the StatefulSet", Phase.PENDING, False, BOOTSTRAPPING)
    first = obs.pod(obs.pod_name(0))
    if first is None or first.node is None:
        return _wait(f"waiting for {obs.pod_name(0)} to answer", Phase.BOOTSTRAPPING, False,
                     BOOTSTRAPPING)
    if obs.restore is not None:
        return _plan_seed(obs.restore, first.name)
    return Plan(action=Bootstrap(target=first.name, reason="new cluster"),
                phase=Phase.BOOTSTRAPPING, available=False, progressing=BOOTSTRAPPING)


def _plan_seed(restore: RestoreView, first: str) -> Plan:
    """``spec.restore``: a Job seeds pod-0 from the backup; once its node holds state, the
    bootstrap is recorded as any other (above). Never an empty bootstrap instead: a failed
    restore waits for the user (a new ``spec.restore``, or the failed Job deleted to retry)."""
    source = f"{restore.claim}/{restore.file}"
    job = restore.job
    if job is None:
        return Plan(action=SeedFromBackup(target=first, reason=f"spec.restore: {source}"),
                    phase=Phase.BOOTSTRAPPING, available=False, progressing=RESTORING)
    if job.failed:
        return _wait(f"restoring {first} from {source} failed ({job.message}); change "
                     f"spec.restore, or delete Job {job.name} to try again", Phase.DEGRADED,
                     False, degraded=RESTORE_FAILED)
    return _wait(f"{job.name} is seeding {first} from {source}", Phase.BOOTSTRAPPING, False,
                 RESTORING)


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
                         Phase.DEGRADED, True, REPAIRING, MEMBER_NOT_REJOINING)
        return Plan(action=RemoveMember(target=pod.name, reason="its node lost its Raft state"),
                    phase=Phase.REPAIRING, available=True, progressing=REPAIRING,
                    degraded=MEMBER_NOT_REJOINING)
    return None


def _scaling_down(action: Action) -> Plan:
    return Plan(action=action, phase=Phase.SCALING, available=True, progressing=SCALING_DOWN)


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
                             Phase.SCALING, True, SCALING_DOWN)
            return _scaling_down(TransferLeadership(target=target.id, to=successor,
                                                    reason=f"{target.id} is being removed"))
        if target.voter and not _quorum_after_losing(obs, healthy, target.id, removing=True):
            return _wait(f"removing {target.id} would leave no caught-up majority",
                         Phase.SCALING, True, SCALING_DOWN, MEMBER_UNHEALTHY)
        return _scaling_down(RemoveMember(target=target.id, reason="scale down"))
    if obs.sts_replicas is not None and obs.sts_replicas > obs.desired_replicas:
        return _scaling_down(ScaleStatefulSet(replicas=obs.desired_replicas,
                                              reason="members removed, shrink the StatefulSet"))
    stale = _stale_claims(obs)
    if stale:
        return _scaling_down(DeleteClaims(claims=stale, reason="volumes of removed members"))
    return None


def _claim_ordinals(obs: Observed) -> list[tuple[int, str]]:
    """(ordinal, claim name) of this cluster's data claims."""
    found = ((names.claim_ordinal(obs.name, claim), claim) for claim in obs.claims)
    return [(ordinal, claim) for ordinal, claim in found if ordinal is not None]


def _claimed_ordinals(obs: Observed) -> int:
    """One more than the highest ordinal that has a volume (0 without any)."""
    return max((ordinal + 1 for ordinal, _ in _claim_ordinals(obs)), default=0)


def _stale_claims(obs: Observed) -> tuple[str, ...]:
    stale = []
    for ordinal, claim in _claim_ordinals(obs):
        if ordinal < obs.desired_replicas:
            continue
        if any(p.ordinal == ordinal for p in obs.pods):
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


def _scaling_up(action: Action) -> Plan:
    return Plan(action=action, phase=Phase.SCALING, available=True, progressing=SCALING_UP)


def _plan_scale_up(obs: Observed, healthy: set[str]) -> Plan | None:
    if obs.sts_replicas is None or obs.sts_replicas < obs.desired_replicas:
        return _scaling_up(ScaleStatefulSet(replicas=obs.desired_replicas, reason="scale up"))
    # One membership change at a time: a member still being promoted holds the next join.
    for member in obs.members:
        if not member.voter:
            return _wait(f"{member.id} is catching up before promotion", Phase.SCALING, True,
                         SCALING_UP)
    wanted = sorted(
        (p for p in obs.pods if p.ordinal < obs.desired_replicas and not p.deleting),
        key=lambda p: p.ordinal,
    )
    # ... and so does a member promoted but not caught up yet (the previous join, as a
    # rolling restart waits for the pod it restarted).
    behind = [p.name for p in wanted if obs.member(p.name) is not None and p.name not in healthy]
    for pod in wanted:
        if obs.member(pod.name) is not None:
            continue
        if behind:
            return _wait(f"waiting for {', '.join(behind)} to catch up before the next join",
                         Phase.SCALING, True, SCALING_UP)
        if pod.node is None:
            return _wait(f"waiting for {pod.name} to answer before it joins", Phase.SCALING,
                         True, SCALING_UP)
        return _scaling_up(Join(target=pod.name, address=pod.node.address,
                                http_address=pod.node.http_address, reason="not a member"))
    missing = [
        name for name in map(obs.pod_name, range(obs.desired_replicas))
        if obs.pod(name) is None and obs.member(name) is None
    ]
    if missing:
        return _wait(f"waiting for pods {', '.join(missing)}", Phase.SCALING, True, SCALING_UP)
    return None


def restart_queue(obs: Observed) -> tuple[str, ...]:
    """Outdated pods in the order they will be replaced: not-ready first, then followers from
    the highest ordinal, the leader last."""
    outdated = [
        p for p in obs.pods
        if p.ordinal < obs.desired_replicas and not p.deleting
        and p.template_hash != obs.desired_hash
    ]

    healthy = healthy_voters(obs)

    def key(p: PodView) -> tuple[int, int]:
        tier = 2 if p.name == obs.leader_id else (1 if p.name in healthy else 0)
        return (tier, -p.ordinal)

    return tuple(p.name for p in sorted(outdated, key=key))


def _restarting(action: Action, queue: tuple[str, ...]) -> Plan:
    return Plan(action=action, phase=Phase.RESTARTING, available=True,
                progressing=ROLLING_RESTART, restart_queue=queue)


def _plan_restart(obs: Observed, healthy: set[str]) -> Plan | None:
    queue = restart_queue(obs)
    if not queue:
        return None
    first = obs.pod(queue[0])
    assert first is not None
    if first.name not in healthy:
        # A pod that is not serving anyway is replaced first: its restart costs no quorum.
        return _restarting(RestartPod(target=first.name, reason="outdated and not ready"), queue)
    # Every pod that is not waiting in the queue must be healthy (the previous one has come
    # back, rejoined and caught up) before the next goes.
    waiting = [
        name for name in map(obs.pod_name, range(obs.desired_replicas))
        if name not in queue and name not in healthy
    ]
    if waiting:
        return _wait(f"waiting for {', '.join(waiting)} to be ready and caught up",
                     Phase.RESTARTING, True, ROLLING_RESTART, queue=queue)
    if first.name == obs.leader_id:
        if len(obs.voters) == 1:  # one replica: a restart is an outage, nobody to hand over to
            return _restarting(RestartPod(target=first.name, reason="outdated (single node)"),
                               queue)
        successor = _best_successor(obs, healthy, exclude=set())
        if successor is None:
            return _wait("no caught-up follower to hand leadership to", Phase.RESTARTING, True,
                         ROLLING_RESTART, queue=queue)
        return _restarting(TransferLeadership(target=first.name, to=successor,
                                              reason="the leader is restarted last"), queue)
    if not _quorum_after_losing(obs, healthy, first.name, removing=False):
        return _wait(f"restarting {first.name} would leave no caught-up majority",
                     Phase.RESTARTING, True, ROLLING_RESTART, MEMBER_UNHEALTHY, queue=queue)
    return _restarting(RestartPod(target=first.name, reason="outdated pod template"), queue)


def _renewing(action: Action) -> Plan:
    return Plan(action=action, phase=Phase.RUNNING, available=True,
                progressing=RENEWING_CERTIFICATES)


def _plan_certificates(obs: Observed, healthy: set[str]) -> Plan | None:
    if not obs.certificates:
        return None
    held = {c.pod: c for c in obs.certificates}
    members = [p for p in sorted(obs.pods, key=lambda p: p.ordinal)
               if p.ordinal < obs.desired_replicas and p.name in held]
    # A renewed certificate is in the Secret; the member serves it once its files are updated.
    for pod in members:
        if pod.node is not None and pod.node.served_serial not in (None, held[pod.name].serial):
            return _wait(f"waiting for {pod.name} to load its renewed certificate",
                         Phase.RUNNING, True, RENEWING_CERTIFICATES)
    due = [p for p in members
           if held[p.name].due(obs.now, obs.renew_before, obs.renew_requested)]
    if not due:
        return None
    waiting = sorted(p.name for p in members if p.name not in healthy)
    if waiting:
        return _wait(f"certificates to renew once {', '.join(waiting)} are healthy",
                     Phase.RUNNING, True, RENEWING_CERTIFICATES)
    return _renewing(RenewCertificate(
        target=due[0].name, reason="its certificate expires soon or a renewal was requested"))


def _plan_metrics_token(obs: Observed, healthy: set[str]) -> Plan | None:
    if obs.metrics_token is not False:
        return None
    return Plan(action=CreateMetricsToken(reason="Prometheus scrapes with a read-only token"),
                phase=Phase.RUNNING, available=True)
