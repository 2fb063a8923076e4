"""The web UI in a real browser: Playwright driving Debian's Chromium, headless.

One browser and one three-node cluster serve the module (starting either costs seconds; both
close with it, so no Playwright event loop outlives it); each test gets a fresh browser context
(its own session storage) and leaves a screenshot of its page in its temporary directory, passed
or failed. A test fails if the page raised an error or
broke its Content-Security-Policy: hostile data must never get as far as that.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_harness import ClusterNode, LocalCluster
from tests.processes import http
from tests.ui.browser import CHROMIUM, VIEWPORT, launch_chromium


@pytest.fixture(scope="module")
def cluster_boot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[LocalCluster]]:
    """The cluster, starting in a thread: it boots while Chromium starts (seconds each)."""
    nodes = LocalCluster(tmp_path_factory.mktemp("ui-cluster"), size=3)
    with ThreadPoolExecutor(max_workers=1) as pool:
        booting = pool.submit(nodes.start)
        try:
            yield booting
        finally:
            booting.cancel()
            nodes.stop()


@pytest.fixture(scope="module")
def browser(cluster_boot: Future[LocalCluster]) -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: scripts/install-test-deps.sh installs it (as root)")
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def cluster(cluster_boot: Future[LocalCluster], browser: Any) -> LocalCluster:
    return cluster_boot.result(timeout=120)


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}")
        if msg.type == "error" and "Content Security Policy" in msg.text
        else None,
    )
    yield tab
    tab.screenshot(path=str(tmp_path / "screenshot.png"), full_page=True)
    context.close()
    assert not problems, problems


def ui_url(node: ClusterNode, fragment: str = "") -> str:
    return f"{node.url}/ui/{fragment}"


def api(node: ClusterNode, method: str, path: str, body: Any = None) -> Any:
    """One API call that must succeed; its decoded body."""
    code, _, answer = http(method, node.url + path, body)
    assert code == 200, f"{method} {path} -> {code} {answer}"
    return answer
