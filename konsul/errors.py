"""Errors the node raises to its HTTP layer; each maps to one documented status code."""

from __future__ import annotations

from konsul.raft.types import Member


class KonsulError(Exception):
    """Base class: ``code`` is the short machine code of the JSON error body."""

    code = "error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotLeader(KonsulError):
    """A write reached a follower that knows the leader (307 with its address)."""

    code = "not leader"
    status = 307

    def __init__(self, leader: Member) -> None:
        super().__init__("This node is not the leader. Redirect to leader for write operations.")
        self.leader = leader


class NoLeader(KonsulError):
    """No leader is known right now (503 with Retry-After)."""

    code = "no leader"
    status = 503

    def __init__(self, message: str = "No leader is known; retry shortly.") -> None:
        super().__init__(message)


class ClusteringDisabled(KonsulError):
    code = "clustering not enabled"
    status = 503

    def __init__(
        self, message: str = "Clustering is not enabled on this node (KONSUL_RAFT_ENABLED=false)."
    ) -> None:
        super().__init__(message)


class Conflict(KonsulError):
    code = "conflict"
    status = 409


class PermissionDenied(KonsulError):
    """The request's token (or the anonymous token) may not do this, or is unknown."""

    code = "permission denied"
    status = 403


class NotFound(KonsulError):
    code = "not found"
    status = 404


class BadRequest(KonsulError):
    code = "bad request"
    status = 400


class TooLarge(KonsulError):
    code = "too large"
    status = 413


class PeerNotTrusted(KonsulError):
    """A server to add presented a TLS certificate that does not verify for its address."""

    code = "peer not trusted"
    status = 502


class Timeout(KonsulError):
    code = "timeout"
    status = 504


class Unavailable(KonsulError):
    """The write's outcome is unknown (leadership lost while in flight) or the node is stopping."""

    code = "unavailable"
    status = 503


class CrossSiteRequest(KonsulError):
    """A browser sent a write on behalf of a page of another site (``konsul.api.crosssite``)."""

    code = "cross-site request"
    status = 403
