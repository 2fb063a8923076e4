"""Random append/truncate/compact/reset/sync/reopen sequences agree with a plain list model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from konsul.raft.types import Entry, EntryKind
from konsul.storage.wal import WriteAheadLog


class WalModel(RuleBasedStateMachine):
    """The model: the entries held (``model``) and where the log starts (``first``)."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="wal-model-"))
        self.segment_bytes = 256
        self.wal = WriteAheadLog.open(self.directory, segment_bytes=self.segment_bytes)
        self.model: list[Entry] = []
        self.first = 1
        self.term = 1

    @initialize(segment_bytes=st.sampled_from([64, 200, 700, 64 << 20]))
    def choose_segment_size(self, segment_bytes: int) -> None:
        self.segment_bytes = segment_bytes
        self.reopen()

    @property
    def last(self) -> int:
        return self.first + len(self.model) - 1

    @rule(
        count=st.integers(1, 12),
        new_term=st.booleans(),
        sizes=st.lists(st.integers(0, 90), min_size=1, max_size=4),
        kind=st.sampled_from(list(EntryKind)),
    )
    def append(self, count: int, new_term: bool, sizes: list[int], kind: EntryKind) -> None:
        self.term += new_term
        batch = [
            Entry(i, self.term, kind, bytes([i % 251]) * sizes[i % len(sizes)])
            for i in range(self.last + 1, self.last + 1 + count)
        ]
        self.wal.append(batch)
        self.model.extend(batch)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def truncate_from(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.first, self.last + 2), label="truncate_from")
        self.wal.truncate_from(index)
        del self.model[index - self.first :]

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        up_to = data.draw(st.integers(self.first - 1, self.last + 2), label="compact")
        self.wal.compact(up_to)
        new_first = self.wal.first_index
        # Whole segments only, never past up_to + 1, never the active segment.
        assert self.first <= new_first <= max(self.first, up_to + 1)
        assert new_first <= self.last + 1
        del self.model[: new_first - self.first]
        self.first = new_first
        segments = sorted(self.directory.glob("*.wal"))
        if len(segments) > 1:  # the first survivor holds an entry above up_to: nothing left over
            assert int(segments[1].stem) - 1 > up_to

    @rule(ahead=st.integers(0, 50))
    def reset(self, ahead: int) -> None:
        index = self.last + ahead
        self.wal.reset(index, self.term)
        self.model = []
        self.first = index + 1

    @rule()
    def sync(self) -> None:
        self.wal.sync()

    @rule()
    def reopen(self) -> None:
        self.wal.close()
        self.wal = WriteAheadLog.open(self.directory, segment_bytes=self.segment_bytes)
        assert self.wal.recovery.clean, self.wal.recovery
        assert self.wal.recovery.records_kept == len(self.model)

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.wal.first_index == self.first
        assert self.wal.last_index == self.last
        assert self.wal.entries() == self.model

    def teardown(self) -> None:
        self.wal.close()
        shutil.rmtree(self.directory, ignore_errors=True)


WalModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_wal_agrees_with_a_list_model = WalModel.TestCase
