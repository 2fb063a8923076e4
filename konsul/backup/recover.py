"""Disaster recovery: a survivor made a cluster of one when a quorum is lost for good.

When the volumes of a majority of voters are gone (two of three), no leader can ever be
elected again: Raft needs a majority, and the members that remain cannot count as one. The
way out is explicit and on one member, in the spirit of etcd's ``--force-new-cluster``:
``POST /cluster/recover`` (``konsulctl cluster recover``) on the survivor with the most data.
It rewrites that member's configuration to itself alone, as voter; it leads at once, every
entry in its log becomes committed, and the others are joined again, empty, as new members.

It refuses while that would lose anything a quorum could still give: when this node knows or
recently heard a leader, when it lost its own data (``catching_up``), or when enough voters
answer, with data of this cluster, to make a majority together with it: such a cluster elects a
leader by itself once it can, and recovering would throw away what only they hold.

The recovered member gets a new cluster id (``konsul.raft.identity``): members that held the old
configuration, should their volumes come back after all, can never exchange a message with it
(they would form a cluster of their own with the old id, which is why recovery is for volumes
that are gone for good). The Raft side, in terms of the log: one configuration entry, at the
end of the survivor's log in a new term, naming it alone; its hard state moves to that term.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from konsul.errors import ClusteringDisabled, Conflict
from konsul.logs import event
from konsul.raft.messages import encode_configuration
from konsul.raft.quorum import majority
from konsul.raft.runtime import TICK_SECONDS
from konsul.raft.types import Configuration, Entry, EntryKind, HardState, Member

if TYPE_CHECKING:
    from konsul.node import Node

log = logging.getLogger("konsul.backup")

PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2)


@dataclass(frozen=True, slots=True)
class Recovered:
    cluster_id: str
    index: int  # of the configuration entry that made this member the only voter
    term: int
    dropped: tuple[str, ...]  # the members no longer in the configuration


@dataclass(frozen=True, slots=True)
class Answer:
    member: str
    counts: bool  # a live member of this cluster that holds data
    why: str


async def recover(node: Node, headers: Mapping[str, str]) -> Recovered:
    """Make this member a cluster of one (see the module); ``Conflict`` with the reason when
    that is not safe. ``headers``: the caller's token, for asking the other members."""
    if not node.clustered:
        raise ClusteringDisabled()
    core = node.core
    if core.is_empty or core.catching_up:
        raise Conflict("This member lost its own data (it is empty or catching up): recover "
                       "from a survivor that still holds the cluster's data.")
    voters = core.configuration.voters()
    if voters == [node.node_id]:
        raise Conflict("This member is already the only voter: nothing to recover.")
    if node.node_id not in voters:
        raise Conflict("This member is not a voter of its configuration: recover from a voter.")
    quiet = core.ticks_since_leader_contact * TICK_SECONDS
    timeout = node.settings.raft.heartbeat_timeout + node.settings.raft.election_timeout
    if node.leader() is not None or quiet < timeout:
        raise Conflict(
            f"This member heard from a leader {quiet:.1f}s ago: the cluster has a quorum. "
            "Recovery is only for a quorum lost for good."
        )
    others = [m for m in core.configuration.members if m.voter and m.id != node.node_id]
    answers = await asyncio.gather(*(_ask(node, m, headers) for m in others))
    alive = [a for a in answers if a.counts]
    if 1 + len(alive) >= majority(len(voters)):
        names = ", ".join(f"{a.member} ({a.why})" for a in alive)
        raise Conflict(
            f"A quorum of voters is reachable (this member and {names}): it can elect a leader "
            "by itself, and recovering would throw away what only those members hold."
        )
    me = node.me()
    last_index, last_term, term = core.last_index, core.last_term, core.term
    new_term = max(term, last_term) + 1
    config = Configuration((Member(me.id, me.address, True, me.http_address),))
    entry = Entry(last_index + 1, new_term, EntryKind.CONFIG, encode_configuration(config))
    cluster_id = ""

    def rewrite() -> None:
        nonlocal cluster_id
        wal = node.runtime.wal
        if wal.last_index != last_index or wal.hard_state.term != term:
            raise Conflict("The log changed while recovering; try again.")
        cluster_id = node.identity.found()
        wal.append([entry])
        wal.sync()
        wal.save_hard_state(HardState(new_term, me.id))

    await node.runtime.reset_storage(rewrite, load_state=False)
    if node.transport is not None:
        node.transport.reconnect_all()
    dropped = tuple(m.id for m in core.configuration.members if m.id != me.id)
    event(log, logging.WARNING, "recovered as a cluster of one", index=entry.index,
          term=new_term, cluster_id=cluster_id, dropped=",".join(dropped),
          unreachable=",".join(a.member for a in answers if not a.counts))
    return Recovered(cluster_id, entry.index, new_term, dropped)


async def _ask(node: Node, member: Member, headers: Mapping[str, str]) -> Answer:
    """Whether ``member`` answers as a live member of this cluster that holds data."""
    if not member.http_address:
        return Answer(member.id, False, "no known HTTP address")
    try:
        async with node.peer_http.request(
            "GET", member.http_address, "/cluster/status", headers=dict(headers),
            timeout=PROBE_TIMEOUT,
        ) as resp:
            if resp.status != 200:
                # It is alive: whether it holds data we cannot tell, so it counts.
                return Answer(member.id, True, f"answers {resp.status}")
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Answer(member.id, False, f"unreachable: {exc or type(exc).__name__}")
    if not isinstance(body, dict):
        return Answer(member.id, True, "answers")
    if body.get("cluster_id", "") != node.identity.value:
        return Answer(member.id, False, "member of another cluster")
    if body.get("catching_up") or not body.get("last_index"):
        return Answer(member.id, False, "lost its data")
    return Answer(member.id, True, f"holds the log to {body.get('last_index')}")
