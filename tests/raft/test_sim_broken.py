"""The simulator's checks are not vacuous: deliberately broken cores (and a broken runtime)
are caught within a bounded number of seeds, each by the invariant its bug violates.

Each case picks fault settings that make its bug reachable (e.g. one entry per AppendEntries
and short timeouts for Figure 8, no pre-vote and crash-heavy faults for the forgotten vote)
and asserts the first violation comes within `bound` seeds. The runs are deterministic, so
the bound is a regression bound: if a change to the core or the simulator makes a bug harder
to reach, this test says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from konsul.raft.core import CoreConfig, RaftCore
from konsul.raft.sim import SimConfig, campaign
from konsul.raft.sim.broken import BROKEN_CORES

FAST = CoreConfig(
    heartbeat_timeout_ticks=20, election_timeout_ticks=20, leader_lease_ticks=10,
    commit_ticks=2, max_append_entries=1, snapshot_chunk_bytes=16,
)


@dataclass
class Case:
    core: type[RaftCore]
    nodes: int
    bound: int  # seeds
    caught_by: tuple[str, ...]
    knobs: dict[str, object] = field(default_factory=dict)


CASES = {
    # Commits an old-term entry by counting replicas.
    "figure8": Case(
        BROKEN_CORES["figure8"], 3, 10, ("commitment-rule", "state-machine-safety",
                                          "leader-completeness"),
        dict(core=FAST, membership=False, disk_loss=False,
             fault_weights={"crash_leader": 6, "isolate_leader": 6, "lossy": 4}),
    ),
    # Grants votes to candidates whose log is behind.
    "blind-voter": Case(
        BROKEN_CORES["blind-voter"], 3, 20, ("leader-completeness", "state-machine-safety",
                                              "log-matching", "acknowledged-write"),
    ),
    # Counts its own unsynced entries and applies them before they are durable.
    "apply-before-persist": Case(
        BROKEN_CORES["apply-before-persist"], 3, 5, ("apply-before-persist",),
    ),
    # Commits on one replica short of a majority.
    "minority-quorum": Case(
        BROKEN_CORES["minority-quorum"], 3, 20, ("leader-completeness", "state-machine-safety",
                                                  "log-matching", "acknowledged-write"),
    ),
    # Accepts a second membership change while one is uncommitted (the operator sometimes
    # asks for one before the last committed; the core must refuse).
    "concurrent-config": Case(
        BROKEN_CORES["concurrent-config"], 5, 40, ("single-config-change",),
        dict(fault_weights={"add": 6, "remove": 6}),
    ),
    # Never promotes non-voters: safe, but the liveness check must notice.
    "never-promote": Case(BROKEN_CORES["never-promote"], 3, 3, ("liveness",)),
    # The runtime forgets the vote across a restart (storage drops it): a second vote in the
    # same term. Without pre-vote, split elections are common enough to meet a quick restart.
    "forget-vote": Case(
        RaftCore, 5, 60, ("one-vote-per-term", "election-safety"),
        dict(forget_vote=True, membership=False, disk_loss=False, fault_rate=3.0,
             core=CoreConfig(pre_vote=False, snapshot_chunk_bytes=16),
             fault_weights={"crash": 8, "crash_leader": 4, "lossy": 4, "partition": 3}),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_variant_is_caught(name: str) -> None:
    case = CASES[name]
    cfg = SimConfig(nodes=case.nodes, **case.knobs)  # type: ignore[arg-type]
    totals = campaign(range(case.bound), cfg, case.core, stop_at_first=True)
    assert totals.violations, f"{name} survived {case.bound} seeds: {totals.summary()}"
    violation = totals.violations[0].violation
    assert violation is not None
    assert violation.invariant in case.caught_by, f"{name}: {violation}"
    print(f"{name}: caught at seed {totals.violations[0].seed} by {violation}")


def test_the_same_settings_pass_with_the_real_core() -> None:
    """The fault settings above are hard but fair: the correct core survives them."""
    for name in ("figure8", "forget-vote"):
        knobs = dict(CASES[name].knobs)
        knobs.pop("forget_vote", None)
        cfg = SimConfig(nodes=CASES[name].nodes, **knobs)  # type: ignore[arg-type]
        totals = campaign(range(10), cfg)
        assert not totals.violations, f"{name} settings: {totals.violations[0].violation}"
