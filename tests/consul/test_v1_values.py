"""Values are bytes end to end: any byte string written through ``/v1`` reads back identical
through ``/v1`` after a snapshot and a restart (snapshot restore plus log replay), and through
the native export and import."""

from __future__ import annotations

import signal

from tests.consul.conftest import call
from tests.processes import KonsulProcess

BLOB = bytes(range(256)) * 8 + b"\x00\xff"


def raw(node: KonsulProcess, key: str) -> bytes:
    reply = call("GET", f"{node.url}/v1/kv/{key}?raw")
    assert reply.status == 200, (key, reply.status)
    return reply.body


def test_binary_values_survive_snapshots_restarts_and_export_import(
    konsul_process: KonsulProcess,
) -> None:
    node = konsul_process.start()
    assert call("PUT", f"{node.url}/v1/kv/bin/snapshotted", BLOB).body == b"true"
    snapshot = call("POST", f"{node.url}/cluster/snapshot")
    assert snapshot.status == 200, snapshot.body
    assert call("PUT", f"{node.url}/v1/kv/bin/logged", BLOB[::-1]).body == b"true"

    node.kill(signal.SIGKILL)
    node.start()  # the first value comes back from the snapshot, the second from the log
    assert raw(node, "bin/snapshotted") == BLOB
    assert raw(node, "bin/logged") == BLOB[::-1]

    document = call("GET", f"{node.url}/export").json()
    assert call("DELETE", f"{node.url}/v1/kv/bin?recurse").body == b"true"
    assert call("GET", f"{node.url}/v1/kv/bin/logged").status == 404
    imported = call("POST", f"{node.url}/import", document,
                    {"Content-Type": "application/json"})
    assert imported.status == 200, imported.body
    assert raw(node, "bin/snapshotted") == BLOB
    assert raw(node, "bin/logged") == BLOB[::-1]
