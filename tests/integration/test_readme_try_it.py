"""The README's "Try it" works as written: its commands, run against a real node, register a
service whose check passes, and the UI it points to is served. And no example in the README or
docs/ registers a check that would dial an address off the reader's own machine.

The commands are read from the README itself (its first ``sh`` block under "## Try it"), so the
README cannot drift from what is tested. Only the node's address changes (the test's node listens
on a free port, not on 8500) and ``make run &`` is left out: the test starts the node itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from pathlib import Path

from tests.processes import REPO, KonsulProcess, http


def try_it_commands() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Try it", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "README's Try it has no sh block"
    return block.group(1)


def test_the_readme_quick_start_registers_a_passing_service(
    konsul_process: KonsulProcess, tmp_path: Path
) -> None:
    script = try_it_commands()
    assert "make run &" in script
    for address in re.findall(r"(?:https?://)?([\w.-]+):\d+", script):
        assert address in ("localhost", "127.0.0.1"), f"Try it dials {address}"
    node = konsul_process.start()
    port = str(node.port)
    script = script.replace("make run &", "")
    script = re.sub(r"(localhost|127\.0\.0\.1):8500", rf"\1:{port}", script)
    script = script.replace('"port": 8500', f'"port": {port}')
    env = {**os.environ, "KONSUL_HTTP_ADDR": f"127.0.0.1:{port}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    web = next(line for line in lines if line.startswith("web "))
    assert web.split()[-1] == "passing", done.stdout
    assert any(line.startswith("greeting ") and "hello" in line for line in lines), done.stdout
    code, _, services = http("GET", f"{node.url}/services/web")
    assert code == 200 and services[0]["status"] == "passing"
    assert services[0]["checks"][0]["http"] == f"http://127.0.0.1:{port}/health"
    with urllib.request.urlopen(f"{node.url}/ui/", timeout=5) as page:
        assert page.status == 200 and "Content-Security-Policy" in page.headers
        assert b"<title>Konsul</title>" in page.read()


# A check target in an example: JSON ("http"/"tcp", Consul's "HTTP"/"TCP") or konsulctl flags;
# a host is a dotted name or localhost (so placeholders such as URL or <host:port> are not).
_HOST = r"(?:localhost|[\w-]+\.[\w.-]+)"
CHECK_TARGET = re.compile(
    rf'"(?:http|tcp|HTTP|TCP)"\s*:\s*"(?:https?://)?(?P<json>{_HOST})'
    rf"|--check-(?:http|tcp)[ =](?:https?://)?(?P<flag>{_HOST})"
)


def test_every_documented_check_targets_the_readers_own_machine() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = []
    for page in pages:
        for match in CHECK_TARGET.finditer(page.read_text()):
            host = match.group("json") or match.group("flag")
            found.append(host)
            assert host == "localhost" or host.startswith("127."), f"{page.name}: {match.group()}"
    assert found, "no check example found at all: the pattern no longer matches the docs"
