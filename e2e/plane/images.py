"""The plane's own podman image store (under build/k8s/images), so pods run exactly the image
this checkout built.

The machine's store is shared: every checkout's `make image` tags its build as
``konsul:<version>``, and on a machine where several checkouts build, a plane reading that store
would run whichever build came last. `make image` records the id of what it built in
``build/image.id``; ``load`` copies that image (or, without the file, whatever the machine's
store calls ``konsul:<version>``) into the plane's store under the tags the chart and the
operator use. The kubelets run containers from the plane's store only.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path
from typing import IO

from e2e.plane import names

STORE = names.STATE / "images"
STORAGE_CONF = STORE / "storage.conf"
BUILT_ID = names.REPO / "build" / "image.id"   # written by scripts/image/build.sh


def version() -> str:
    project = tomllib.loads((names.REPO / "pyproject.toml").read_text())["project"]
    return str(project["version"])


def image() -> str:
    """The project's image, under the name `make image`, the chart and the operator use."""
    return f"konsul:{version()}"


def write_storage_conf() -> None:
    STORE.mkdir(parents=True, exist_ok=True)
    STORAGE_CONF.write_text(
        "# The local plane's own image store (e2e/plane/images.py)\n"
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{STORE / "graph"}"\n'
        f'runroot = "{STORE / "run"}"\n'
    )


def podman_env() -> dict[str, str]:
    """podman's settings for the plane: the repository's containers.conf, the plane's store."""
    return {"CONTAINERS_CONF": str(names.CONTAINERS_CONF),
            "CONTAINERS_STORAGE_CONF": str(STORAGE_CONF)}


def _podman(*args: str, plane: bool, timeout: float,
            stdin: IO[bytes] | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "CONTAINERS_CONF": str(names.CONTAINERS_CONF)}
    if plane:
        env.update(podman_env())
    return subprocess.run(["podman", *args], env=env, stdin=stdin, capture_output=True,
                          check=False, timeout=timeout)


def image_id(ref: str, plane: bool) -> str | None:
    proc = _podman("image", "inspect", "--format", "{{.Id}}", ref, plane=plane, timeout=60)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def load(*extra_tags: str) -> str:
    """Copy this checkout's image into the plane's store (unless it is there already) and tag
    it ``konsul:<version>`` and ``extra_tags``; its id."""
    source = BUILT_ID.read_text().strip() if BUILT_ID.exists() else image()
    wanted = image_id(source, plane=False)
    if wanted is None:
        raise SystemExit(f"k8s: image {source} is not in podman's store: run `make image`")
    if image_id(wanted, plane=True) is None:
        save = subprocess.Popen(["podman", "image", "save", wanted], stdout=subprocess.PIPE,
                                env={**os.environ, "CONTAINERS_CONF": str(names.CONTAINERS_CONF)})
        loaded = _podman("image", "load", plane=True, stdin=save.stdout, timeout=600)
        save.wait(600)
        if save.returncode != 0 or loaded.returncode != 0:
            raise SystemExit(f"k8s: copying {source} into the plane's store failed: "
                             f"{loaded.stderr.decode().strip()}")
    for tag in (image(), *extra_tags):
        tagged = _podman("tag", wanted, tag, plane=True, timeout=60)
        if tagged.returncode != 0:
            raise SystemExit(f"k8s: podman tag {tag}: {tagged.stderr.decode().strip()}")
    return wanted


def remove_store() -> list[str]:
    """`make k8s-down`: every image of the plane's store, and any mount left under it (the
    caller removes the files). Never `podman system reset`: it also drops the machine's podman
    networks, which other suites use."""
    if not STORAGE_CONF.exists():
        return []
    _podman("rmi", "--all", "--force", plane=True, timeout=300)
    return [f"image store {STORE}", *(f"mount {m}" for m in unmount_under(STORE))]


def unmount_under(path: Path) -> list[str]:
    """Unmount whatever is mounted below ``path``, deepest first. Podman's overlay driver
    bind-mounts its ``overlay`` directory whenever a podman command opens the store, and
    conmon runs ``podman container cleanup`` as each container exits, after the kubelets are
    stopped: so the caller sweeps again right before removing the files."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(f"{path}/")]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False)
    return mounts
