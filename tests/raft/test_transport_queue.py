"""A peer's send queue is bounded in bytes as well as in frames: a member that reads slowly or
not at all costs the sender at most ``MAX_QUEUED_BYTES`` (issue #16), and one that is not
connected (down, restarting) at most ``MAX_UNCONNECTED_BYTES``; the oldest frames go first (Raft
sends again what a peer did not acknowledge), and the newest frame is always kept. A connection
that breaks takes its backlog with it."""

from __future__ import annotations

from konsul.raft.transport import (
    MAX_QUEUED_BYTES,
    MAX_QUEUED_FRAMES,
    MAX_UNCONNECTED_BYTES,
    _Peer,
)

MIB = 1 << 20


def frames(sizes_mib: list[int], tag: int = 0) -> list[bytes]:
    return [bytes([tag + i]) * (size * MIB) for i, size in enumerate(sizes_mib)]


def connected_peer() -> _Peer:
    peer = _Peer("node2", "127.0.0.1:7000")
    peer.connected = True  # (as the write loop sets it once its dial succeeds)
    return peer


def test_a_backlog_is_capped_in_bytes_oldest_frames_first() -> None:
    peer = connected_peer()
    sent = frames([10] * 10)
    peer.push(sent)
    assert peer.queued_bytes <= MAX_QUEUED_BYTES == 64 * MIB
    assert list(peer.queue) == sent[4:] and peer.dropped == 4  # six of 10 MiB fit in 64
    assert peer.take() == sent[4:] and peer.queued_bytes == 0 and not peer.queue


def test_a_frame_larger_than_the_cap_replaces_the_whole_backlog() -> None:
    peer = connected_peer()
    peer.push(frames([1, 1]))
    big = frames([65], tag=9)
    peer.push(big)
    assert list(peer.queue) == big and peer.dropped == 2


def test_small_frames_are_still_capped_in_number() -> None:
    peer = connected_peer()
    peer.push([b"x"] * (MAX_QUEUED_FRAMES + 5))
    assert len(peer.queue) == MAX_QUEUED_FRAMES and peer.dropped == 5
    assert peer.queued_bytes == MAX_QUEUED_FRAMES


def test_a_peer_not_connected_is_queued_only_the_newest_few_mib() -> None:
    # (A leader's probes of a follower that is down, 1 MiB once a heartbeat, are no longer
    # queued at all: TcpTransport.send drops an AppendEntries while a peer is not connected.
    # What else waits for the peer, snapshot chunks of 1 MiB, is capped all the same.)
    peer = _Peer("node2", "127.0.0.1:7000")
    probes = frames([1] * 20)
    for probe in probes:
        peer.push([probe])
    assert peer.queued_bytes <= MAX_UNCONNECTED_BYTES == 4 * MIB
    assert list(peer.queue) == probes[-4:] and peer.dropped == 16


def test_a_lost_connection_drops_its_backlog() -> None:
    # The peer on the next connection may be a restarted one, for which the backlog is stale
    # (a probe's commit index, long overtaken, made a returning member say ready: #16).
    peer = connected_peer()
    sent = frames([1] * 10)
    peer.push(sent)
    peer.disconnected()
    assert not peer.queue and peer.queued_bytes == 0 and peer.dropped == 10
    assert not peer.connected
