"""The wire codec: every message round-trips; garbage and wrong types raise DecodeError only."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    decode,
    decode_configuration,
    encode,
    encode_configuration,
)
from konsul.raft.types import Configuration, Entry, EntryKind, Member, SnapshotMeta

CONFIG = Configuration((Member("a", "a:1", True, "a:2"), Member("b", "b:1", False, "")))

SAMPLES: list[Message] = [
    PreVote("a", "b", 3, 10, 2),
    PreVoteResponse("b", "a", 3, True),
    RequestVote("a", "b", 3, 10, 2, transfer=True),
    RequestVote("a", "b", 3, 10, 2),
    VoteResponse("b", "a", 3, False),
    AppendEntries(
        "a", "b", 4, 10, 2,
        (
            Entry(11, 3, EntryKind.NOOP, b""),
            Entry(12, 4, EntryKind.COMMAND, b"\x00\xff" * 10),
            Entry(13, 4, EntryKind.CONFIG, encode_configuration(CONFIG)),
        ),
        9, 17,
    ),
    AppendEntries("a", "b", 4, 0, 0, (), 0, 0),
    AppendResponse("b", "a", 4, True, 13, 0, 0, 0, 17),
    AppendResponse("b", "a", 4, False, 0, 10, 7, 2, 0),
    InstallSnapshot("a", "b", 4, SnapshotMeta(100, 3, CONFIG), 4096, b"chunk", False),
    SnapshotResponse("b", "a", 4, 100, 4101, False),
    TimeoutNow("a", "b", 4),
    ReadIndexRequest("b", "a", 4, 99),
    ReadIndexResponse("a", "b", 4, 99, 120),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: Message) -> None:
    assert decode(encode(msg)) == msg


def test_entries_travel_without_their_indexes() -> None:
    # The indexes follow from prev_index: the wire carries [term, kind, data] per entry only.
    msg = SAMPLES[5]
    raw = msgpack.unpackb(encode(msg))
    assert raw[8] == [3, 1, b"", 4, 0, b"\x00\xff" * 10, 4, 2, encode_configuration(CONFIG)]


def test_configuration_round_trips() -> None:
    assert decode_configuration(encode_configuration(CONFIG)) == CONFIG
    assert decode_configuration(encode_configuration(Configuration())) == Configuration()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        msgpack.packb({"a": 1}),
        msgpack.packb([]),
        msgpack.packb([99, "a", "b", 1]),  # unknown tag
        msgpack.packb(["5", "a", "b", 1]),  # tag is a string
        msgpack.packb([1, "a", "b", 1, 2, 3]) + b"\x00",  # trailing bytes
        msgpack.packb([1, "a", "b", -1, 2, 3]),  # negative term
        msgpack.packb([1, "a", "b", True, 2, 3]),  # bool where an int belongs
        msgpack.packb([1, b"a", "b", 1, 2, 3]),  # bytes where a str belongs
        msgpack.packb([1, "a", "b", 1, 2]),  # too few fields
        msgpack.packb([1, "a", "b", 1, 2, 3, 4]),  # too many fields
        msgpack.packb([2, "a", "b", 1, 1]),  # int where a bool belongs
        msgpack.packb([5, "a", "b", 1, 0, 0, 0, 0, [1, 0]]),  # entries not in triples
        msgpack.packb([5, "a", "b", 1, 0, 0, 0, 0, [1, 7, b""]]),  # unknown entry kind
        msgpack.packb([5, "a", "b", 1, 0, 0, 0, 0, [1, 0, "text"]]),  # data not bytes
        msgpack.packb([5, "a", "b", 1, 0, 5, 0, 0, [4, 0, b""]]),  # entry term below prev_term
        msgpack.packb([5, "a", "b", 1, 0, 0, 0, 0, {"x": 1}]),
        msgpack.packb([5, "a", "b", 1, 0, 0, 0, 0, [2, 0, b""]]),  # entry term above the term
        msgpack.packb([7, "a", "b", 1, [1, 1], 0, b"", True]),  # bad snapshot meta
        msgpack.packb([7, "a", "b", 1, [1, 1, [["a", "x", 1, ""]]], 0, b"", True]),  # voter int
        msgpack.packb([7, "a", "b", 1, [1, 1, [["a", "x", True, ""]] * 2], 0, b"", True]),
        msgpack.packb([9, "a", "b", 1.5]),  # float term
        msgpack.packb([9, "a", "b", 2**64 - 1]) [:-1],  # truncated
        msgpack.packb([9, "a", "b", msgpack.ExtType(1, b"x")]),
        b"\x91" * 100_000,  # deeply nested arrays
    ],
)
def test_garbage_is_rejected_with_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(raw)


def test_bad_configuration_is_rejected() -> None:
    for raw in (b"\xc1", msgpack.packb([["a", "x", True]]), msgpack.packb({"a": 1})):
        with pytest.raises(DecodeError):
            decode_configuration(raw)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        msg = decode(data)
    except DecodeError:
        return
    assert encode(msg)  # whatever decodes is a well-formed message


_scalar = st.one_of(
    st.integers(min_value=-2, max_value=2**64 - 1), st.booleans(), st.text(max_size=3),
    st.binary(max_size=3), st.none(), st.floats(allow_nan=False),
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(range(1, 12)),
    st.lists(st.one_of(_scalar, st.lists(_scalar, max_size=7)), max_size=8),
)
def test_structured_garbage_decodes_or_raises_decode_error(tag: int, fields: list[object]) -> None:
    data = msgpack.packb([tag, "a", "b", 1, *fields])
    try:
        msg = decode(data)
    except DecodeError:
        return
    assert decode(encode(msg)) == msg


def test_mutating_any_byte_of_real_messages_never_raises_anything_else() -> None:
    for msg in SAMPLES:
        data = encode(msg)
        for i in range(len(data)):
            for b in (0x00, 0xC0, 0xC3, 0xFF, data[i] ^ 0x01):
                mutated = data[:i] + bytes([b]) + data[i + 1 :]
                with contextlib.suppress(DecodeError):
                    decode(mutated)


def test_encode_refuses_foreign_objects() -> None:
    with pytest.raises(TypeError):
        encode("not a message")  # type: ignore[arg-type]
