"""Which cluster a node belongs to, and whose Raft messages it listens to.

A cluster gets a random id when it is founded: when its first member bootstraps, when a backup
is restored into an empty data directory, when a survivor is recovered into a cluster of its
own. The id lives in the data directory (``cluster-id``) and travels in the hello that opens
every Raft connection (``konsul.raft.transport``). A node listens only to connections that
claim its own cluster, so a cluster restored from a backup, or recovered from a survivor, can
never be mistaken for the cluster it came from, nor exchange a message with it, even at the same
addresses and with the same member names.

An empty node (no Raft state) belongs to no cluster yet: it takes the id of the first leader
whose entries or snapshot it accepts, and from then on listens to that cluster only. A node with
Raft state but no id holds data from before ids existed: it listens only to peers that claim
none, as all of its old cluster do.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable

from konsul.config import Settings
from konsul.storage.wal import ensure_directory

FILE = "cluster-id"


class ClusterIdentity:
    def __init__(self, data_dir: str, has_state: Callable[[], bool]) -> None:
        self._dir = data_dir
        self.has_state = has_state
        self.value = read(data_dir)

    def admits(self, claimed: str) -> bool:
        """Whether to listen to a connection whose hello claims cluster ``claimed``."""
        if self.value:
            return claimed == self.value
        return not claimed or not self.has_state()

    def adopt(self, claimed: str) -> None:
        """An empty node accepts a leader's entries: it is now a member of that cluster."""
        if not self.value and claimed:
            self.set(claimed)

    def found(self) -> str:
        """A new cluster starts here (bootstrap, restore, recovery): a fresh id."""
        return self.set(new_id())

    def set(self, value: str) -> str:
        write(self._dir, value)
        self.value = value
        return value


def new_id() -> str:
    return str(uuid.uuid4())


def read(data_dir: str) -> str:
    try:
        with open(os.path.join(data_dir, FILE), encoding="ascii") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def write(data_dir: str, value: str) -> None:
    """Durably: written aside, fsynced, renamed into place, the directory fsynced."""
    ensure_directory(data_dir)
    path = os.path.join(data_dir, FILE)
    temp = path + ".tmp"
    with open(temp, "w", encoding="ascii") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def node_id(settings: Settings) -> str:
    """This node's Raft id: ``KONSUL_RAFT_NODE_ID`` in a cluster. A standalone node keeps the
    id it was born with (in its data directory), even if the host is renamed later."""
    if settings.raft.enabled:
        return settings.raft.node_id
    path = os.path.join(settings.data_dir, "node-id")
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        return f.read().strip()
    born = settings.raft.node_id or "node1"
    os.makedirs(settings.data_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(born + "\n")
    return born
