"""The node answers a fixed sequence of requests byte for byte as it did when recorded (see
``tests/api/golden.py``): restructuring the code must not change a single answer."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.golden import replay

GOLDEN = Path(__file__).with_name("golden_answers.json")


async def test_answers_are_byte_identical_to_the_recorded_ones(tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text())
    got = await replay(tmp_path)
    assert [a["request"] for a in got] == [a["request"] for a in expected]
    for mine, recorded in zip(got, expected, strict=True):
        assert mine["answer"] == recorded["answer"], mine["request"]
