"""Deliberately broken Raft cores, to prove the simulator's checks are not vacuous.

Each overrides one of the core's safety hooks (see the "Safety hooks" section of
``konsul/raft/core.py``); ``tests/raft/test_sim_broken.py`` asserts the simulator catches each
within a bounded number of seeds. The runtime-level bug (a vote forgotten across a restart) is
``SimConfig.forget_vote``, since it lives outside the core.
"""

from __future__ import annotations

from konsul.raft.core import NotLeaderError, RaftCore, Role


class Figure8Core(RaftCore):
    """Commits an entry of an earlier term by counting replicas (Raft paper, Figure 8)."""

    def _may_commit(self, index: int) -> bool:
        return True


class BlindVoterCore(RaftCore):
    """Grants (pre-)votes without the "candidate's log is at least as up to date" check."""

    def _log_is_up_to_date(self, last_index: int, last_term: int) -> bool:
        return True


class ApplyBeforePersistCore(RaftCore):
    """Counts its own unsynced entries towards a majority and applies them before they are
    durable: a leader that crashes before its fsync completes has acknowledged a write that
    only a minority holds."""

    def _self_match_index(self) -> int:
        return self.last_index

    def _applicable_index(self) -> int:
        return self.commit_index


class MinorityQuorumCore(RaftCore):
    """Takes the highest index stored on any ``len(voters) // 2`` voters — one short of a
    majority — as committed."""

    def _quorum_index(self) -> int:
        voters = self.configuration.voters()
        matches = sorted(
            (self._self_match_index() if v == self.node_id else self.match_index(v)
             for v in voters),
            reverse=True,
        )
        return matches[max(0, len(voters) // 2 - 1)]


class ConcurrentConfigCore(RaftCore):
    """Accepts a membership change while another is still uncommitted (only leadership is
    checked). Overrides a private method, not a documented hook: if the core renames it, the
    broken-variant test fails (the variant is no longer caught), which is the signal."""

    def _check_config_change(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.leader_id)


class NeverPromoteCore(RaftCore):
    """Never promotes a caught-up non-voter: safe, but new members never get a vote, so the
    cluster never reaches its size (a liveness bug; private method, as above)."""

    def _maybe_promote(self) -> None:
        return


BROKEN_CORES: dict[str, type[RaftCore]] = {
    "figure8": Figure8Core,
    "blind-voter": BlindVoterCore,
    "apply-before-persist": ApplyBeforePersistCore,
    "minority-quorum": MinorityQuorumCore,
    "concurrent-config": ConcurrentConfigCore,
    "never-promote": NeverPromoteCore,
}
