"""An online restore under way: a snapshot arriving through the log, a chunk per entry.

Why through the log, in chunks: a restore must reach every member in the same place of the
history, and survive the leader that started it. The log gives both (a member replays what it
missed, a new leader holds every committed chunk), and entries of at most
``konsul.backup.restore.CHUNK_BYTES`` keep within the replication byte caps that a single
multi-gigabyte entry would break.

``restore_begin`` at index ``b`` opens one (replacing any other still open), each
``restore_chunk`` feeds the next bytes to a ``Loader`` that builds the new tables as they come,
and ``restore_commit`` swaps them in at once, if every byte arrived and the SHA-256 matches;
``restore_abort``, a bad chunk or a failed commit drop it and nothing changed. Between begin and
its end every other write is refused (``Reason.BUSY``), so:

* every row the restore brings gets index ``b``: above every index served before the restore,
  and no index in between was ever shown for data, so blocking readers wake and compare
  correctly, and CAS on an index from before the restore fails as it should;
* no write is acknowledged and then silently replaced by the restore: a write is ordered
  before the restore (applied to the old state, which the restore then replaces) or is
  refused with "retry", and every write after the commit applies on top of the restored state.

What this costs: while it is open, its tables live in memory beside the current ones, and the
runtime takes no Raft snapshot (a snapshot holds the tables, not an open restore; since none is
taken between a begin and its end, replaying the log from any snapshot rebuilds the open
restore exactly). A new leader aborts a restore that no one drives any more
(``konsul.backup.restore``).
"""

from __future__ import annotations

import hashlib

from konsul.store.schema import RestoreBegin, RestoreChunk
from konsul.store.snapshot import Loader, SnapshotError, Tables


class PendingRestore:
    """One open restore: what arrived so far and the tables being built from it."""

    __slots__ = (
        "_hash", "_loader", "begin_index", "id", "received", "sha256", "size", "source_index",
        "source_term",
    )

    def __init__(self, begin: RestoreBegin, index: int) -> None:
        self.id = begin.id
        self.size = begin.size
        self.sha256 = begin.sha256
        self.source_index = begin.index
        self.source_term = begin.term
        self.begin_index = index
        self.received = 0
        self._hash = hashlib.sha256()
        self._loader = Loader(reindex=index, strict=True)

    def take(self, chunk: RestoreChunk) -> str | None:
        """Feed the chunk; a reason to drop the restore if it does not fit or does not parse."""
        if chunk.offset != self.received:
            return f"chunk at byte {chunk.offset}, expected {self.received}"
        if self.received + len(chunk.data) > self.size:
            return f"more than the announced {self.size} bytes"
        self._hash.update(chunk.data)
        try:
            self._loader.feed(chunk.data)
        except SnapshotError as exc:
            return str(exc)
        self.received += len(chunk.data)
        return None

    def finish(self) -> Tables | str:
        """The restored tables, or why the restore cannot commit."""
        if self.received != self.size:
            return f"only {self.received} of {self.size} bytes arrived"
        if self._hash.digest() != self.sha256:
            return "the SHA-256 of what arrived does not match the announced one"
        try:
            return self._loader.finish()
        except SnapshotError as exc:
            return str(exc)
