"""The wiped-disk rule: a node that starts empty votes again only once its promotion reaches it.

The danger
----------
A member can come back with an empty disk (a lost volume, a replaced machine). Its old disk
may have acknowledged entries, and a commit may have counted on those acknowledgements. If the
empty node voted (or campaigned), it could help elect a leader that lacks such an entry. No
message tells it how far its old disk went: a leader's commit index lags, a snapshot index
says less, the first leader to call may be a stale one, and the node itself may have led.

The rule
--------
A node that starts empty is *catching up*: it replicates like any follower, but it neither
votes nor campaigns (and grants no pre-vote) until its log holds its own *promotion*: a
configuration entry, appended after the node started, that makes it a voter.

The argument
------------
1. The operator removes and re-adds a member whose volume was lost; a brand-new server is
   simply added. Either way the node joins as a non-voter, and the leader promotes it with a
   configuration entry once it has caught up.
2. A configuration is in force as soon as it is appended. From the removal entry on, no leader
   counts the member's acknowledgements, so every entry whose commitment may have counted on
   the lost disk precedes the removal in the log. The promotion follows the removal (one
   configuration change at a time).
3. The promotion entry follows, in the leader's log, every entry committed before it (leader
   completeness), and log matching puts all of them in any log that holds the promotion.
4. So a node that holds its promotion, appended after it started, holds every entry whose
   commitment may have counted on its lost disk (2, 3): it may vote again.
5. An entry cannot tell when it was appended. An old promotion (the node joined, was promoted,
   and lost its disk soon after) must not count. Two checks keep it out:

   a. The entry must turn this node from a non-voter into a voter in its own log, replayed in
      order. Being absent does not count: servers join as non-voters (1), so the only entry
      that makes a non-member a voter is the cluster's bootstrap configuration, which an empty
      node replays first. (Seed 613 of the 3-node simulation: a wiped bootstrap node took
      index 1 for its promotion and, alone a voter in that old configuration, elected itself.)
   b. Its index must lie beyond every log index that a leader of its term or a later one
      showed this node before: the ``prev_index`` of every append (``note_shown``),
      heartbeats, probes and appends with entries alike. A leader's appends start at its last
      index when it took office (its next index for every follower), so a leader that
      already held the entry showed an index past it in the first append that reached this
      node, or in the one this node refused before the leader went back; a leader of an
      older term cannot hold it, and what it shows is another branch. An append that
      overtakes the one carrying a real promotion makes it not count: safe, the node waits
      for another re-add (over one TCP connection appends arrive in order).
6. A snapshot may hold the promotion, compacted before it reached the node. It counts when
   the node's latest configuration lists it as a non-voter at an index no leader had shown
   beyond, and the snapshot's configuration makes it a voter: the promotion follows that
   non-voter entry, so it too lies beyond every index shown (5b).
7. The state survives restarts. A node catching up writes no hard state (it holds no vote),
   so its durable term stays 0, which no other node with a log has: every other node has
   written the term of its entries, or bootstrapped in term 1. On promotion it writes its
   term with the leader that promoted it as its vote. After a restart in that state the
   recovered log counts as shown in every term (a promotion in it is not trusted, 5b).
8. A follower records the leader it follows as its vote for that term (one hard-state write
   per term), so a member that restarts empty within that term cannot vote a second time.
9. A leader whose follower refuses entries it had acknowledged knows the follower lost its
   disk: it forgets the follower's match (counting it lower is always safe) and probes.

Weak spots
----------
* The argument rests on the operator removing and re-adding a member whose volume was lost.
  A wiped member the configuration still lists as a voter is never promoted, so it never
  votes again: it reports ``catching_up`` and the operator re-adds it. The operator does the
  same for a voter whose promotion reached it only inside a snapshot that fails 6, or before
  a restart (7).
* The node forgets the term it had reached, so a stale leader could get its
  acknowledgements, as it could from any node whose disk was lost.
* A promotion that a newer leader shows (in any append) before the entry itself arrives does
  not count either (5b): the node waits for another re-add.
"""

from __future__ import annotations

from konsul.raft.types import Configuration, Member

__all__ = ["CatchUp"]

_ANY_TERM = 1 << 62  # shown by a leader of every term


class CatchUp:
    """Whether this node is still catching up (``active``), and what leaders showed it."""

    __slots__ = ("_seen", "active")

    def __init__(self, durable_term: int, recovered_last_index: int) -> None:
        self.active = durable_term == 0  # 7: started empty and not promoted since
        # term -> the highest log index a leader of that term showed us while we catch up;
        # what we recovered counts as shown in every term (7)
        self._seen: dict[int, int] = {_ANY_TERM: recovered_last_index}

    def note_shown(self, term: int, index: int) -> None:
        """A leader of ``term`` showed us its log reaching ``index`` (an append's prev_index)."""
        if index > self._seen.get(term, 0):
            self._seen[term] = index

    def shown(self, index: int, term: int) -> bool:
        """A leader of ``term`` or later showed us a log reaching ``index``."""
        return any(shown >= index for t, shown in self._seen.items() if t >= term)

    def promotes(
        self, node_id: str, before: Member | None, index: int, term: int, config: Configuration
    ) -> bool:
        """Whether the configuration entry ``index``@``term`` is our promotion (5a, 5b), given
        what the configuration before it in our log made us (``before``)."""
        if before is None or before.voter or self.shown(index, term):
            return False
        member = config.get(node_id)
        return member is not None and member.voter

    def snapshot_promotes(
        self,
        node_id: str,
        latest: Configuration,
        latest_index: int,
        latest_term: int,
        snapshot_config: Configuration,
    ) -> bool:
        """Whether a snapshot with ``snapshot_config`` holds our promotion (6), given our
        latest configuration before it (appended at ``latest_index``@``latest_term``)."""
        mine = latest.get(node_id)
        new = snapshot_config.get(node_id)
        return (
            not self.shown(latest_index + 1, latest_term)
            and mine is not None
            and not mine.voter
            and new is not None
            and new.voter
        )
