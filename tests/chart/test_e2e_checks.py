"""The e2e scenarios' checkers (e2e/checks.py) on hand-made observations: each must say no
when it should (a checker that cannot fail would let the e2e pass on a broken operator)."""

from __future__ import annotations

from typing import Any

from e2e import checks as k8s
from e2e.driver import Pod

NAME = "kc"


def kc(available: str = "True", progressing: str = "False", ready: int = 3) -> dict[str, Any]:
    return {"status": {"readyReplicas": ready, "conditions": [
        {"type": "Available", "status": available},
        {"type": "Progressing", "status": progressing},
    ]}}


def pods(n: int = 3, ready: bool = True) -> dict[str, Pod]:
    return {f"{NAME}-{i}": Pod(f"{NAME}-{i}", f"u{i}", ready, f"10.0.0.{i}", "Running")
            for i in range(n)}


def statuses(voters: int = 3, leader: int = 1, n: int = 3) -> dict[str, dict[str, Any] | None]:
    peers = [{"id": f"{NAME}-{i}", "voter": i < voters} for i in range(n)]
    return {f"{NAME}-{i}": {"state": "Leader" if i == leader else "Follower", "peers": peers,
                            "term": 2} for i in range(n)}


def test_converged_when_everything_agrees() -> None:
    assert k8s.is_converged(kc(), pods(), statuses(), NAME, 3)


def test_not_converged_on_any_single_difference() -> None:
    assert not k8s.is_converged(kc(available="False"), pods(), statuses(), NAME, 3)
    assert not k8s.is_converged(kc(progressing="True"), pods(), statuses(), NAME, 3)
    assert not k8s.is_converged(kc(ready=2), pods(), statuses(), NAME, 3)
    assert not k8s.is_converged(kc(), pods(ready=False), statuses(), NAME, 3)
    assert not k8s.is_converged(kc(), pods(4), statuses(n=4, voters=3), NAME, 3)
    assert not k8s.is_converged(kc(), pods(), statuses(voters=2), NAME, 3)
    # A fourth member still catching up (a non-voter) is not converged either.
    assert not k8s.is_converged(kc(), pods(), statuses(n=4, voters=3), NAME, 3)
    no_leader = {k: {**v, "state": "Follower"} for k, v in statuses().items() if v}
    assert not k8s.is_converged(kc(), pods(), dict(no_leader), NAME, 3)
    assert not k8s.is_converged(None, pods(), statuses(), NAME, 3)


def test_leader_of_skips_silent_nodes() -> None:
    observed = statuses(leader=2)
    observed[f"{NAME}-0"] = None
    assert k8s.leader_of(observed) == (f"{NAME}-2", observed[f"{NAME}-2"])
    assert k8s.leader_of({f"{NAME}-0": None}) is None


def test_leader_of_prefers_the_newest_term() -> None:
    """A deposed leader that has not heard yet still says Leader, with an older term."""
    observed = statuses(leader=2)
    observed[f"{NAME}-0"] = {"state": "Leader", "term": 1, "peers": []}
    assert k8s.leader_of(observed) == (f"{NAME}-2", observed[f"{NAME}-2"])


def test_leader_changes_ignore_unknown_samples() -> None:
    assert k8s.leader_changes(["a", None, "a", "a"]) == 0
    assert k8s.leader_changes(["a", None, "b", "b", None]) == 1
    assert k8s.leader_changes(["a", "b", "a"]) == 2


def test_replacement_order_follows_new_uids() -> None:
    before = {"p0": "a", "p1": "b", "p2": "c"}
    samples = [{"p0": "a", "p1": "b", "p2": "c"}, {"p0": "a", "p1": "b"},
               {"p0": "a", "p1": "b", "p2": "c2"}, {"p0": "a", "p1": "b2", "p2": "c2"},
               {"p0": "a2", "p1": "b2", "p2": "c2"}]
    assert k8s.replacement_order(before, samples) == ["p2", "p1", "p0"]
    assert k8s.replacement_order(before, samples[:3]) == ["p2"]


def test_count_events_counts_series() -> None:
    events: list[dict[str, Any]] = [{"reason": "Bootstrap"}, {"reason": "Join", "count": 2},
              {"reason": "Bootstrap", "count": 3}]
    assert k8s.count_events(events, "Bootstrap") == 4
    assert k8s.count_events(events, "Join") == 2
    assert k8s.count_events([], "Bootstrap") == 0


def test_longest_gap_counts_the_edges() -> None:
    assert k8s.longest_gap([1.0, 2.0, 2.5], start=0.0, end=3.0) == 1.0
    assert k8s.longest_gap([1.0, 1.2], start=0.0, end=6.0) == 4.8   # nothing after 1.2
    assert k8s.longest_gap([], start=0.0, end=2.0) == 2.0
    assert k8s.longest_gap([5.0], start=0.0, end=2.0) == 2.0          # outside the window


def test_condition_and_names() -> None:
    assert k8s.condition(kc(), "Available") == {"type": "Available", "status": "True"}
    assert k8s.condition(kc(), "Degraded") == {} and k8s.condition(None, "Available") == {}
    assert k8s.pod_name(NAME, 4) == "kc-4"
