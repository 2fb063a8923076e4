"""What the core raises (re-exported by ``konsul.raft.core``, where callers import them)."""

from __future__ import annotations

__all__ = ["NotLeaderError", "ProposalRejected", "RaftSafetyError"]


class NotLeaderError(Exception):
    def __init__(self, leader_id: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader_id})")
        self.leader_id = leader_id


class ProposalRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RaftSafetyError(RuntimeError):
    """A leader asked this node to overwrite a committed entry: some node broke Raft's rules."""
