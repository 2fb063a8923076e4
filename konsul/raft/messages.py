"""Raft messages (one frozen dataclass per kind) and their msgpack wire codec.

Every message carries ``src``, ``dst`` (node ids) and ``term``. ``Message`` is the union of them.

Pre-vote: ``PreVote.term`` is the term the sender *would* campaign in (its term + 1); the sender
does not change its own term. A granted ``PreVoteResponse`` echoes that future term; a refusal
carries the voter's own term (so a stale pre-candidate learns the current term).

ReadIndex: every ``AppendEntries`` a leader sends carries ``read_ctx``, the leader's latest
read-round number; the follower echoes it in ``AppendResponse.read_ctx``. A read registered in
round ``n`` is confirmed once a majority has echoed a round ``>= n``.

Wire format (the transport's hot path): ``encode(msg)`` packs a flat msgpack array
``[tag, src, dst, term, field...]`` with no map keys. The entries of an ``AppendEntries`` are one
flat array ``[term, kind, data, term, kind, data, ...]``; their indexes follow from
``prev_index``. ``decode(data)`` validates every field strictly and raises ``DecodeError`` (and
nothing else) for any malformed input.

Configurations inside CONFIG entries are ``msgpack(Configuration.to_wire())``:
``encode_configuration`` / ``decode_configuration``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from konsul.raft.types import Configuration, Entry, EntryKind, Member, SnapshotMeta

__all__ = [
    "AppendEntries",
    "AppendResponse",
    "DecodeError",
    "InstallSnapshot",
    "Message",
    "PreVote",
    "PreVoteResponse",
    "ReadIndexRequest",
    "ReadIndexResponse",
    "RequestVote",
    "SnapshotResponse",
    "TimeoutNow",
    "VoteResponse",
    "decode",
    "decode_configuration",
    "encode",
    "encode_configuration",
    "make_entry",
]


class DecodeError(ValueError):
    """Raised by ``decode`` / ``decode_configuration`` for any malformed input."""


@dataclass(frozen=True, slots=True)
class PreVote:
    """Would you vote for me in ``term`` (= my term + 1)? Changes nobody's term."""

    src: str
    dst: str
    term: int
    last_log_index: int
    last_log_term: int


@dataclass(frozen=True, slots=True)
class PreVoteResponse:
    src: str
    dst: str
    term: int  # the pre-vote's term when granted, the voter's own term when refused
    granted: bool


@dataclass(frozen=True, slots=True)
class RequestVote:
    src: str
    dst: str
    term: int
    last_log_index: int
    last_log_term: int
    transfer: bool = False  # sent after TimeoutNow: voters ignore their leader lease


@dataclass(frozen=True, slots=True)
class VoteResponse:
    src: str
    dst: str
    term: int
    granted: bool


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Entries ``prev_index + 1 ...`` (may be empty: a heartbeat / probe)."""

    src: str
    dst: str
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int
    read_ctx: int = 0


@dataclass(frozen=True, slots=True)
class AppendResponse:
    """Success: the follower's log matches the leader's through ``match_index``.

    Refusal: ``reject_index`` is the refused ``prev_index``; the hint (``conflict_index``,
    ``conflict_term``) is the follower's last entry at or below ``reject_index`` whose term is
    ``<=`` the refused ``prev_term`` (the leader resumes probing from there).
    """

    src: str
    dst: str
    term: int
    success: bool
    match_index: int = 0
    reject_index: int = 0
    conflict_index: int = 0
    conflict_term: int = 0
    read_ctx: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """One chunk ``data`` at byte ``offset`` of the snapshot ``meta``; ``done`` on the last."""

    src: str
    dst: str
    term: int
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@dataclass(frozen=True, slots=True)
class SnapshotResponse:
    """``done``: the snapshot through ``index`` is installed (or was not needed).

    Otherwise the follower wants the chunk at ``next_offset`` of snapshot ``index``.
    """

    src: str
    dst: str
    term: int
    index: int
    next_offset: int
    done: bool


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: start an election now, without pre-vote."""

    src: str
    dst: str
    term: int


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    """A follower asks the leader for a read index on behalf of its read ``ctx``."""

    src: str
    dst: str
    term: int
    ctx: int


@dataclass(frozen=True, slots=True)
class ReadIndexResponse:
    """``index`` 0 means the leader could not serve the read (the follower drops it)."""

    src: str
    dst: str
    term: int
    ctx: int
    index: int


Message = (
    PreVote
    | PreVoteResponse
    | RequestVote
    | VoteResponse
    | AppendEntries
    | AppendResponse
    | InstallSnapshot
    | SnapshotResponse
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
)

# --------------------------------------------------------------------------------------------
# codec

_PRE_VOTE = 1
_PRE_VOTE_RESPONSE = 2
_REQUEST_VOTE = 3
_VOTE_RESPONSE = 4
_APPEND_ENTRIES = 5
_APPEND_RESPONSE = 6
_INSTALL_SNAPSHOT = 7
_SNAPSHOT_RESPONSE = 8
_TIMEOUT_NOW = 9
_READ_INDEX_REQUEST = 10
_READ_INDEX_RESPONSE = 11

_KINDS = tuple(EntryKind)  # EntryKind values are 0..n-1: index instead of an enum lookup

# Entry is a frozen dataclass: its __init__ goes through object.__setattr__ once per field, which
# costs about four times as much as setting the slots directly. Decoding builds one Entry per
# replicated entry on every follower, so it takes the direct route.
_new_object = object.__new__
_set_index = getattr(Entry, "index").__set__  # noqa: B009 (mypy sees the field, not the slot)
_set_term = getattr(Entry, "term").__set__  # noqa: B009
_set_kind = getattr(Entry, "kind").__set__  # noqa: B009
_set_data = getattr(Entry, "data").__set__  # noqa: B009


def make_entry(index: int, term: int, kind: EntryKind, data: bytes) -> Entry:
    """``Entry(index, term, kind, data)``, built faster (same object, same equality)."""
    e: Entry = _new_object(Entry)
    _set_index(e, index)
    _set_term(e, term)
    _set_kind(e, kind)
    _set_data(e, data)
    return e


def encode_configuration(config: Configuration) -> bytes:
    return msgpack.packb(config.to_wire())  # type: ignore[no-any-return]


def decode_configuration(data: bytes) -> Configuration:
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises many types for garbage: normalise them
        raise DecodeError(f"bad configuration: {exc}") from None
    return _config_from_wire(raw)


def _config_from_wire(raw: object) -> Configuration:
    if type(raw) is not list:
        raise DecodeError("configuration: not an array")
    members = []
    seen = set()
    for m in raw:
        if type(m) is not list or len(m) != 4:
            raise DecodeError("configuration: bad member")
        mid, address, voter, http = m
        if type(mid) is not str or not mid or type(address) is not str:
            raise DecodeError("configuration: bad member id/address")
        if type(voter) is not bool or type(http) is not str:
            raise DecodeError("configuration: bad member voter/http_address")
        if mid in seen:
            raise DecodeError("configuration: duplicate member")
        seen.add(mid)
        members.append(Member(mid, address, voter, http))
    return Configuration(tuple(members))


def encode(msg: Message) -> bytes:
    """Pack ``msg`` as a flat msgpack array (no per-field keys)."""
    t = type(msg)
    if t is AppendEntries:
        assert isinstance(msg, AppendEntries)
        flat: list[object] = []
        for e in msg.entries:
            flat += (e.term, int(e.kind), e.data)
        body: list[object] = [
            _APPEND_ENTRIES, msg.src, msg.dst, msg.term,
            msg.prev_index, msg.prev_term, msg.commit, msg.read_ctx, flat,
        ]
    elif t is AppendResponse:
        assert isinstance(msg, AppendResponse)
        body = [
            _APPEND_RESPONSE, msg.src, msg.dst, msg.term, msg.success, msg.match_index,
            msg.reject_index, msg.conflict_index, msg.conflict_term, msg.read_ctx,
        ]
    elif t is PreVote:
        assert isinstance(msg, PreVote)
        body = [_PRE_VOTE, msg.src, msg.dst, msg.term, msg.last_log_index, msg.last_log_term]
    elif t is PreVoteResponse:
        assert isinstance(msg, PreVoteResponse)
        body = [_PRE_VOTE_RESPONSE, msg.src, msg.dst, msg.term, msg.granted]
    elif t is RequestVote:
        assert isinstance(msg, RequestVote)
        body = [
            _REQUEST_VOTE, msg.src, msg.dst, msg.term, msg.last_log_index, msg.last_log_term,
            msg.transfer,
        ]
    elif t is VoteResponse:
        assert isinstance(msg, VoteResponse)
        body = [_VOTE_RESPONSE, msg.src, msg.dst, msg.term, msg.granted]
    elif t is InstallSnapshot:
        assert isinstance(msg, InstallSnapshot)
        meta = msg.meta
        body = [
            _INSTALL_SNAPSHOT, msg.src, msg.dst, msg.term,
            [meta.index, meta.term, meta.config.to_wire()], msg.offset, msg.data, msg.done,
        ]
    elif t is SnapshotResponse:
        assert isinstance(msg, SnapshotResponse)
        body = [
            _SNAPSHOT_RESPONSE, msg.src, msg.dst, msg.term, msg.index, msg.next_offset, msg.done,
        ]
    elif t is TimeoutNow:
        body = [_TIMEOUT_NOW, msg.src, msg.dst, msg.term]
    elif t is ReadIndexRequest:
        assert isinstance(msg, ReadIndexRequest)
        body = [_READ_INDEX_REQUEST, msg.src, msg.dst, msg.term, msg.ctx]
    elif t is ReadIndexResponse:
        assert isinstance(msg, ReadIndexResponse)
        body = [_READ_INDEX_RESPONSE, msg.src, msg.dst, msg.term, msg.ctx, msg.index]
    else:
        raise TypeError(f"not a Raft message: {t.__name__}")
    return msgpack.packb(body)  # type: ignore[no-any-return]


def decode(data: bytes) -> Message:
    """Unpack and validate one message; any malformed input raises ``DecodeError``."""
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # ExtraData, FormatError, StackError, ValueError, TypeError...
        raise DecodeError(f"not msgpack: {type(exc).__name__}") from None
    if type(raw) is not list or len(raw) < 4:
        raise DecodeError("not a message array")
    tag, src, dst, term = raw[0], raw[1], raw[2], raw[3]
    if type(src) is not str or type(dst) is not str:
        raise DecodeError("bad src/dst")
    if type(term) is not int or term < 0:
        raise DecodeError("bad term")
    parser = _PARSERS.get(tag) if type(tag) is int else None
    if parser is None:
        raise DecodeError(f"unknown message tag {tag!r}")
    try:
        return parser(src, dst, term, raw)
    except DecodeError:
        raise
    except Exception as exc:  # e.g. wrong arity while unpacking: still just a bad message
        raise DecodeError(f"bad message: {type(exc).__name__}") from None


def _nat(v: object) -> int:
    if type(v) is not int or v < 0:
        raise DecodeError("expected a non-negative integer")
    return v


def _flag(v: object) -> bool:
    if type(v) is not bool:
        raise DecodeError("expected a boolean")
    return v


def _arity(raw: list[Any], n: int) -> None:
    if len(raw) != n:
        raise DecodeError("wrong number of fields")


def _p_pre_vote(src: str, dst: str, term: int, raw: list[Any]) -> Message:
    _arity(raw, 6)
    return PreVote(src, dst, term, _nat(raw[4]), _nat(raw[5]))


def _p_pre_vote_response(src: str, dst: str, term: int, raw: list[Any]) -> Message:
    _arity(raw, 5)
    return PreVoteResponse(src, dst, term, _flag(raw[4]))


def _p_request_vote(src: str, dst: str, term: int, raw: list[Any]) -> Message:
    _arity(raw, 7)
    return RequestVote(src, dst, term, _nat(raw[4]), _nat(raw[5]), _flag(raw[6]))


def _p_vote_response(src: str, dst: str, term: int, raw: list[Any]) -> Message:
    _arity(raw, 5)
    return VoteResponse(src, dst, term, _flag(raw[4]))


def _p_append_entries(src: str, dst: str, term: int, raw: list[Any]) -> Message:
    _arity(raw, 9)
    prev_index = _nat(raw[4])
    prev_term = _nat(raw[5])
    commit = _nat(raw[6])
    read_ctx = _nat(raw[7])
    flat = raw[8]
    if type(flat) is not list or len(flat) % 3:
        raise DecodeError("bad entries")
    entries: list[Entry] = []
    append = entries.append
    index = prev_index
    kinds = _KINDS
    nkinds = len(kinds)
    last_term = prev_term
    new, set_index, set_term, set_kind, set_data = (
        _new_object, _set_index, _set_term, _set_kind, _set_data
    )
    it = iter(flat)
    for t, k, d in zip(it, it, it, strict=True):
        if type(t) is not int or t < last_term or type(k) is not int or not 0 <= k < nkinds:
            raise DecodeError("bad entry term/kind")
        if type(d) is not bytes:
            raise DecodeError("bad entry data")
        index += 1
        last_term = t
        e = new(Entry)
        set_index(e, index)
        set_term(e, t)
        set_kind(e, kinds[k])
        set_data(e, d)
        append(e)
    if last_term > term:
        raise DecodeError("entry from a future term")  # a leader only has entries up to its term
    return AppendEntries(src, dst, term, prev_index, prev_term, tuple(entries), commit, read_ctx)


def _p_append_response(src: str, dst: str, term: int, raw: list[Any]) -> Message:
    _arity(raw, 10)
    return AppendResponse(
        src, dst, term, _flag(raw[4]), _nat(raw[5]), _nat(raw[6]), _nat(raw[7]), _nat(raw[8]),
        _nat(raw[9]),
    )


def _p_install_snapshot(src: str, dst: str, term: int, raw: list[Any]) -> Message:
    _arity(raw, 8)
    m = raw[4]
    if type(m) is not list or len(m) != 3:
        raise DecodeError("bad snapshot meta")
    meta = SnapshotMeta(_nat(m[0]), _nat(m[1]), _config_from_wire(m[2]))
    data = raw[6]
    if type(data) is not bytes:
        raise DecodeError("bad snapshot data")
    return InstallSnapshot(src, dst, term, meta, _nat(raw[5]), data, _flag(raw[7]))


def _p_snapshot_response(src: str, dst: str, term: int, raw: list[Any]) -> Message:
    _arity(raw, 7)
    return SnapshotResponse(src, dst, term, _nat(raw[4]), _nat(raw[5]), _flag(raw[6]))


def _p_timeout_now(src: str, dst: str, term: int, raw: list[Any]) -> Message:
    _arity(raw, 4)
    return TimeoutNow(src, dst, term)


def _p_read_index_request(src: str, dst: str, term: int, raw: list[Any]) -> Message:
    _arity(raw, 5)
    return ReadIndexRequest(src, dst, term, _nat(raw[4]))


def _p_read_index_response(src: str, dst: str, term: int, raw: list[Any]) -> Message:
    _arity(raw, 6)
    return ReadIndexResponse(src, dst, term, _nat(raw[4]), _nat(raw[5]))


_PARSERS: dict[int, Callable[[str, str, int, list[Any]], Message]] = {
    _PRE_VOTE: _p_pre_vote,
    _PRE_VOTE_RESPONSE: _p_pre_vote_response,
    _REQUEST_VOTE: _p_request_vote,
    _VOTE_RESPONSE: _p_vote_response,
    _APPEND_ENTRIES: _p_append_entries,
    _APPEND_RESPONSE: _p_append_response,
    _INSTALL_SNAPSHOT: _p_install_snapshot,
    _SNAPSHOT_RESPONSE: _p_snapshot_response,
    _TIMEOUT_NOW: _p_timeout_now,
    _READ_INDEX_REQUEST: _p_read_index_request,
    _READ_INDEX_RESPONSE: _p_read_index_response,
}
