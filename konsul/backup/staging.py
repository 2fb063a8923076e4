"""An uploaded backup, checked whole and kept on disk before anything changes.

A restore (online, or founding a cluster) first takes the whole upload: it writes the store's
snapshot out of the backup file into a staging file in the data directory, while checking the
file (its frames, its SHA-256 trailer) and the snapshot inside it (parsed to its end, every row
of the right shape, nothing kept: ``Loader(keep=False)``). Only a backup that passes all of
that is used; anything else (a truncated download, a flipped bit, a file of another kind) is
refused with the reason, and nothing in the cluster has changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from konsul.backup.file import BadBackup, Checker, Header, Reader
from konsul.errors import BadRequest

DIRECTORY = "restore"  # under the Raft data directory


@dataclass(frozen=True, slots=True)
class Staged:
    """A checked backup: its header and its store snapshot in ``path``."""

    header: Header
    path: str
    size: int  # bytes of the store snapshot
    sha256: bytes  # of the store snapshot
    kv_count: int
    service_count: int
    check_count: int

    def pieces(self, size: int) -> AsyncIterator[bytes]:
        return read_pieces(self.path, size)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


async def stage(chunks: AsyncIterator[bytes], data_dir: str) -> Staged:
    """Take a whole backup file from ``chunks`` into ``data_dir``; ``BadRequest`` (with the
    reason) for anything that is not a whole, intact backup, leaving no file behind."""
    directory = os.path.join(data_dir, DIRECTORY)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{uuid.uuid4().hex}.snapshot")
    reader = Reader()
    loader = Checker()
    digest = hashlib.sha256()
    loop = asyncio.get_running_loop()

    def take(chunk: bytes) -> None:  # (in a worker thread: checking rows costs CPU)
        for piece in reader.feed(chunk):
            digest.update(piece)
            loader.feed(piece)
            out.write(piece)

    try:
        with open(path, "wb") as out:
            async for chunk in chunks:
                await loop.run_in_executor(None, take, chunk)
        header = reader.finish()
        loader.finish()
    except BadBackup as exc:
        _remove(path)
        raise BadRequest(f"Not restored: {exc}. Nothing was changed.") from None
    except BaseException:
        _remove(path)
        raise
    return Staged(header, path, reader.body_size, digest.digest(), loader.kv_count,
                  loader.service_count, loader.check_count)


async def read_pieces(path: str, size: int) -> AsyncIterator[bytes]:
    """A file in pieces of ``size`` bytes, each read in a worker thread."""
    loop = asyncio.get_running_loop()
    with open(path, "rb") as f:
        while piece := await loop.run_in_executor(None, f.read, size):
            yield piece


def clear(data_dir: str) -> None:
    """Drop what an interrupted upload left (at startup: no upload is under way then)."""
    directory = os.path.join(data_dir, DIRECTORY)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            _remove(os.path.join(directory, name))


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
