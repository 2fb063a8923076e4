"""``konsulctl`` round-trips against a real ``konsul`` process.

Most commands run ``konsul.cli.main`` in-process (the real code path, output captured); a few run
the installed entry point as a subprocess to check exit codes and the one-line error.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from konsul.cli import main
from tests.cli.conftest import KonsulProcess, free_port


class Ctl:
    def __init__(self, konsul: KonsulProcess, capsys: pytest.CaptureFixture[str]) -> None:
        self.addr = konsul.address
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0, stdin: str | None = None) -> str:
        self.capsys.readouterr()
        old_stdin = sys.stdin
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            rc = main(["--addr", self.addr, *args])
        finally:
            sys.stdin = old_stdin
        out, err = self.capsys.readouterr()
        assert rc == code, f"exit {rc} != {code}; stdout={out!r} stderr={err!r}"
        if code:
            assert err.count("\n") == 1 and err.startswith("konsulctl: "), err
            return err
        return out

    def json(self, *args: str, stdin: str | None = None) -> Any:
        return json.loads(self(*args, "--json", stdin=stdin))


@pytest.fixture
def ctl(konsul: KonsulProcess, capsys: pytest.CaptureFixture[str]) -> Ctl:
    return Ctl(konsul, capsys)


def test_kv_put_get_list_delete(ctl: Ctl) -> None:
    assert ctl("kv", "put", "cli/kv/a", "alpha").startswith("Set cli/kv/a (modify_index ")
    ctl("kv", "put", "cli/kv/b", "-", stdin="from stdin\n")
    ctl("kv", "put", "cli/kv/sub/c", "gamma", "--flags", "7")
    assert ctl("kv", "get", "cli/kv/a") == "alpha\n"
    assert ctl("kv", "get", "cli/kv/b") == "from stdin\n"
    entry = ctl.json("kv", "get", "cli/kv/sub/c", "--consistent")
    assert (entry["value"], entry["flags"]) == ("gamma", 7)

    table = ctl("kv", "list", "cli/kv/").splitlines()
    assert table[0].split() == ["KEY", "FLAGS", "MODIFY_INDEX", "VALUE"]
    assert [line.split()[0] for line in table[1:]] == ["cli/kv/a", "cli/kv/b", "cli/kv/sub/c"]
    assert ctl("kv", "list", "cli/kv/", "--keys", "--separator", "/").split() == [
        "cli/kv/a", "cli/kv/b", "cli/kv/sub/"]
    assert [e["key"] for e in ctl.json("kv", "list", "cli/kv/sub/")] == ["cli/kv/sub/c"]

    assert ctl("kv", "delete", "cli/kv/a") == "Deleted 1 key(s)\n"
    err = ctl("kv", "get", "cli/kv/a", code=1)
    assert err.startswith("konsulctl: error: 404 not found:")
    assert ctl.json("kv", "delete", "cli/kv/", "--recurse") == {"deleted": 2}


def test_kv_cas(ctl: Ctl) -> None:
    written = ctl.json("kv", "put", "cli/cas", "v1", "--cas", "0")
    err = ctl("kv", "put", "cli/cas", "v2", "--cas", "0", code=1)
    assert "409 conflict" in err
    ctl("kv", "put", "cli/cas", "v2", "--cas", str(written["modify_index"]))
    assert ctl("kv", "get", "cli/cas") == "v2\n"
    assert "400 bad request" in ctl("kv", "put", "/abs", "v", code=1)


def test_service_register_list_heartbeat_deregister(ctl: Ctl, tmp_path: Path) -> None:
    out = ctl("service", "register", "--name", "cli-web", "--id", "cli-web-1", "--address",
              "10.1.1.1", "--port", "8080", "--tag", "v1", "--tag", "blue", "--meta", "zone=a",
              "--ttl", "1m", "--check-ttl", "30s")
    assert out.startswith("Registered cli-web-1 (modify_index ")
    spec = {"name": "cli-web", "id": "cli-web-2", "port": 8081, "tags": ["v2"]}
    (tmp_path / "svc.json").write_text(json.dumps(spec))
    ctl("service", "register", "--file", str(tmp_path / "svc.json"))

    table = ctl("service", "list", "--name", "cli-web").splitlines()
    assert table[0].split() == ["ID", "NAME", "ADDRESS", "PORT", "TAGS", "STATUS"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["cli-web-1"][-1] == "critical"  # its TTL check has not been updated yet
    assert rows["cli-web-2"][-1] == "passing"
    assert [s["id"] for s in ctl.json("service", "list", "--tag", "blue")] == ["cli-web-1"]
    assert [s["id"] for s in ctl.json("service", "list", "--meta", "zone=a")] == ["cli-web-1"]
    assert [s["id"] for s in ctl.json("service", "list", "--name", "cli-web", "--passing")] == [
        "cli-web-2"]

    assert ctl("service", "heartbeat", "cli-web-1") == "Heartbeat sent for cli-web-1\n"
    assert [s["status"] for s in ctl.json("service", "list", "--tag", "blue")] == ["passing"]
    assert ctl("service", "deregister", "cli-web-2") == "Deregistered cli-web-2\n"
    assert "404 not found" in ctl("service", "deregister", "cli-web-2", code=1)
    assert "404 not found" in ctl("service", "heartbeat", "cli-web-2", code=1)
    assert "400 bad request" in ctl("service", "register", "--name", "x", "--port", "99999",
                                    code=1)
    ctl("service", "register", "--check-ttl", "1s", code=2)  # no --name: usage error
    ctl("service", "deregister", "cli-web-1")


def test_health_checks_service_and_update(ctl: Ctl) -> None:
    ctl("service", "register", "--name", "cli-db", "--check-ttl", "1m")
    table = ctl("health", "checks").splitlines()
    assert table[0].split() == ["ID", "NAME", "SERVICE", "TYPE", "STATUS", "OUTPUT"]
    assert any(line.startswith("service:cli-db ") for line in table[1:])
    assert ctl("health", "update", "service:cli-db", "warning", "--output", "slow") == (
        "Check service:cli-db is warning\n")
    checks = ctl.json("health", "service", "cli-db")
    assert [(c["id"], c["status"], c["output"]) for c in checks] == [
        ("service:cli-db", "warning", "slow")]
    assert "service:cli-db" in ctl("health", "service", "cli-db")
    assert "404 not found" in ctl("health", "service", "cli-nothing", code=1)
    assert "404 not found" in ctl("health", "update", "nope", "passing", code=1)
    ctl("service", "deregister", "cli-db")


def test_cluster_commands(ctl: Ctl) -> None:
    status = ctl.json("cluster", "status")
    assert status["state"] == "Leader"
    text = ctl("cluster", "status")
    assert f"node_id:             {status['node_id']}" in text and "peers:" in text
    assert ctl("cluster", "leader").split()[0] == status["node_id"]
    assert ctl.json("cluster", "leader")["leader_id"] == status["node_id"]
    peers = ctl("cluster", "peers").splitlines()
    assert peers[0].split() == ["ID", "ADDRESS", "VOTER", "HTTP_ADDRESS"]
    assert ctl.json("cluster", "peers")["peers"][0]["id"] == status["node_id"]
    snap = ctl.json("cluster", "snapshot")
    assert snap["index"] >= 1 and snap["size_bytes"] > 0
    assert ctl("cluster", "snapshot").startswith("Snapshot at index ")
    for args in (("join", "n2", "127.0.0.2:7000"), ("leave", "n2"), ("transfer-leadership",),
                 ("bootstrap",)):
        assert "503 clustering not enabled" in ctl("cluster", *args, code=1)


def test_export_and_import(ctl: Ctl, tmp_path: Path) -> None:
    ctl("kv", "put", "cli/data/x", "1")
    ctl("service", "register", "--name", "cli-exported", "--tag", "t")
    target = tmp_path / "backup.json"
    assert "to " + str(target) in ctl("export", "-o", str(target))
    document = json.loads(target.read_text())
    assert {"key": "cli/data/x", "value": "1", "flags": 0} in document["kv"]
    assert json.loads(ctl("export"))["kv"] == document["kv"]

    ctl("kv", "delete", "cli/data/", "--recurse")
    ctl("service", "deregister", "cli-exported")
    out = ctl("import", str(target))
    assert out.startswith("Imported ") and "service(s)" in out
    assert ctl("kv", "get", "cli/data/x") == "1\n"
    assert [s["id"] for s in ctl.json("service", "list", "--name", "cli-exported")] == [
        "cli-exported"]
    assert ctl.json("import", "-", stdin=json.dumps({"version": 1}))["kv"] == 0
    assert ctl("import", "-", stdin="{not json", code=2).startswith("konsulctl: -: not valid JSON")
    assert "400 bad request" in ctl("import", "-", stdin='{"version": 7}', code=1)
    ctl("service", "deregister", "cli-exported")


def test_several_addresses_skip_an_unreachable_one(
    konsul: KonsulProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    assert main(["--addr", dead, "--addr", konsul.address, "kv", "put", "cli/multi", "m"]) == 0
    assert main(["--addr", f"{dead},{konsul.address}", "kv", "get", "cli/multi"]) == 0
    assert capsys.readouterr().out.endswith("m\n")


def run_ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "konsul.cli", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_entry_point_exit_codes_and_env_address(konsul: KonsulProcess) -> None:
    ok = run_ctl("kv", "put", "cli/env", "e", env={"KONSUL_HTTP_ADDR": konsul.address})
    assert ok.returncode == 0, ok.stderr
    got = run_ctl("--addr", konsul.address, "kv", "get", "cli/env")
    assert (got.returncode, got.stdout) == (0, "e\n")
    missing = run_ctl("--addr", konsul.address, "kv", "get", "cli/none")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("konsulctl: error: 404 not found:")
    assert missing.stderr.count("\n") == 1
    usage = run_ctl("kv", "frobnicate")
    assert usage.returncode == 2


def test_unreachable_node_is_one_line_and_exit_1() -> None:
    dead = run_ctl("--addr", f"127.0.0.1:{free_port()}", "--retries", "1", "kv", "get", "x")
    assert dead.returncode == 1
    assert dead.stderr.startswith("konsulctl: error: no Konsul node reachable")
    assert dead.stderr.count("\n") == 1


def test_kv_get_writes_a_value_that_is_not_text_byte_for_byte(konsul: KonsulProcess) -> None:
    blob = b"\x00\xff\x80 binary\n"
    put = run_ctl("--addr", konsul.address, "kv", "put", "cli/blob", "x")
    assert put.returncode == 0, put.stderr
    # Written through Consul's /v1, which takes raw bytes.
    request = urllib.request.Request(f"http://{konsul.address}/v1/kv/cli/blob", data=blob,
                                     method="PUT")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.read() == b"true"
    got = subprocess.run([sys.executable, "-m", "konsul.cli", "--addr", konsul.address, "kv",
                          "get", "cli/blob"], capture_output=True, timeout=60)
    assert (got.returncode, got.stdout) == (0, blob)
    listed = run_ctl("--addr", konsul.address, "kv", "list", "cli/blob")
    assert f"<{len(blob)} bytes, not text>" in listed.stdout
