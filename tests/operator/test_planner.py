"""The pure planner: every step, every guard, every repair, with hand-built observations.

``world()`` builds a healthy cluster; each test bends one thing and checks the one step chosen.
Crash-between-steps cases are written as the observation a restarted operator would see.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from konsul_operator import planner as P
from konsul_operator.planner import Member, NodeView, Observed, PodView, plan

NAME = "kc"
NEW, OLD = "hash-new", "hash-old"


def node(i: int, *, leader: int | None = 0, ready: bool = True, applied: int = 100,
         empty: bool = False, members: int = 3) -> NodeView:
    if empty:
        return NodeView(f"{NAME}-{i}", f"10.0.0.{i}:7000", f"10.0.0.{i}:8500", "Follower",
                        None, 0, 0, 0, 0, 0, False)
    return NodeView(
        node_id=f"{NAME}-{i}", address=f"10.0.0.{i}:7000", http_address=f"10.0.0.{i}:8500",
        state="Leader" if i == leader else "Follower",
        leader_id=None if leader is None else f"{NAME}-{leader}",
        term=3, commit_index=100, applied_index=applied, last_index=100,
        peer_count=members, ready=ready,
    )


def pod(i: int, *, hash_: str = NEW, node_: NodeView | bool | None = True,
        deleting: bool = False, leader: int | None = 0, members: int = 3) -> PodView:
    view = node(i, leader=leader, members=members) if node_ is True else node_
    return PodView(f"{NAME}-{i}", i, f"10.0.0.{i}", hash_, deleting,
                   view if isinstance(view, NodeView) else None)


def world(
    members: int = 3, replicas: int | None = None, pods: int | None = None,
    sts: int | None = None, leader: int | None = 0, bootstrapped: bool = True,
    claims: int | None = None,
) -> Observed:
    """A converged cluster of ``members`` voters, then the given differences."""
    replicas = members if replicas is None else replicas
    pods = members if pods is None else pods
    sts = pods if sts is None else sts
    claims = pods if claims is None else claims
    return Observed(
        name=NAME, desired_replicas=replicas, desired_hash=NEW, sts_replicas=sts,
        pods=tuple(pod(i, leader=leader, members=members) for i in range(pods)),
        members=tuple(Member(f"{NAME}-{i}", f"10.0.0.{i}:7000", True) for i in range(members)),
        leader_id=None if leader is None else f"{NAME}-{leader}",
        leader_commit=100, bootstrapped=bootstrapped,
        claims=tuple(f"data-{NAME}-{i}" for i in range(claims)),
    )


def with_pod(obs: Observed, i: int, **changes: object) -> Observed:
    pods = tuple(replace(p, **changes) if p.ordinal == i else p for p in obs.pods)  # type: ignore[arg-type]
    return replace(obs, pods=pods)


def with_node(obs: Observed, i: int, **changes: object) -> Observed:
    target = next(p for p in obs.pods if p.ordinal == i)
    assert target.node is not None
    return with_pod(obs, i, node=replace(target.node, **changes))  # type: ignore[arg-type]


# ------------------------------------------------------------------------- converged


def test_converged_cluster_takes_no_step() -> None:
    result = plan(world())
    assert result.action.kind == P.NONE and result.converged
    assert result.available and result.progressing is None and result.degraded is None
    assert result.phase == "Running"


# ------------------------------------------------------------------------- bootstrap


def test_bootstrap_waits_for_the_statefulset_then_pod0() -> None:
    obs = world(members=0, replicas=3, pods=0, leader=None, bootstrapped=False)
    assert plan(replace(obs, sts_replicas=None)).action.kind == P.WAIT
    waiting = plan(obs)
    assert waiting.action.kind == P.WAIT and waiting.progressing == P.BOOTSTRAPPING
    assert not waiting.available


def test_bootstrap_pod0_once_its_empty_node_answers() -> None:
    obs = replace(world(members=0, replicas=3, pods=3, leader=None, bootstrapped=False),
                  pods=tuple(pod(i, node_=node(i, empty=True)) for i in range(3)))
    result = plan(obs)
    assert result.action == P.Bootstrap(target=f"{NAME}-0", reason="new cluster")


def test_bootstrap_waits_while_pod0_does_not_answer_even_if_others_do() -> None:
    obs = replace(world(members=0, replicas=3, pods=3, leader=None, bootstrapped=False),
                  pods=(pod(0, node_=None), *(pod(i, node_=node(i, empty=True)) for i in (1, 2))))
    assert plan(obs).action.kind == P.WAIT


def test_crash_after_bootstrap_before_recording_records_instead_of_bootstrapping() -> None:
    # pod-0 has Raft state but status.bootstrapped is still false.
    obs = replace(world(members=1, replicas=3, pods=3), bootstrapped=False)
    result = plan(obs)
    assert result.action.kind == P.RECORD_BOOTSTRAPPED


def test_bootstrapped_cluster_never_bootstraps_a_wiped_pod0() -> None:
    # pod-0 lost its volume and was already removed: it is joined, not bootstrapped.
    obs = world(members=3, replicas=3, leader=1)
    obs = replace(obs, members=obs.members[1:])
    obs = with_pod(obs, 0, node=node(0, empty=True))
    result = plan(obs)
    assert result.action.kind == P.JOIN and result.action.target == f"{NAME}-0"
    for variant in (obs, with_pod(obs, 0, node=None)):
        assert plan(variant).action.kind != P.BOOTSTRAP


# ------------------------------------------------------------------------- quorum guard


@pytest.mark.parametrize("down", [(1, 2), (0, 1), (0, 2)])
def test_quorum_lost_takes_no_step_and_reports_degraded(down: tuple[int, int]) -> None:
    obs = world(members=3, leader=0 if 0 not in down else None)
    for i in down:
        obs = with_pod(obs, i, node=None)
    # Whatever else is pending (scale, restart, joins) must wait.
    for variant in (obs, replace(obs, desired_replicas=5), replace(obs, desired_hash="x"),
                    replace(obs, desired_replicas=1)):
        result = plan(variant)
        assert result.action.kind == P.WAIT
        assert result.degraded == P.QUORUM_LOST and not result.available


def test_quorum_lost_may_grow_a_shrunk_statefulset_back() -> None:
    # Someone scaled the StatefulSet to 1: no quorum, but bringing pods back is no membership
    # change and the only way out.
    obs = replace(with_pod(with_pod(world(), 1, node=None), 2, node=None), sts_replicas=1)
    result = plan(obs)
    assert result.action.kind == P.SCALE_STS and result.action.replicas == 3
    assert result.degraded == P.QUORUM_LOST and not result.available


def test_no_leader_is_quorum_lost() -> None:
    result = plan(replace(world(), leader_id=None, members=()))
    assert result.degraded == P.QUORUM_LOST and result.action.kind == P.WAIT


def test_lagging_members_do_not_count_towards_quorum() -> None:
    obs = with_node(world(), 1, applied_index=100 - P.MAX_LAG - 1)
    obs = with_node(obs, 2, ready=False, leader_id=None)
    assert plan(obs).degraded == P.QUORUM_LOST


def test_quorum_recovers_when_pods_return() -> None:
    obs = with_pod(with_pod(world(), 1, node=None), 2, node=None)
    assert plan(obs).degraded == P.QUORUM_LOST
    assert plan(world()).converged


def test_one_member_down_is_degraded_but_available() -> None:
    result = plan(with_pod(world(), 2, node=None))
    assert result.available and result.degraded == P.MEMBER_UNHEALTHY
    assert result.action.kind == P.WAIT


# ------------------------------------------------------------------------- scale up


def test_scale_up_grows_the_statefulset_first() -> None:
    result = plan(world(members=3, replicas=5))
    assert result.action == P.ScaleStatefulSet(replicas=5, reason="scale up")
    assert result.progressing == P.SCALING_UP


def test_scale_up_joins_lowest_new_pod_with_its_own_address() -> None:
    obs = world(members=3, replicas=5, pods=5)
    obs = with_pod(with_pod(obs, 3, node=node(3, empty=True)), 4, node=node(4, empty=True))
    result = plan(obs)
    assert result.action.kind == P.JOIN and result.action.target == f"{NAME}-3"
    assert result.action.address == "10.0.0.3:7000"
    assert result.action.http_address == "10.0.0.3:8500"


def test_join_waits_for_the_previous_member_to_be_promoted() -> None:
    obs = world(members=4, replicas=5, pods=5)
    obs = replace(obs, members=(*obs.members[:3], Member(f"{NAME}-3", "10.0.0.3:7000", False)))
    obs = with_pod(obs, 4, node=node(4, empty=True))
    result = plan(obs)
    assert result.action.kind == P.WAIT and "promotion" in result.message


def test_join_waits_for_the_previous_member_to_catch_up() -> None:
    obs = world(members=4, replicas=5, pods=5)
    obs = with_node(obs, 3, ready=False)  # promoted, still applying what it missed
    obs = with_pod(obs, 4, node=node(4, empty=True))
    result = plan(obs)
    assert result.action.kind == P.WAIT and f"{NAME}-3 to catch up" in result.message
    assert plan(with_node(obs, 3, ready=True)).action.kind == P.JOIN


def test_join_waits_for_a_pod_that_does_not_answer() -> None:
    obs = with_pod(world(members=3, replicas=4, pods=4), 3, node=None)
    assert plan(obs).action.kind == P.WAIT


def test_crash_between_scale_up_and_join_converges() -> None:
    # The operator grew the StatefulSet, then died: the next reconcile joins.
    obs = with_pod(world(members=3, replicas=5, pods=5), 3, node=node(3, empty=True))
    obs = with_pod(obs, 4, node=node(4, empty=True))
    assert plan(obs).action.kind == P.JOIN
    # ...and if it died after the join, the next pod follows.
    obs = replace(obs, members=(*obs.members, Member(f"{NAME}-3", "10.0.0.3:7000", True)))
    obs = with_pod(obs, 3, node=node(3))
    result = plan(obs)
    assert result.action.kind == P.JOIN and result.action.target == f"{NAME}-4"


def test_waits_for_missing_pods() -> None:
    result = plan(world(members=3, replicas=4, pods=3, sts=4))
    assert result.action.kind == P.WAIT and f"{NAME}-3" in result.message


# ------------------------------------------------------------------------- scale down


def test_scale_down_removes_the_highest_ordinal_first() -> None:
    result = plan(world(members=5, replicas=3))
    assert result.action == P.RemoveMember(target=f"{NAME}-4", reason="scale down")
    assert result.progressing == P.SCALING_DOWN


def test_scale_down_moves_leadership_away_from_a_removed_leader() -> None:
    result = plan(world(members=5, replicas=3, leader=4))
    assert result.action.kind == P.TRANSFER and result.action.target == f"{NAME}-4"
    assert result.action.to in {f"{NAME}-{i}" for i in range(3)}


def test_scale_down_transfer_prefers_the_most_caught_up_staying_member() -> None:
    obs = with_node(world(members=5, replicas=3, leader=4), 0, applied_index=90)
    obs = with_node(obs, 1, applied_index=95)
    assert plan(obs).action.to == f"{NAME}-2"


def test_scale_down_leader_without_successor_waits() -> None:
    obs = world(members=3, replicas=1, leader=2)
    obs = with_node(obs, 0, ready=False, leader_id=None)
    # 2 leads, 1 is healthy but also being removed, 0 is not ready: nobody to hand over to.
    result = plan(obs)
    assert result.action.kind == P.WAIT


def test_scale_down_shrinks_statefulset_after_members_left() -> None:
    obs = world(members=3, replicas=3, pods=5, sts=5)
    result = plan(obs)
    assert result.action == P.ScaleStatefulSet(
        replicas=3, reason="members removed, shrink the StatefulSet")


def test_crash_between_leave_and_shrink_converges() -> None:
    # Member 4 left, the operator died before shrinking: 4's pod still runs, not a member.
    obs = world(members=5, replicas=3, pods=5, sts=5)
    obs = replace(obs, members=obs.members[:4])
    assert plan(obs).action.target == f"{NAME}-3"  # continues leaving
    obs = replace(obs, members=obs.members[:3])
    assert plan(obs).action.kind == P.SCALE_STS  # and never joins the removed pods back


def test_scale_down_deletes_claims_of_removed_ordinals_once_pods_are_gone() -> None:
    obs = world(members=3, replicas=3, pods=3, sts=3, claims=5)
    result = plan(obs)
    assert result.action.kind == P.DELETE_CLAIMS
    assert result.action.claims == (f"data-{NAME}-3", f"data-{NAME}-4")
    # Not while the pod of that ordinal is still terminating.
    terminating = replace(obs, pods=(*obs.pods, pod(4, deleting=True, node_=None)))
    assert plan(terminating).action.claims == (f"data-{NAME}-3",)


def test_scale_down_guard_refuses_to_remove_when_no_majority_remains() -> None:
    obs = world(members=5, replicas=3)
    obs = with_node(obs, 0, ready=False, leader_id=None)
    obs = with_node(obs, 1, ready=False, leader_id=None)
    # healthy: 2,3,4 (3 of 5). Removing 4 leaves 2,3 healthy of 4 voters: below a majority (3).
    result = plan(obs)
    assert result.action.kind == P.WAIT


def test_scale_down_removes_a_non_voter_being_added() -> None:
    obs = world(members=4, replicas=3, pods=4)
    obs = replace(obs, members=(*obs.members[:3], Member(f"{NAME}-3", "10.0.0.3:7000", False)))
    assert plan(obs).action == P.RemoveMember(target=f"{NAME}-3", reason="scale down")


def test_scale_to_one_then_back() -> None:
    assert plan(world(members=3, replicas=1)).action.target == f"{NAME}-2"
    one = world(members=1, replicas=1, pods=3, sts=3)
    assert plan(one).action.kind == P.SCALE_STS
    assert plan(world(members=1, replicas=3, pods=1, sts=1)).action.kind == P.SCALE_STS


# ------------------------------------------------------------------------- repair


def test_member_with_lost_volume_is_removed_then_joined() -> None:
    obs = with_pod(world(), 2, node=node(2, empty=True))
    result = plan(obs)
    assert result.action.kind == P.REMOVE and result.action.target == f"{NAME}-2"
    assert result.progressing == P.REPAIRING
    removed = replace(obs, members=obs.members[:2])
    assert plan(removed).action.kind == P.JOIN


def test_a_voter_refilled_after_losing_its_volume_is_removed_then_joined() -> None:
    # The leader reached the wiped node first: it holds a log again, but reports that it started
    # empty and was never promoted since. It will not vote until removed and added again.
    refilled = replace(node(2), catching_up=True)
    obs = with_pod(world(), 2, node=refilled)
    result = plan(obs)
    assert result.action.kind == P.REMOVE and result.action.target == f"{NAME}-2"
    removed = replace(obs, members=obs.members[:2])
    assert plan(removed).action.kind == P.JOIN


def test_an_empty_non_voter_is_catching_up_not_repaired() -> None:
    obs = world(members=4, replicas=4)
    obs = replace(obs, members=(*obs.members[:3], Member(f"{NAME}-3", "10.0.0.3:7000", False)))
    obs = with_pod(obs, 3, node=node(3, empty=True))
    result = plan(obs)
    assert result.action.kind == P.WAIT and "promotion" in result.message


def test_pod0_with_lost_volume_is_removed_never_bootstrapped() -> None:
    obs = with_pod(world(leader=1), 0, node=node(0, empty=True))
    result = plan(obs)
    assert result.action.kind == P.REMOVE and result.action.target == f"{NAME}-0"


def test_lost_volume_repair_respects_quorum() -> None:
    obs = with_pod(world(members=3), 2, node=node(2, empty=True))
    obs = with_node(obs, 1, ready=False, leader_id=None)
    # healthy: 0 only -> quorum already lost, nothing happens.
    assert plan(obs).degraded == P.QUORUM_LOST
    five = with_pod(world(members=5), 4, node=node(4, empty=True))
    five = with_node(five, 3, ready=False, leader_id=None)
    five = with_node(five, 2, ready=False, leader_id=None)
    # healthy 0,1 of 5 voters: quorum lost as well.
    assert plan(five).action.kind == P.WAIT


def test_repair_waits_when_removal_would_break_quorum() -> None:
    obs = world(members=4)
    obs = with_pod(obs, 3, node=node(3, empty=True))
    obs = with_node(obs, 2, ready=False, leader_id=None)
    # healthy 0,1 of 4 voters: below majority(4)=3 -> quorum lost already.
    assert plan(obs).degraded == P.QUORUM_LOST
    obs = world(members=2)
    obs = with_pod(obs, 1, node=node(1, empty=True))
    # healthy: 0 of 2 voters -> quorum lost (majority 2).
    assert plan(obs).degraded == P.QUORUM_LOST


# ------------------------------------------------------------------------- rolling restart


def outdated(obs: Observed, *ordinals: int) -> Observed:
    for i in ordinals:
        obs = with_pod(obs, i, template_hash=OLD)
    return obs


def test_restart_followers_high_ordinal_first_leader_last() -> None:
    obs = outdated(world(leader=1), 0, 1, 2)
    result = plan(obs)
    assert result.action == P.RestartPod(target=f"{NAME}-2",
                                    reason="outdated pod template")
    assert result.restart_queue == (f"{NAME}-2", f"{NAME}-0", f"{NAME}-1")
    assert result.progressing == P.ROLLING_RESTART


def test_restart_not_ready_pods_first() -> None:
    obs = with_node(outdated(world(members=5), 0, 1, 2, 3, 4), 1, ready=False, leader_id=None)
    result = plan(obs)
    assert result.action.target == f"{NAME}-1"
    assert result.restart_queue[0] == f"{NAME}-1"
    assert result.restart_queue[-1] == f"{NAME}-0"


def test_restart_waits_for_the_previous_pod_to_be_ready_and_caught_up() -> None:
    obs = outdated(world(), 0, 1)  # 2 was restarted already
    for variant in (with_node(obs, 2, ready=False, leader_id=None), with_pod(obs, 2, node=None),
                    with_node(obs, 2, applied_index=100 - P.MAX_LAG - 1)):
        result = plan(variant)
        assert result.action.kind == P.WAIT, variant
        assert result.progressing == P.ROLLING_RESTART


def test_restart_waits_for_a_restarted_pod_to_be_a_member_again() -> None:
    obs = outdated(world(), 0, 1)
    obs = replace(obs, members=(*obs.members[:2], Member(f"{NAME}-2", "10.0.0.2:7000", False)))
    assert plan(obs).action.kind == P.WAIT


def test_leader_is_restarted_after_a_transfer() -> None:
    obs = outdated(world(leader=0), 0)
    result = plan(obs)
    assert result.action.kind == P.TRANSFER and result.action.target == f"{NAME}-0"
    assert result.action.to in (f"{NAME}-1", f"{NAME}-2")
    # Once it follows, it is restarted like any follower.
    moved = outdated(world(leader=1), 0)
    assert plan(moved).action == P.RestartPod(target=f"{NAME}-0",
                                         reason="outdated pod template")


def test_single_replica_restart_is_allowed() -> None:
    obs = outdated(world(members=1), 0)
    assert plan(obs).action.kind == P.RESTART_POD


def test_restart_guard_with_a_member_down() -> None:
    # 5 members, 3 and 4 down (not outdated): restarting another follower would leave 2 of 5.
    obs = outdated(world(members=5), 1, 2)
    obs = with_pod(with_pod(obs, 3, node=None), 4, node=None)
    result = plan(obs)
    assert result.action.kind == P.WAIT


def test_restart_annotation_or_image_change_is_the_same_hash_change() -> None:
    obs = replace(world(), desired_hash="another")
    result = plan(obs)
    assert result.action.kind == P.RESTART_POD and len(result.restart_queue) == 3


def test_scale_down_comes_before_restart_and_scale_up_before_join() -> None:
    obs = outdated(world(members=5, replicas=3), 0, 1, 2, 3, 4)
    assert plan(obs).action.kind == P.REMOVE
    up = outdated(world(members=3, replicas=5), 0)
    assert plan(up).action.kind == P.SCALE_STS


# ------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("n,m", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_majority(n: int, m: int) -> None:
    assert P.majority(n) == m


def test_deleting_pods_are_ignored_as_members_pods() -> None:
    obs = with_pod(world(), 2, deleting=True)
    result = plan(obs)
    assert result.degraded == P.MEMBER_UNHEALTHY or result.action.kind == P.WAIT


def test_a_node_that_says_it_is_behind_does_not_count_as_caught_up() -> None:
    # Its applied index looks close to the leader's commit from here (two answers taken apart),
    # but the node itself, comparing with the commit the leader just announced, is behind: a
    # rolling restart waits for it (restarted already, it is not in the queue).
    obs = outdated(with_node(world(), 2, ready=False), 0, 1)
    assert P.healthy_voters(obs) == {f"{NAME}-0", f"{NAME}-1"}
    result = plan(obs)
    assert result.action.kind == P.WAIT and f"{NAME}-2" in result.message


# ------------------------------------------------------------------------- certificates, tokens

DAY = 86400.0
NOW = 1_000 * DAY


def certs(*, issued: float = NOW - 10 * DAY, expires: float = NOW + 80 * DAY,
          serial: int = 7) -> tuple[P.MemberCert, ...]:
    return tuple(P.MemberCert(f"{NAME}-{i}", serial + i, issued, expires) for i in range(3))


def secure(obs: Observed, held: tuple[P.MemberCert, ...], serving: int = 7,
           requested: float | None = None) -> Observed:
    """TLS on: the Secret holds ``held``; every node serves serial ``serving + ordinal``."""
    for i in range(3):
        obs = with_node(obs, i, served_serial=serving + i)
    return replace(obs, certificates=held, renew_before=30 * DAY, renew_requested=requested,
                   now=NOW)


def test_certificates_far_from_expiry_need_nothing() -> None:
    assert plan(secure(world(), certs())).converged


def test_a_certificate_near_expiry_is_renewed_one_member_at_a_time() -> None:
    due = certs(expires=NOW + 29 * DAY)
    step = plan(secure(world(), due)).action
    assert isinstance(step, P.RenewCertificate) and step.target == f"{NAME}-0"
    # kc-0's Secret entry is new (serial 100) but kc-0 still serves the old one: wait for it.
    renewed = (P.MemberCert(f"{NAME}-0", 100, NOW, NOW + 90 * DAY), *due[1:])
    waiting = plan(secure(world(), renewed))
    assert waiting.action.kind == P.WAIT and "kc-0 to load its renewed" in waiting.message
    assert waiting.progressing == "RenewingCertificates"
    # Once it serves it, the next member.
    served = with_node(secure(world(), renewed), 0, served_serial=100)
    step = plan(served).action
    assert isinstance(step, P.RenewCertificate) and step.target == f"{NAME}-1"


def test_a_renewal_request_renews_what_was_issued_before_it_and_nothing_after() -> None:
    step = plan(secure(world(), certs(), requested=NOW - DAY)).action
    assert isinstance(step, P.RenewCertificate) and step.target == f"{NAME}-0"
    assert plan(secure(world(), certs(issued=NOW - 3600), requested=NOW - DAY)).converged
    # A request in the future is not one yet.
    assert plan(secure(world(), certs(), requested=NOW + DAY)).converged


def test_no_renewal_while_a_member_is_unhealthy() -> None:
    obs = with_node(secure(world(), certs(expires=NOW + DAY)), 2, leader_id=None)
    result = plan(obs)
    assert result.action.kind == P.WAIT and "once kc-2 are healthy" in result.message


def test_the_metrics_token_is_made_once_the_cluster_has_a_leader() -> None:
    step = plan(replace(world(), metrics_token=False)).action
    assert isinstance(step, P.CreateMetricsToken)
    assert plan(replace(world(), metrics_token=True)).converged
    assert plan(replace(world(), metrics_token=None)).converged  # unknown: not now
