"""The node: what the HTTP API calls. It owns the Raft runtime, the store and the metrics.

Interface (stable; the HTTP layer codes against it):

- ``store``: the local replica of the state machine (reads go straight to it).
- ``await propose(data)``: replicate a command (from ``konsul.store.commands``) and return the
  state machine's result. Raises ``NotLeader`` (307), ``NoLeader`` (503), ``Unavailable`` (503:
  leadership lost while the write was in flight, outcome unknown).
- ``await read_barrier()``: a linearizable read point (ReadIndex); afterwards the local store
  reflects every write acknowledged before the call. Raises ``NoLeader``.
- ``await wait_for(index_fn, after, timeout)``: blocking reads; returns once ``index_fn() > after``
  or the timeout passes.
- ``status()``, ``leader()``, ``is_leader``, ``peers()``, ``last_contact_ms()``, ``is_ready()``.
- ``await join(member)``, ``leave(node_id)``, ``transfer_leadership(node_id | None)``,
  ``bootstrap()``, ``take_snapshot()``: cluster operations; standalone they raise
  ``ClusteringDisabled`` except ``take_snapshot``.
"""

from __future__ import annotations

from dataclasses import dataclass

from konsul.raft.types import Member


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """Everything ``GET /cluster/status`` shows (the guide's fields plus api.md's additions)."""

    node_id: str
    state: str  # "Leader" | "Follower" | "Candidate" (PreCandidate is shown as Candidate? no: Follower)
    leader_id: str | None
    leader_addr: str | None
    leader_http_addr: str | None
    peers: tuple[Member, ...]
    commit_index: int
    applied_index: int
    last_index: int
    fsm_pending: int
    term: int
    last_contact_ms: int
    last_snapshot_index: int
    address: str
    http_address: str


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    index: int
    term: int
    size_bytes: int
