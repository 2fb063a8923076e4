"""Podman for the image and compose suites: the repository's settings, labelled resources, and
a clean slate before and after.

Every container, volume and network a test makes carries the label ``konsul-test`` and is
removed when the test ends; resources left by a run that died are removed when the next run
starts. Tests reach containers only through ports published on 127.0.0.1 (or from inside the
containers' own network), never by dialing a container address from the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from typing import Any

from tests.processes import REPO, http, wait_until

CONTAINERS_CONF = REPO / "scripts" / "image" / "containers.conf"
LABEL = "konsul-test"


def image_name() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    return os.environ.get("KONSUL_IMAGE", f"konsul:{version}")


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float = 120) -> str:
    """Run podman with the repository's settings; its stdout, or AssertionError with stderr."""
    done = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {done.returncode}: {done.stderr}")
    return done.stdout


def remove_leftovers() -> None:
    """Containers, then volumes and networks, labelled by any earlier test run."""
    ids = podman("ps", "-aq", "--filter", f"label={LABEL}").split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids)
    for kind in ("volume", "network"):
        names = podman(kind, "ls", "-q", "--filter", f"label={LABEL}").split()
        if names:
            podman(kind, "rm", "-f", *names)


def inspect(kind: str, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(podman(kind, "inspect", name))
    return found[0]


@dataclass
class Container:
    """One container of the image: created with ``run``, reached on a published loopback port."""

    name: str
    args: list[str] = field(default_factory=list)

    def run(self, *command: str) -> Container:
        podman("run", "-d", "--name", self.name, "--label", LABEL, *self.args,
               image_name(), *command)
        return self

    def host_port(self, port: int = 8500) -> int:
        """The 127.0.0.1 port podman published ``port`` on (chosen at create time)."""
        line = podman("port", self.name, f"{port}/tcp").split()[0]
        host, _, number = line.rpartition(":")
        assert host == "127.0.0.1", f"published on {host}, not loopback"
        return int(number)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.host_port()}"

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = inspect("container", self.name)["State"]
        return state

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if not self.state()["Running"]:
                raise AssertionError(f"{self.name} exited:\n{self.logs()}")
            try:
                return http("GET", self.url + "/health/ready", timeout=1.0)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout, f"{self.name} to answer /health/ready", interval=0.1)

    def wait_exited(self, timeout: float) -> float:
        """Seconds until the container stopped running (AssertionError past ``timeout``)."""
        started = time.monotonic()
        wait_until(lambda: not self.state()["Running"], timeout, f"{self.name} to exit", 0.02)
        return time.monotonic() - started

    def logs(self) -> str:
        done = subprocess.run(["podman", "logs", self.name], env=podman_env(),
                              capture_output=True, text=True, timeout=30)
        return done.stdout + done.stderr

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)
