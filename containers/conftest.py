"""Fixtures of the image and compose suites (``make image-test``): the built image, a clean slate
of test containers, volumes and networks before and after, and a container factory."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest

from containers.podman import Container, image_name, inspect, podman, remove_leftovers


@pytest.fixture(scope="session", autouse=True)
def built_image() -> Iterator[dict[str, object]]:
    if os.geteuid() != 0:
        pytest.fail("the image suite drives rootful podman: run it as root (make image-test)")
    try:
        image = inspect("image", image_name())
    except AssertionError:
        pytest.fail(f"no image {image_name()}: build it first with `make image`")
    remove_leftovers()
    yield image
    remove_leftovers()


@pytest.fixture
def container(request: pytest.FixtureRequest) -> Iterator[Callable[..., Container]]:
    """Make containers of the image (named after the test); all are removed afterwards."""
    made: list[Container] = []
    prefix = f"konsul-test-{request.node.name[5:30].replace('_', '-')}-{secrets.token_hex(3)}"

    def make(*args: str) -> Container:
        c = Container(f"{prefix}-{len(made)}", list(args))
        made.append(c)
        return c

    yield make
    for c in made:
        c.remove()


@pytest.fixture
def volume() -> Iterator[str]:
    name = f"konsul-test-data-{secrets.token_hex(4)}"
    podman("volume", "create", "--label", "konsul-test", name)
    yield name
    podman("volume", "rm", "-f", name, check=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    try:
        image = inspect("image", image_name())
    except (AssertionError, OSError):
        return
    size = int(image["Size"])
    layers = len(image["RootFS"]["Layers"])
    terminalreporter.write_line(
        f"image {image_name()}: {size / 1e6:.0f} MB, {layers} layers, id {image['Id'][:12]}"
    )
