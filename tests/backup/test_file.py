"""The backup file: written from pieces, read from pieces cut anywhere, and every way a file
can be wrong refused with its own reason."""

from __future__ import annotations

import msgpack
import pytest

from konsul.backup import file
from konsul.backup.file import BadBackup, Header
from konsul.store import StateMachine
from konsul.store import commands as c

HEADER = Header(cluster_id="c1", node_id="node1", index=12, term=3,
                created="2026-01-02T03:04:05Z", store_format=3, kv_count=200, service_count=1,
                check_count=0)


def state() -> StateMachine:
    sm = StateMachine()
    sm.apply(1, c.import_document({"kv": [{"key": f"k{i:04}", "value": "v" * 50}
                                          for i in range(200)]})[0])
    sm.apply(2, c.service_register({"name": "web", "port": 80}))
    return sm


def backup_bytes() -> bytes:
    return b"".join(file.write(HEADER, state().snapshot_chunks()))


def test_a_backup_reads_back_from_any_cut() -> None:
    data = backup_bytes()
    for cut in (1, 3, 1000, len(data)):
        reader = file.Reader()
        body = b"".join(p for i in range(0, len(data), cut) for p in reader.feed(data[i:i + cut]))
        assert reader.finish() == HEADER
        assert body == state().snapshot()


def test_inspect_counts_what_the_backup_holds() -> None:
    checked = file.inspect([backup_bytes()])
    assert (checked.header, checked.kv_count, checked.service_count) == (HEADER, 200, 1)
    assert checked.size == len(backup_bytes())


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda d: d[:-1], "truncated"),
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: d[:5], "truncated"),
    (lambda d: d[:100] + bytes([d[100] ^ 1]) + d[101:], "SHA-256"),
    (lambda d: d[:-50] + bytes([d[-50] ^ 1]) + d[-49:], "SHA-256"),
    (lambda d: d + b"x", "after the end"),
    (lambda d: b"KSNP" + d[4:], "Raft snapshot from a data directory"),
    (lambda d: b'{"version": 1, "kv": []}', "/export document"),
    (lambda d: b"\x00" * 64, "not a Konsul backup"),
    (lambda d: d[:8] + b"\x00\x07" + d[10:], "version 7"),
])
def test_what_is_not_a_whole_intact_backup_is_refused_with_its_reason(damage, reason) -> None:
    with pytest.raises(BadBackup, match=reason):
        file.inspect([damage(backup_bytes())])


def test_an_intact_file_holding_no_store_snapshot_is_refused() -> None:
    junk = [msgpack.packb({"format": 3}), b"garbage"]
    with pytest.raises(BadBackup, match="no valid store snapshot"):
        file.inspect([b"".join(file.write(HEADER, junk))])
