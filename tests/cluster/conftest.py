"""Shared fixtures of the multi-process fault tests: a figure reporter that prints whatever
``-q``/``-s`` say, so the measured failover times reach the terminal of every ``make test``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

_FIGURES: list[str] = []

Figure = Callable[[str, float, str], None]


@pytest.fixture
def figure(
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Figure]:
    """``figure("failover_s", 0.14, "s")``: printed now, recorded as a JUnit property and listed
    again in the terminal summary."""

    def report(name: str, value: float, unit: str = "") -> None:
        line = f"{request.node.name}: {name} = {value:.3f}{unit}"
        _FIGURES.append(line)
        record_property(name, value)
        with capsys.disabled():
            print(f"\n[figure] {line}")

    yield report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("cluster figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
