"""Short text forms of messages, entries and configurations, for the core's trace.

One line per message, sender and receiver first, as etcd-io/raft prints them in its test
transcripts: ``a->b AppendEntries term=2 prev=1@1 commit=1 [2@2 noop]``. Entries are
``index@term`` followed by what they carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from konsul.raft.messages import (
    AppendEntries,
    AppendResponse,
    DecodeError,
    InstallSnapshot,
    Message,
    PreVote,
    PreVoteResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
    decode_configuration,
)
from konsul.raft.types import Configuration, Entry, EntryKind

if TYPE_CHECKING:
    from konsul.raft.core import Ready

__all__ = [
    "describe_config",
    "describe_entries",
    "describe_entry",
    "describe_message",
    "describe_ready",
]


def describe_config(config: Configuration) -> str:
    """Members in order, non-voters marked with ``~``: ``a b ~c``."""
    return " ".join(m.id if m.voter else f"~{m.id}" for m in config.members) or "(none)"


def describe_entry(e: Entry) -> str:
    if e.kind is EntryKind.NOOP:
        return f"{e.index}@{e.term} noop"
    if e.kind is EntryKind.CONFIG:
        try:
            return f"{e.index}@{e.term} config({describe_config(decode_configuration(e.data))})"
        except DecodeError:
            return f"{e.index}@{e.term} config(?)"
    return f"{e.index}@{e.term} {_data(e.data)}"


def describe_entries(entries: Iterable[Entry]) -> str:
    return "[" + ", ".join(describe_entry(e) for e in entries) + "]"


def _data(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    if text.isprintable() and len(text) <= 40:
        return repr(text)
    return f"<{len(data)} bytes>"


def describe_ready(rd: Ready) -> list[str]:
    """One line per part of a Ready, in the order the runtime handles them."""
    lines = []
    if rd.hard_state is not None:
        lines.append(f"HardState term={rd.hard_state.term} vote={rd.hard_state.vote}")
    if rd.snapshot is not None:
        meta = rd.snapshot.meta
        lines.append(f"Snapshot {meta.index}@{meta.term} config({describe_config(meta.config)})")
    if rd.truncate_from is not None:
        lines.append(f"Truncate from {rd.truncate_from}")
    if rd.entries:
        lines.append(f"Entries {describe_entries(rd.entries)}")
    lines += [describe_message(m) for m in rd.messages]
    if rd.committed:
        lines.append(f"Committed {describe_entries(rd.committed)}")
    lines += [f"ReadState ctx={r.ctx} index={r.index}" for r in rd.read_states]
    if rd.dropped_reads:
        lines.append(f"DroppedReads {' '.join(map(str, rd.dropped_reads))}")
    return lines


def describe_message(m: Message) -> str:
    head = f"{m.src}->{m.dst} {type(m).__name__} term={m.term}"
    return f"{head} {_fields(m)}".rstrip()


def _fields(m: Message) -> str:
    if isinstance(m, AppendEntries):
        text = f"prev={m.prev_index}@{m.prev_term} commit={m.commit}"
        if m.read_ctx:
            text += f" read={m.read_ctx}"
        return f"{text} {describe_entries(m.entries)}" if m.entries else text
    if isinstance(m, AppendResponse):
        read = f" read={m.read_ctx}" if m.read_ctx else ""
        if m.success:
            return f"ok match={m.match_index}{read}"
        return f"refused prev={m.reject_index} hint={m.conflict_index}@{m.conflict_term}{read}"
    if isinstance(m, PreVote | RequestVote):
        transfer = " transfer" if isinstance(m, RequestVote) and m.transfer else ""
        return f"last={m.last_log_index}@{m.last_log_term}{transfer}"
    if isinstance(m, PreVoteResponse | VoteResponse):
        return "granted" if m.granted else "refused"
    if isinstance(m, InstallSnapshot):
        done = " done" if m.done else ""
        return (
            f"snapshot={m.meta.index}@{m.meta.term} bytes={m.offset}+{len(m.data)}{done}"
        )
    if isinstance(m, SnapshotResponse):
        return f"snapshot={m.index} " + ("done" if m.done else f"next={m.next_offset}")
    if isinstance(m, ReadIndexRequest):
        return f"ctx={m.ctx}"
    if isinstance(m, ReadIndexResponse):
        return f"ctx={m.ctx} " + (f"index={m.index}" if m.index else "refused")
    assert isinstance(m, TimeoutNow)
    return ""
