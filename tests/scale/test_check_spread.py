"""Checks spread over the members (#16): three in-process members with their HTTP APIs, one
local target that records which member's worker sent each probe (its User-Agent)."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from konsul.checks.assign import owner
from konsul.checks.share import DEAD_AFTER
from konsul.checks.worker import USER_AGENT
from konsul.store import commands
from tests.inprocess import InProcessCluster, until
from tests.processes import KonsulProcess, wait_until

CHECKS = 30
INTERVAL = 2.0


class Target:
    """Probe times per (member, check), from the worker's User-Agent and the path."""

    def __init__(self) -> None:
        self.hits: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        agent = request.headers.get("User-Agent", "")
        assert agent.startswith(USER_AGENT), agent
        member = agent.rsplit(" ", 1)[-1].rstrip(")")
        self.hits[member, request.match_info["check"]].append(time.monotonic())
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/c/{check}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/c/"

    def probers(self, check: str, since: float = 0.0) -> set[str]:
        return {m for (m, c), times in self.hits.items() if c == check
                and any(t >= since for t in times)}

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    t = Target()
    await t.start()
    yield t
    await t.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    c = await InProcessCluster.start(tmp_path, 3, http=True)
    try:
        yield c
    finally:
        await c.close()


def check_ids() -> list[str]:
    return [f"c{n}" for n in range(CHECKS)]


def settled(cluster: InProcessCluster) -> bool:
    """Every member holds exactly the share the hash gives it over all three."""
    members = sorted(cluster.nodes)
    return all(n.checks.share.assigned.keys() == {
        c for c in check_ids() if owner(c, members) == n.node_id}
        for n in cluster.nodes.values())


async def register(cluster: InProcessCluster, target: Target) -> None:
    for s in range(0, CHECKS, 10):
        checks = [{"id": cid, "http": target.url + cid, "interval": f"{INTERVAL}s"}
                  for cid in check_ids()[s:s + 10]]
        await cluster.leader().propose(commands.service_register(
            {"id": f"svc{s}", "name": "web", "checks": checks}))


async def test_each_member_probes_its_share_and_a_stopped_members_share_moves(
    cluster: InProcessCluster, target: Target
) -> None:
    await register(cluster, target)
    members = sorted(cluster.nodes)
    # (while members join, a newcomer is not yet heard from: shares settle once all report)
    await until(lambda: settled(cluster), 10, "the shares to settle")
    since = time.monotonic() + 0.2  # (a probe already under way may still land)
    # Every check probed, each by the one member the hash names, and all three take part.
    await until(lambda: all(target.probers(c, since) for c in check_ids()), 2 * INTERVAL + 1,
                "every check to be probed")
    for cid in check_ids():
        assert target.probers(cid, since) == {owner(cid, members)}, cid
    assert {owner(c, members) for c in check_ids()} == set(members)
    # Results reach the log through the leader, and every replica shows them.
    await until(lambda: all(n.store.check(c).status == "passing"  # type: ignore[union-attr]
                            for n in cluster.nodes.values() for c in check_ids()),
                5, "every check passing on every member")
    assert settled(cluster)

    # A follower stops: within one interval (after its loss is noticed) the others probe its
    # checks, and nothing else moves.
    leader = cluster.leader()
    gone = next(n for n in members if n != leader.node_id)
    moved = [c for c in check_ids() if owner(c, members) == gone]
    kept = {n: cluster.nodes[n].checks.share.set_orders for n in members if n != gone}
    await cluster.stop_node(gone)
    stopped = time.monotonic()
    await until(lambda: all(target.probers(c, stopped) - {gone} for c in moved),
                DEAD_AFTER + INTERVAL + 1.0, "the stopped member's checks to be probed")
    survivors = [n for n in members if n != gone]
    for cid in moved:
        assert target.probers(cid, stopped) - {gone} == {owner(cid, survivors)}, cid
    for n, orders in kept.items():  # each took only moved checks: no other probe restarted
        share = cluster.nodes[n].checks.share
        assert share.set_orders - orders == sum(owner(c, survivors) == n for c in moved)


async def test_a_leader_change_restarts_no_probe_and_a_crashed_worker_comes_back(
    cluster: InProcessCluster, target: Target
) -> None:
    await register(cluster, target)
    nodes = list(cluster.nodes.values())
    await until(lambda: settled(cluster), 10, "the shares to settle")
    await until(lambda: all(target.probers(c) for c in check_ids()), 3 * INTERVAL,
                "every check to be probed")
    before = {n.node_id: (n.checks.worker.pid, n.checks.share.set_orders) for n in nodes}
    old = cluster.leader()
    new = await old.membership.transfer_leadership(None)
    await until(lambda: cluster.converged() and cluster.leader().node_id == new, 10,
                "the new leader")
    # Long enough for the new leader to trust only what it hears (DEAD_AFTER) and then some.
    since = time.monotonic()
    await until(lambda: all(target.probers(c, since) for c in check_ids()), 2 * INTERVAL + 1,
                "every check probed after the change")
    assert {n.node_id: (n.checks.worker.pid, n.checks.share.set_orders) for n in nodes} == before

    # A worker that crashes is started again and given its share back.
    victim = nodes[0]
    pid = victim.checks.worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await until(lambda: victim.checks.worker.pid not in (None, pid), 5, "a new worker")
    restarted = time.monotonic()
    await until(lambda: bool(victim.checks.share.assigned), 2, "the share given again")
    mine = list(victim.checks.share.assigned)
    await until(lambda: all(victim.node_id in target.probers(c, restarted) for c in mine),
                INTERVAL + 3, "the new worker to probe the share")
    # A member that stops reaps its worker.
    await cluster.stop_node(victim.node_id)
    new_pid = victim.checks.worker.pid
    assert new_pid is None and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_a_worker_dies_with_its_member(tmp_path: Path) -> None:
    node = KonsulProcess(tmp_path / "data").start()
    assert node.proc is not None
    pid = node.proc.pid
    try:
        workers = wait_until(lambda: _children(pid), 10, "the probe worker")
    finally:
        node.kill()  # SIGKILL: no chance to stop the worker itself
    wait_until(lambda: not any(_running(w) for w in workers), 10, "the worker to exit")


def _running(pid: int) -> bool:
    """A live process (not a zombie its new parent has yet to reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
