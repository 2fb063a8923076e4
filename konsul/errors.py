"""The node's domain errors: what went wrong, in words a caller can act on.

Nothing here knows HTTP. The API maps each class to a status, a machine code and headers in one
table (``konsul.api.errors``); the client and the CLI see only that HTTP form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from konsul.raft.types import Member


class KonsulError(Exception):
    """Base class: ``message`` is a sentence for a person; ``details`` are extra fields for the
    caller (a CAS mismatch's ``current_index``, a transaction's ``errors``)."""

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: Mapping[str, Any] = details or {}


class NotLeader(KonsulError):
    """A write reached a follower that knows the leader: send it there."""

    def __init__(self, leader: Member) -> None:
        super().__init__("This node is not the leader. Redirect to leader for write operations.")
        self.leader = leader


class NoLeader(KonsulError):
    """No leader is known right now (an election, no quorum); nothing was done: retry."""

    def __init__(self, message: str = "No leader is known; retry shortly.") -> None:
        super().__init__(message)


class ClusteringDisabled(KonsulError):
    """A membership operation on a standalone node."""

    def __init__(
        self, message: str = "Clustering is not enabled on this node (KONSUL_RAFT_ENABLED=false)."
    ) -> None:
        super().__init__(message)


class Unavailable(KonsulError):
    """The node cannot do it now: it is stopping, or the leader could not be reached."""


class OutcomeUnknown(Unavailable):
    """The write was proposed but its fate is not known (leadership lost while in flight, or it
    did not commit in time): it may or may not be applied."""


class Conflict(KonsulError):
    """The request contradicts the current state (a CAS mismatch, an id already in use)."""


class PermissionDenied(KonsulError):
    """The request's token (or the anonymous token) may not do this, or is unknown."""


class NotFound(KonsulError):
    """No such key, instance, check or member."""


class BadRequest(KonsulError):
    """Malformed input, or input the current state makes invalid."""


class TooLarge(KonsulError):
    """A value or body beyond its limit."""


class PeerNotTrusted(KonsulError):
    """A server to add presented a TLS certificate that does not verify for its address."""


class Timeout(KonsulError):
    """An operation did not complete in time (e.g. a joining node could not be reached)."""


class CrossSiteRequest(KonsulError):
    """A browser sent a write on behalf of a page of another site (``konsul.api.crosssite``)."""
