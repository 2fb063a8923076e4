"""A real process appends and syncs, is SIGKILLed at an arbitrary point, and the log recovers.

SIGKILL loses what the process had not handed to the kernel; the page cache survives. So this
checks the protocol (every index reported after ``sync`` is back, recovery copes with whatever
half-finished write the kill left), not the disk's honesty about fsync.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from konsul.storage.wal import WriteAheadLog

CHILD = r"""
import random, sys
from konsul.raft.types import Entry, EntryKind, HardState
from konsul.storage.wal import WriteAheadLog

directory, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
wal = WriteAheadLog.open(directory, segment_bytes=16384)
term = wal.hard_state.term
batches = 0
while True:
    start = wal.last_index + 1
    count = rng.randint(1, 60)
    wal.append([
        Entry(i, term, EntryKind.COMMAND, str(i).encode() * (1 + i % 9))
        for i in range(start, start + count)
    ])
    wal.sync()
    print("synced", wal.last_index, flush=True)
    batches += 1
    if batches % 25 == 0:
        term += 1
        wal.save_hard_state(HardState(term, "me"))
        print("term", term, flush=True)
    if rng.random() < 0.05 and wal.last_index > 10:
        # Raft conflict resolution: drop a short tail, then rewrite it (same data per index).
        cut = wal.last_index - rng.randint(0, 5)
        wal.truncate_from(cut)
        print("truncated", cut, flush=True)
"""


def run_until_killed(directory: Path, seed: int, lines_wanted: int) -> tuple[int, int]:
    """Start the child, let it report ``lines_wanted`` lines, SIGKILL it.

    Returns (the index the log must at least reach, the highest term saved). A truncation the
    child reports lowers that floor: entries it dropped on purpose are not owed back.
    """
    # konsul comes from the virtualenv's install, not from the repository root on sys.path: a
    # top-level directory there (say ``operator/``) could shadow a standard-library module.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=directory,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    synced, term, lines = 0, 0, 0
    pending = b""
    deadline = time.monotonic() + 60
    try:
        while lines < lines_wanted:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "child made no progress"
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            assert chunk, f"child exited early: {proc.wait()} {proc.stderr.read()!r}"  # type: ignore[union-attr]
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                kind, value = line.split()
                if kind == b"synced":
                    synced = int(value)
                elif kind == b"truncated":
                    synced = min(synced, int(value) - 1)
                else:
                    term = max(term, int(value))
                lines += 1
    finally:
        # Killed while it is in the middle of its next append or sync.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return synced, term


def test_sigkilled_writer_loses_nothing_it_reported_synced(tmp_path: Path) -> None:
    total_term, previous_last = 0, 0
    for round_no, lines_wanted in enumerate((120, 37, 201, 5)):
        synced, term = run_until_killed(tmp_path, seed=round_no, lines_wanted=lines_wanted)
        assert synced > previous_last - 6  # each round resumes where the last one ended
        total_term = max(total_term, term)
        with WriteAheadLog.open(tmp_path, segment_bytes=16384) as wal:
            assert wal.last_index >= synced > 0
            assert wal.hard_state.term >= total_term
            previous_last = wal.last_index
            entries = wal.entries()
            assert [e.index for e in entries] == list(range(1, wal.last_index + 1))
            for e in entries:
                assert e.data == str(e.index).encode() * (1 + e.index % 9)
            # Several segments by now: rollover was exercised under the kill too.
            assert round_no == 0 or len(list(tmp_path.glob("*.wal"))) > 1
