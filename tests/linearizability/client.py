"""A client process for the linearizability runs: random KV operations over HTTP, recorded.

Run as ``python -m tests.linearizability.client --id c1 --out FILE --until NS --seed S URL...``.
Each operation is written to ``FILE`` twice, as JSON lines: an ``invoke`` record before the
request leaves and a ``complete`` record once its outcome is known, with ``time.monotonic_ns()``
stamps (every process on the machine shares that clock). An ``invoke`` without its ``complete``
(the process died) reads back as an unknown outcome.

How answers map to outcomes (see ``checker``):

- 200 -> ``ok``; 409 on a CAS or CAS delete -> ``conflict``;
- 307 -> follow ``leader_http_addr`` (at most three hops; a 307 means that node wrote nothing);
  still 307 after that -> ``fail``;
- 503 ``no leader`` -> ``fail`` (raised before anything is proposed); any other 503
  (``unavailable``:
  leadership lost mid-write) -> ``unknown``;
- 400/404/413 -> ``fail``; a refused connection -> ``fail`` (the request never reached a node);
- a timeout, a reset or any other error once the request may have been sent -> ``unknown``.

Reads use ``?consistent``: 200 -> the value and modify index, 404 -> absent, anything else -> a
read that tells nothing (dropped by the checker).

Against a secure cluster (``--ca-file``, ``--token``) every request is HTTPS, checked against
that CA, and carries the token.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from tests.linearizability.checker import Op, Status

REQUEST_TIMEOUT = 2.0
MAX_HOPS = 3
# A secure cluster: the CA its certificates come from, the token (``configure``).
_tls: ssl.SSLContext | None = None
_headers: dict[str, str] = {}


def configure(ca_file: str | None, token: str | None) -> None:
    global _tls, _headers
    _tls = ssl.create_default_context(cafile=ca_file) if ca_file else None
    _headers = {"X-Konsul-Token": token} if token else {}


@dataclass
class Answer:
    status: int  # 0: no HTTP answer
    body: Any
    node: str
    error: str = ""  # "refused" or another error name when there was no answer
    hops: int = 0  # 307s followed to get this answer


def request(method: str, host: str, path: str, body: Any = None) -> Answer:
    """One request on a fresh connection (a reused one would blur whether a request was sent)."""
    hostname, _, port = host.partition(":")
    conn = (
        http.client.HTTPSConnection(hostname, int(port), timeout=REQUEST_TIMEOUT, context=_tls)
        if _tls is not None
        else http.client.HTTPConnection(hostname, int(port or 80), timeout=REQUEST_TIMEOUT)
    )
    try:
        try:
            conn.connect()
        except ConnectionRefusedError:
            return Answer(0, None, host, "refused")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        headers.update(_headers)
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        return Answer(resp.status, decoded, host)
    except (OSError, http.client.HTTPException) as exc:
        return Answer(0, None, host, type(exc).__name__)
    finally:
        conn.close()


def write_outcome(answer: Answer, conditional: bool) -> str:
    if answer.status == 200:
        return "ok"
    if answer.status == 409 and conditional:
        return "conflict"
    if answer.status == 0:
        return "fail" if answer.error == "refused" else "unknown"
    if answer.status == 503:
        error = answer.body.get("error") if isinstance(answer.body, dict) else None
        return "fail" if error == "no leader" else "unknown"
    if answer.status in (307, 400, 404, 413):
        return "fail"
    return "unknown"


def send_write(method: str, host: str, path: str, body: Any) -> Answer:
    """A write, following 307s to the leader."""
    answer = request(method, host, path, body)
    hops = 0
    while answer.status == 307 and hops < MAX_HOPS:
        leader = answer.body.get("leader_http_addr") if isinstance(answer.body, dict) else None
        if not leader:
            break
        hops += 1
        answer = request(method, leader, path, body)
        answer.hops = hops
    return answer


class Recorder:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def emit(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()


@dataclass
class Client:
    name: str
    hosts: list[str]
    keys: list[str]
    rng: random.Random
    recorder: Recorder
    seq: int = 0

    def __post_init__(self) -> None:
        # The modify indexes this client saw last, per key: what its CAS operations expect.
        self.seen: dict[str, list[int]] = {k: [0] for k in self.keys}

    def run_until(self, deadline_ns: int) -> None:
        while time.monotonic_ns() < deadline_ns:
            self.one()
            time.sleep(self.rng.random() * 0.004)  # leave the nodes some of the two cores

    def one(self) -> None:
        key = self.rng.choice(self.keys)
        host = self.rng.choice(self.hosts)
        kind = self.rng.choices(["read", "write", "cas", "delete"], [4, 2, 3, 1])[0]
        self.seq += 1
        op_id = f"{self.name}-{self.seq}"
        expected: int | None = None
        if kind == "cas" or (kind == "delete" and self.rng.random() < 0.5):
            seen = self.seen[key]
            expected = seen[-1] if self.rng.random() < 0.8 else self.rng.choice(seen)
        value = op_id if kind in ("write", "cas") else None
        invoke = {"type": "invoke", "id": op_id, "process": self.name, "key": key,
                  "kind": kind, "value": value, "expected": expected}
        invoke["call"] = time.monotonic_ns()
        self.recorder.emit(invoke)
        if kind == "read":
            answer = request("GET", host, f"/kv/{key}?consistent")
        else:
            query = "" if expected is None else f"?cas={expected}"
            body = {"value": value} if value is not None else None
            answer = send_write("PUT" if value is not None else "DELETE", host,
                               f"/kv/{key}{query}", body)
        ret = time.monotonic_ns()
        done = self.complete(kind, key, answer, expected is not None)
        done.update({"type": "complete", "id": op_id, "ret": ret, "node": answer.node,
                     "hops": answer.hops})
        self.recorder.emit(done)
        if done["status"] == "fail":  # a node down or no leader: don't spin on it
            time.sleep(0.02 + self.rng.random() * 0.03)

    def complete(self, kind: str, key: str, answer: Answer, conditional: bool) -> dict[str, Any]:
        body = answer.body if isinstance(answer.body, dict) else {}
        if kind == "read":
            if answer.status == 200:
                self.saw(key, body["modify_index"])
                return {"status": "ok", "value": body["value"], "index": body["modify_index"]}
            if answer.status == 404:
                self.saw(key, 0)
                return {"status": "ok", "value": None, "index": None}
            return {"status": "fail", "http": answer.status, "error": answer.error}
        status = write_outcome(answer, conditional)
        out: dict[str, Any] = {"status": status, "http": answer.status, "error": answer.error}
        if status == "ok" and kind == "delete":
            out["deleted"] = body.get("deleted")
            self.saw(key, 0)
        elif status == "ok":
            out["index"] = body.get("modify_index")
            self.saw(key, body.get("modify_index", 0))
        return out

    def saw(self, key: str, index: int) -> None:
        seen = self.seen[key]
        if seen[-1] != index:
            seen.append(index)
            del seen[:-8]


def redirected_ok(paths: list[Path]) -> int:
    """How many operations succeeded after following a redirect (proves redirects work)."""
    count = 0
    for path in paths:
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            ok = record["type"] == "complete" and record["status"] == "ok"
            if ok and record.get("hops", 0) > 0:
                count += 1
    return count


def read_history(paths: list[Path], first_id: int = 0) -> list[Op]:
    """Pair invoke/complete records from client files into operations."""
    ops: list[Op] = []
    for path in paths:
        invokes: dict[str, dict[str, Any]] = {}
        completes: dict[str, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line of a killed client
            (invokes if record["type"] == "invoke" else completes)[record["id"]] = record
        for op_id, inv in invokes.items():
            done = completes.get(op_id)
            status: Status = done["status"] if done else "unknown"
            ops.append(Op(
                id=first_id + len(ops),
                process=inv["process"],
                key=inv["key"],
                kind=inv["kind"],
                status=status,
                call=inv["call"],
                ret=done["ret"] if done and status != "unknown" else None,
                value=done.get("value") if inv["kind"] == "read" and done else inv["value"],
                expected=inv["expected"],
                index=done.get("index") if done else None,
                deleted=done.get("deleted") if done else None,
                node=done["node"] if done else "",
            ))
    return ops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--id", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--until", type=int, required=True, help="time.monotonic_ns() deadline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keys", default="k0,k1,k2")
    parser.add_argument("--ca-file")
    parser.add_argument("--token")
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args(argv)
    configure(args.ca_file, args.token)
    hosts = [urlsplit(u).netloc for u in args.urls]
    with args.out.open("a") as out:
        client = Client(args.id, hosts, args.keys.split(","), random.Random(args.seed),
                        Recorder(out))
        client.run_until(args.until)
    return 0


if __name__ == "__main__":
    sys.exit(main())
