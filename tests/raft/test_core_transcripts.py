"""Core scenarios as transcripts (tests/raft/testdata/*.txt; the format: tests/raft/transcript.py).

Each file is run and the transcript it produces must equal the file; a failure prints the diff.
After a deliberate change of behaviour, ``KONSUL_REWRITE_TRANSCRIPTS=1 pytest <this file>``
writes the new output into the files: read the diff before committing it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from tests.raft.transcript import run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path) -> None:
    expected = path.read_text()
    actual = run_file(expected)
    if actual == expected:
        return
    if os.environ.get("KONSUL_REWRITE_TRANSCRIPTS"):
        path.write_text(actual)
        return
    diff = difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), "expected", "actual", lineterm=""
    )
    pytest.fail(f"{path.name} differs from what the core did:\n" + "\n".join(diff), False)


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 8
