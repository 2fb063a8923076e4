from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import KonsulProcess


@pytest.fixture
def konsul_process(tmp_path: Path) -> Iterator[KonsulProcess]:
    """A real standalone ``konsul`` process on a free loopback port (not started yet)."""
    node = KonsulProcess(tmp_path / "node")
    yield node
    node.kill()
