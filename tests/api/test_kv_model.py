"""A Hypothesis state machine drives /kv and /txn over real HTTP and checks every answer
against a plain dict model: values, flags, CAS outcomes, 404s, delete counts, listings,
transactions (all or nothing) and index monotonicity."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.api.server import ThreadedServer

KEYS = st.sampled_from(["a", "a/b", "a/c", "b", "b/x/y", "é"])
VALUES = st.text(max_size=12)
FLAGS = st.integers(0, 2**64 - 1)
_namespaces = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    srv = ThreadedServer(tmp_path_factory.mktemp("kv-model")).start()
    yield srv
    srv.stop()


class KVModel(RuleBasedStateMachine):
    server: ThreadedServer

    def __init__(self) -> None:
        super().__init__()
        self.ns = f"m{next(_namespaces)}/"
        self.model: dict[str, tuple[str, int, int, int]] = {}  # value, flags, create, modify
        self.last_index = 0

    # ------------------------------------------------------------------ helpers

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
        raw = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if raw is not None else {}
        status, resp, data = self.server.request(method, path, raw, headers)
        return status, json.loads(data), dict(resp.getheaders())

    def url(self, key: str) -> str:
        from urllib.parse import quote

        return "/kv/" + quote(self.ns + key, safe="/")

    def written(self, key: str, answer: dict[str, Any], value: str, flags: int) -> None:
        assert answer["key"] == self.ns + key
        assert answer["modify_index"] > self.last_index, "indices only grow"
        self.last_index = answer["modify_index"]
        old = self.model.get(key)
        create = answer["create_index"]
        if old is None:
            assert create == answer["modify_index"]
        else:
            assert create == old[2], "an update keeps create_index"
        self.model[key] = (value, flags, create, answer["modify_index"])

    # ------------------------------------------------------------------ rules

    @rule(key=KEYS, value=VALUES, flags=FLAGS)
    def put(self, key: str, value: str, flags: int) -> None:
        status, answer, _ = self.call("PUT", self.url(key), {"value": value, "flags": flags})
        assert status == 200, answer
        self.written(key, answer, value, flags)

    @rule(key=KEYS, value=VALUES, which=st.sampled_from(["zero", "current", "stale"]))
    def put_cas(self, key: str, value: str, which: str) -> None:
        current = self.model[key][3] if key in self.model else 0
        cas = {"zero": 0, "current": current, "stale": current + 1}[which]
        status, answer, _ = self.call("PUT", f"{self.url(key)}?cas={cas}", {"value": value})
        if cas == current:
            assert status == 200, answer
            self.written(key, answer, value, 0)
        else:
            assert status == 409, answer
            assert answer["current_index"] == current

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        status, answer, headers = self.call("GET", self.url(key))
        if key in self.model:
            value, flags, create, modify = self.model[key]
            assert status == 200
            assert answer == {"key": self.ns + key, "value": value, "flags": flags,
                              "create_index": create, "modify_index": modify}
            assert headers["X-Konsul-Index"] == str(modify)
        else:
            assert status == 404 and answer["error"] == "not found"

    @rule(key=KEYS, which=st.sampled_from(["plain", "current", "stale"]))
    def delete(self, key: str, which: str) -> None:
        current = self.model[key][3] if key in self.model else 0
        query = {"plain": "", "current": f"?cas={current}", "stale": f"?cas={current + 1}"}[which]
        status, answer, _ = self.call("DELETE", self.url(key) + query)
        if which == "stale" and key in self.model:
            assert status == 409, answer
            return
        assert status == 200, answer
        assert answer == {"deleted": 1 if key in self.model else 0}
        self.model.pop(key, None)

    @rule(prefix=st.sampled_from(["", "a", "a/", "b/", "z"]))
    def delete_recurse(self, prefix: str) -> None:
        status, answer, _ = self.call("DELETE", self.url(prefix) + "?recurse")
        doomed = [k for k in self.model if k.startswith(prefix)]
        assert (status, answer) == (200, {"deleted": len(doomed)})
        for k in doomed:
            del self.model[k]

    @rule(ops=st.lists(st.tuples(st.sampled_from(["set", "delete", "get"]), KEYS, VALUES),
                       min_size=1, max_size=5))
    def txn(self, ops: list[tuple[str, str, str]]) -> None:
        body = {"ops": [{"verb": v, "key": self.ns + k, **({"value": x} if v == "set" else {})}
                        for v, k, x in ops]}
        status, answer, _ = self.call("POST", "/txn", body)
        # Predict on a copy: a get of an absent key fails the whole transaction.
        after = dict(self.model)
        ok = True
        for verb, key, value in ops:
            if verb == "set":
                after[key] = (value, 0, 0, 0)
            elif verb == "delete":
                after.pop(key, None)
            elif key not in after:
                ok = False
        if not ok:
            assert status == 409 and answer["errors"], answer
            return
        assert status == 200, answer
        index = answer["index"]
        assert index > self.last_index
        self.last_index = index
        for (verb, key, value), result in zip(ops, answer["results"], strict=True):
            if verb == "set":
                old = self.model.get(key)
                create = old[2] if old is not None else index
                assert (result["create_index"], result["modify_index"]) == (create, index)
                self.model[key] = (value, 0, create, index)
            elif verb == "delete":
                assert result["deleted"] == (1 if key in self.model else 0)
                self.model.pop(key, None)
            else:
                assert result["value"] == self.model[key][0]

    @invariant()
    def listing_matches(self) -> None:
        status, answer, _ = self.call("GET", "/kv/?prefix=" + self.ns.rstrip("/") + "%2F")
        assert status == 200
        assert [e["key"] for e in answer] == sorted(self.ns + k for k in self.model)
        assert {e["key"]: e["value"] for e in answer} == {
            self.ns + k: v[0] for k, v in self.model.items()
        }


def test_kv_api_matches_a_dict_model(server: ThreadedServer) -> None:
    KVModel.server = server
    run = KVModel.TestCase
    run.settings = settings(
        max_examples=30, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    run().runTest()


