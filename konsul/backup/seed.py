"""A new cluster founded from a backup: its first member starts with the backup's state.

Offline (``konsul restore FILE``, the node stopped, its data directory empty) or on a running
node that has no Raft state yet (``POST /cluster/bootstrap`` with the backup as its body: the
operator's ``spec.restore`` seeds pod-0 so). Either way the member's storage becomes what a
one-voter cluster would hold had it applied the backup's entries itself:

* a Raft snapshot at the backup's index and term holding its state, with a configuration of
  this member alone as voter: the log goes on from the next index, so every index the old
  cluster showed stays below every new one;
* its hard state in that term, so the member is not "catching up" (``konsul/raft/catchup.py``)
  and leads at once, as any single voter does;
* a new cluster id (``konsul.raft.identity``): the new cluster cannot exchange a Raft message
  with the old one, even if both run at the same addresses with the same member names.

The other members then join it as usual (``POST /cluster/join``, or the operator).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from konsul.backup import file
from konsul.backup.file import Header
from konsul.backup.staging import Staged
from konsul.config import Settings
from konsul.errors import BadRequest, ClusteringDisabled, Conflict
from konsul.raft import identity
from konsul.raft.identity import ClusterIdentity
from konsul.raft.types import Configuration, HardState, Member, SnapshotMeta
from konsul.storage.snapshots import SnapshotStore
from konsul.storage.wal import WriteAheadLog

if TYPE_CHECKING:
    from konsul.node import Node


@dataclass(frozen=True, slots=True)
class Seeded:
    cluster_id: str
    index: int
    term: int


def seed_storage(
    wal: WriteAheadLog,
    snapshots: SnapshotStore,
    cluster: ClusterIdentity,
    member: Member,
    header: Header,
    body: Iterable[bytes],
) -> Seeded:
    """Write a one-voter cluster's storage holding the snapshot ``body`` (see the module)."""
    term = max(1, header.term)  # (a durable term 0 would mean "started empty")
    voter = Member(member.id, member.address, True, member.http_address)
    meta = SnapshotMeta(header.index, term, Configuration((voter,)))
    cluster_id = cluster.found()
    snapshots.save_stream(meta, body)
    wal.reset(meta.index, term)
    wal.save_hard_state(HardState(term, member.id))
    return Seeded(cluster_id, meta.index, term)


def restore_offline(path: str, settings: Settings) -> tuple[Seeded, file.Inspection]:
    """``konsul restore FILE``: found a cluster from a backup file in this node's empty data
    directory. The file is checked whole first; a bad one changes nothing."""
    try:
        checked = file.inspect(file.read_file(path))
    except file.BadBackup as exc:
        raise BadRequest(f"{path}: {exc}. Nothing was changed.") from None
    data_dir = settings.raft.data_dir
    member = Member(identity.node_id(settings), settings.raft.advertise_addr, True,
                    settings.http_advertise_addr)
    os.makedirs(data_dir, exist_ok=True)
    with (
        WriteAheadLog.open(os.path.join(data_dir, "wal")) as wal,
        SnapshotStore(os.path.join(data_dir, "snapshots"), settings.raft.snapshot_retention)
        as snapshots,
    ):
        cluster = ClusterIdentity(data_dir, lambda: bool(
            wal.hard_state.term or wal.last_index or snapshots.list()))
        if cluster.value or cluster.has_state():
            raise Conflict(
                f"{data_dir} already holds Raft state: restore only into an empty data "
                "directory (a restore founds a new cluster; it never joins an existing one)."
            )
        seeded = seed_storage(wal, snapshots, cluster, member, checked.header,
                              file.read(file.read_file(path)))
    return seeded, checked


async def seed_running(node: Node, staged: Staged) -> Seeded:
    """Found a cluster from a staged backup on this running node, which must be empty."""
    if not node.clustered:
        raise ClusteringDisabled()
    seeded: Seeded | None = None

    def rewrite() -> None:
        nonlocal seeded
        if not node.core.is_empty or node.identity.value:
            raise Conflict("This node already has Raft state; only an empty node can be "
                           "bootstrapped, from a backup or not.")
        with open(staged.path, "rb") as f:
            body = iter(lambda: f.read(1 << 20), b"")
            seeded = seed_storage(node.runtime.wal, node.runtime.snapshots, node.identity,
                                  node.me(), staged.header, body)

    await node.runtime.reset_storage(rewrite, load_state=True)
    if node.transport is not None:
        node.transport.reconnect_all()
    assert seeded is not None
    return seeded
