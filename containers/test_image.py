"""The image as users run it: uid 10001 on a read-only root filesystem, both programs start, a
standalone node keeps its data in the /data volume across a restart and stops on SIGTERM."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from containers.podman import Container, image_name, inspect, podman, podman_env
from tests.processes import http

LOOPBACK_HTTP = ("--publish", "127.0.0.1::8500")
# The image's size, reported by the suite; a bound to notice a dependency that balloons it.
MAX_IMAGE_BYTES = 500_000_000


def run_once(*command: str) -> subprocess.CompletedProcess[str]:
    """The image's command on a read-only root filesystem, without any network."""
    return subprocess.run(
        ["podman", "run", "--rm", "--read-only", "--network", "none", image_name(), *command],
        env=podman_env(), capture_output=True, text=True, timeout=120,
    )


def test_runs_as_uid_10001_and_cannot_write_its_root_filesystem() -> None:
    config = inspect("image", image_name())["Config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["konsul"]
    assert "/data" in config["Volumes"]
    done = run_once("sh", "-c", "id -u; id -g; touch /opt/konsul/x; echo $?")
    uid, gid, touched = done.stdout.split()
    assert (uid, gid) == ("10001", "10001")
    assert touched != "0" and "Read-only file system" in done.stderr


def test_operator_program_starts() -> None:
    done = run_once("konsul-operator", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: konsul-operator")


def test_node_keeps_its_data_in_the_volume_across_a_restart(
    container: Callable[..., Container], volume: str
) -> None:
    node = container("--read-only", "--volume", f"{volume}:/data", *LOOPBACK_HTTP).run()
    node.wait_ready()
    code, _, _ = http("PUT", node.url + "/kv/config/db", {"value": "postgres://db"})
    assert code == 200
    code, _, _ = http("PUT", node.url + "/register", {"name": "web", "port": 80})
    assert code == 200

    podman("restart", "--time", "30", node.name)
    node.wait_ready()

    code, _, body = http("GET", node.url + "/kv/config/db")
    assert (code, body["value"]) == (200, "postgres://db")
    code, _, body = http("GET", node.url + "/services/web")
    assert code == 200 and body, body
    # The data is the volume's, owned by the image's user, not the container's writable layer.
    listing = podman("run", "--rm", "--network", "none", "--volume", f"{volume}:/data",
                     image_name(), "sh", "-c", "stat -c '%u %n' /data/raft/wal/*")
    assert listing and all(line.startswith("10001 ") for line in listing.splitlines()), listing


def test_sigterm_stops_the_node_cleanly_within_a_few_seconds(
    container: Callable[..., Container], volume: str
) -> None:
    node = container("--read-only", "--volume", f"{volume}:/data", *LOOPBACK_HTTP).run()
    node.wait_ready()
    podman("kill", "--signal", "TERM", node.name)
    seconds = node.wait_exited(timeout=10)
    assert seconds < 5, f"took {seconds:.1f} s to stop"
    assert node.state()["ExitCode"] == 0, node.logs()
    assert "konsul stopping" in node.logs()


def test_image_size_is_bounded() -> None:
    size = int(inspect("image", image_name())["Size"])
    assert 0 < size < MAX_IMAGE_BYTES, f"{size / 1e6:.0f} MB"
