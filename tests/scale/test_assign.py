"""Rendezvous assignment of checks to members: balanced, minimal movement, the same in every
process."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from konsul.checks.assign import owner, share, weight

CHECKS = [f"web-{n}-http" for n in range(6000)]


def test_every_check_has_one_owner_and_shares_partition_the_checks() -> None:
    members = ["node1", "node2", "node3"]
    shares = [share(CHECKS, members, m) for m in members]
    assert sum(len(s) for s in shares) == len(CHECKS)
    assert set().union(*shares) == set(CHECKS)
    assert owner("x", []) is None


def test_balanced_within_ten_percent() -> None:
    for members in (["a", "b"], ["node1", "node2", "node3"], [f"m{n}" for n in range(5)]):
        counts = Counter(owner(cid, members) for cid in CHECKS)
        fair = len(CHECKS) / len(members)
        assert set(counts) == set(members)
        assert all(abs(c - fair) <= 0.1 * fair for c in counts.values()), counts


def test_a_member_leaving_moves_only_its_checks_and_spreads_them() -> None:
    before = {cid: owner(cid, ["node1", "node2", "node3"]) for cid in CHECKS}
    after = {cid: owner(cid, ["node1", "node3"]) for cid in CHECKS}
    moved = [cid for cid in CHECKS if before[cid] != after[cid]]
    assert all(before[cid] == "node2" for cid in moved)
    assert len(moved) == sum(1 for o in before.values() if o == "node2")
    # the leaver's share goes to both others, about half each
    takers = Counter(after[cid] for cid in moved)
    assert min(takers.values()) >= 0.4 * len(moved), takers


def test_a_member_joining_takes_about_a_fair_share_from_each_and_moves_nothing_else() -> None:
    before = {cid: owner(cid, ["node1", "node2", "node3"]) for cid in CHECKS}
    after = {cid: owner(cid, ["node1", "node2", "node3", "node4"]) for cid in CHECKS}
    moved = [cid for cid in CHECKS if before[cid] != after[cid]]
    assert all(after[cid] == "node4" for cid in moved)
    assert abs(len(moved) - len(CHECKS) / 4) <= 0.1 * len(CHECKS) / 4


def test_order_of_members_does_not_matter() -> None:
    assert all(owner(c, ["a", "b", "c"]) == owner(c, ["c", "a", "b"]) for c in CHECKS[:500])


def test_the_same_in_another_process() -> None:
    # Python's hash() is salted per process: a member using it would disagree with the others.
    code = ("from konsul.checks.assign import owner, weight; "
            "print(owner('web-7-http', ['node1', 'node2', 'node3']), weight('node1', 'c'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "12345"}).stdout.split()
    assert out == [owner("web-7-http", ["node1", "node2", "node3"]), str(weight("node1", "c"))]
