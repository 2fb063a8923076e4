"""Services and health checks through StateMachine.apply: registration, filters, status
aggregation, TTL semantics, leader-decided expiries, cascades, change events."""

from __future__ import annotations

from typing import Any

import pytest

from konsul.api.errors import error_body
from konsul.errors import BadRequest, NotFound
from konsul.store import (
    CheckWritten,
    Event,
    Ignored,
    Reason,
    Rejected,
    ServiceWritten,
    StateMachine,
)
from konsul.store import commands as c


class Log:
    def __init__(self) -> None:
        self.sm = StateMachine()
        self.index = 0
        self.events: list[Event] = []
        self.sm.listeners.append(self.events.append)

    def __call__(self, data: bytes) -> Any:
        self.index += 1
        return self.sm.apply(self.index, data)

    def register(self, instance: dict[str, Any], ttl: str | None = None) -> Any:
        return self(c.service_register(instance, ttl))


@pytest.fixture
def log() -> Log:
    return Log()


def test_register_is_an_upsert_by_id(log: Log) -> None:
    assert log.register({"name": "web", "id": "web-1", "port": 80}) == ServiceWritten("web-1", 1)
    assert log.register({"name": "web", "id": "web-2", "port": 81}) == ServiceWritten("web-2", 2)
    assert log.register({"name": "web", "id": "web-1", "port": 8080}) == ServiceWritten("web-1", 3)
    svc = log.sm.service("web-1")
    assert svc is not None and svc.port == 8080
    assert (svc.create_index, svc.modify_index) == (1, 3)
    assert log.sm.service_count == 2 and log.sm.services_index == 3
    # Re-registering the same definition changes nothing visible: no index moves.
    assert log.register({"name": "web", "id": "web-1", "port": 8080}) == ServiceWritten("web-1", 3)
    assert log.sm.services_index == 3
    assert log.sm.service("web-1").heartbeat_index == 4  # type: ignore[union-attr]


def test_service_json_shape(log: Log) -> None:
    log.register({"name": "api", "address": "10.0.0.5", "port": 9000, "tags": ["v1"],
                  "meta": {"zone": "a"}, "checks": [{"tcp": "10.0.0.5:9000"}]}, ttl="30s")
    svc = log.sm.service("api")
    assert svc is not None
    body = log.sm.service_json(svc)
    assert body == {
        "id": "api", "name": "api", "address": "10.0.0.5", "port": 9000, "tags": ["v1"],
        "meta": {"zone": "a"}, "ttl": "30s", "status": "critical",
        "create_index": 1, "modify_index": 1,
        "checks": [{"id": "service:api", "name": "Service 'api' check", "type": "tcp",
                    "tcp": "10.0.0.5:9000", "interval": "10s", "timeout": "5s",
                    "service_id": "api", "status": "critical", "output": "Not yet checked",
                    "create_index": 1, "modify_index": 1}],
    }


def test_renaming_an_instance_moves_it_between_names(log: Log) -> None:
    log.register({"name": "old", "id": "x"})
    log.register({"name": "new", "id": "x"})
    assert log.sm.instances("old") == [] and [s.id for s in log.sm.instances("new")] == ["x"]
    assert log.sm.service_names() == ["new"]


def test_filters_name_tags_meta_passing(log: Log) -> None:
    log.register({"name": "web", "id": "w1", "tags": ["prod", "eu"], "meta": {"v": "1"}})
    log.register({"name": "web", "id": "w2", "tags": ["prod"], "meta": {"v": "2"},
                  "checks": [{"id": "w2-ttl", "ttl": "10s"}]})
    log.register({"name": "db", "id": "d1", "tags": ["prod", "eu"], "meta": {"v": "1"}})
    log.register({"name": "api", "id": "a1", "checks": [{"id": "a1-ttl", "ttl": "10s"}]})
    sm = log.sm

    def ids(**kw: Any) -> list[str]:
        return [s.id for s in sm.services(**kw)]

    assert ids() == ["a1", "d1", "w1", "w2"]  # by name, then id
    assert ids(name="web") == ["w1", "w2"]
    assert ids(name="nope") == []
    assert ids(tags=["prod"]) == ["d1", "w1", "w2"]
    assert ids(tags=["prod", "eu"]) == ["d1", "w1"]  # AND
    assert ids(tags=["prod", "us"]) == []
    assert ids(meta={"v": "1"}) == ["d1", "w1"]
    assert ids(meta={"v": "1", "x": "y"}) == []
    assert ids(passing=True) == ["d1", "w1"]  # no checks = passing; TTL checks start critical
    log(c.check_update("w2-ttl", "passing"))
    assert ids(name="web", passing=True) == ["w1", "w2"]
    log(c.check_update("a1-ttl", "warning"))
    assert ids(passing=True) == ["d1", "w1", "w2"]  # warning is not passing
    assert [s.id for s in sm.instances("web", tags=["eu"])] == ["w1"]


def test_status_aggregation_worst_wins(log: Log) -> None:
    log.register({"name": "s", "checks": [{"id": "a", "ttl": "1m"}, {"id": "b", "ttl": "1m"},
                                          {"id": "h", "http": "http://h/"}]})
    sm = log.sm
    assert sm.service_status("s") == "critical"
    for cid in ("a", "b"):
        log(c.check_update(cid, "passing"))
    log(c.check_update("h", "passing", from_runner=True))
    assert sm.service_status("s") == "passing"
    log(c.check_update("b", "warning", "slow"))
    assert sm.service_status("s") == "warning"
    log(c.check_update("a", "critical", "down"))
    assert sm.service_status("s") == "critical"
    log(c.check_update("a", "passing"))
    assert sm.service_status(sm.service("s")) == "warning"  # type: ignore[arg-type]
    log.register({"name": "bare"})
    assert sm.service_status("bare") == "passing"
    with pytest.raises(KeyError):
        sm.service_status("unknown")


def test_ttl_check_lifecycle(log: Log) -> None:
    log.register({"name": "job", "checks": [{"id": "job-ttl", "ttl": "15s"}]})
    chk = log.sm.check("job-ttl")
    assert chk is not None
    assert (chk.status, chk.output, chk.kind, chk.ttl) == ("critical", "TTL not yet updated",
                                                           "ttl", 15.0)
    assert (chk.status_index, chk.update_index, chk.modify_index) == (1, 1, 1)
    assert log(c.check_update("job-ttl", "passing", "ok")) == CheckWritten("job-ttl", "passing", 2)
    assert log.sm.checks_index == 2
    # The same report again: update_index moves (resets the leader's TTL timer), nothing else.
    assert log(c.check_update("job-ttl", "passing", "ok")) == CheckWritten("job-ttl", "passing", 2)
    chk = log.sm.check("job-ttl")
    assert chk is not None and (chk.modify_index, chk.status_index, chk.update_index) == (2, 2, 3)
    assert log.sm.checks_index == 2
    # The leader decided expiry based on update_index 2: stale, a report came in since.
    assert isinstance(log(c.check_expire("job-ttl", 2)), Ignored)
    assert log(c.check_expire("job-ttl", 3)) == CheckWritten("job-ttl", "critical", 5)
    chk = log.sm.check("job-ttl")
    assert chk is not None and (chk.status, chk.output) == ("critical", "TTL expired")
    assert isinstance(log(c.check_expire("nope", 1)), Ignored)


def test_a_probe_result_applies_only_to_the_check_as_it_was_seen(log: Log) -> None:
    # Results travel from any member through the leader: one based on an older view of the
    # check (another member's newer report, a re-registration committed since) is ignored.
    log.register({"name": "web", "checks": [{"id": "h", "http": "http://127.0.0.1/"}]})
    assert log(c.check_update("h", "passing", "200", from_runner=True, seen=1)) == \
        CheckWritten("h", "passing", 2)
    assert isinstance(log(c.check_update("h", "critical", "500", from_runner=True, seen=1)),
                      Ignored)
    chk = log.sm.check("h")
    assert chk is not None and (chk.status, chk.update_index) == ("passing", 2)
    log.register({"name": "web", "checks": [{"id": "h", "http": "http://127.0.0.1:81/"}]})
    assert isinstance(log(c.check_update("h", "critical", "x", from_runner=True, seen=2)),
                      Ignored)
    assert isinstance(log(c.check_update("gone", "passing", "", from_runner=True, seen=1)),
                      Ignored)


def test_api_updates_only_ttl_checks(log: Log) -> None:
    log.register({"name": "web", "checks": [{"id": "h", "http": "http://h/"},
                                            {"id": "t", "ttl": "5s"}]})
    with pytest.raises(BadRequest, match="http check"):
        log.sm.validate_check_update("h")
    with pytest.raises(NotFound):
        log.sm.validate_check_update("nope")
    assert log.sm.validate_check_update("t").id == "t"
    # Apply refuses too (the check may have changed kind between validation and commit).
    refused = log(c.check_update("h", "passing"))
    assert isinstance(refused, Rejected) and refused.reason is Reason.INVALID
    assert isinstance(refused.to_error(), BadRequest)
    missing = log(c.check_update("nope", "passing"))
    assert isinstance(missing, Rejected) and missing.reason is Reason.NOT_FOUND
    assert isinstance(missing.to_error(), NotFound)
    # The runner may set any check.
    assert log(c.check_update("h", "warning", "429", from_runner=True)) == CheckWritten(
        "h", "warning", 4)


def test_heartbeat_passes_ttl_checks_and_records_the_index(log: Log) -> None:
    log.register({"name": "w", "checks": [{"id": "t", "ttl": "5s"}, {"id": "h", "tcp": "h:1"}]},
                 ttl="10s")
    services_index = log.sm.services_index
    assert log(c.service_heartbeat("w")) == ServiceWritten("w", 1)
    assert log.sm.check("t").status == "passing"  # type: ignore[union-attr]
    assert log.sm.check("h").status == "critical"  # type: ignore[union-attr]
    assert log.sm.service("w").heartbeat_index == 2  # type: ignore[union-attr]
    assert log.sm.services_index == services_index  # heartbeats wake no service watcher
    assert log.sm.checks_index == 2  # but the TTL check did change
    log(c.service_heartbeat("w"))
    assert log.sm.checks_index == 2  # nothing visible changed this time
    missing = log(c.service_heartbeat("nope"))
    assert isinstance(missing, Rejected) and missing.reason is Reason.NOT_FOUND


def test_service_expire_only_if_no_heartbeat_since(log: Log) -> None:
    log.register({"name": "w", "checks": [{"ttl": "5s"}]}, ttl="10s")  # 1
    log(c.service_heartbeat("w"))  # 2
    assert isinstance(log(c.service_expire("w", 1)), Ignored)  # decided before the heartbeat
    assert log.sm.service("w") is not None
    assert log(c.service_expire("w", 2)) == ServiceWritten("w", 4)
    assert log.sm.service("w") is None and log.sm.checks() == []
    assert isinstance(log(c.service_expire("w", 2)), Ignored)


def test_deregister_critical_after_reaps_only_a_still_critical_check(log: Log) -> None:
    log.register({"name": "w", "checks": [{"id": "h", "http": "http://h/",
                                           "deregister_critical_after": "1m"}]})  # 1
    log(c.check_update("h", "passing", from_runner=True))  # 2
    log(c.check_update("h", "critical", "down", from_runner=True))  # 3
    assert isinstance(log(c.check_reap("h", 1)), Ignored)  # critical since 3, not 1
    log(c.check_update("h", "passing", from_runner=True))  # 5
    assert isinstance(log(c.check_reap("h", 3)), Ignored)  # recovered
    log(c.check_update("h", "critical", "down", from_runner=True))  # 7
    log(c.check_update("h", "critical", "still down", from_runner=True))  # 8: same status
    assert log.sm.check("h").status_index == 7  # type: ignore[union-attr]
    assert log(c.check_reap("h", 7)) == ServiceWritten("w", 9)
    assert log.sm.service("w") is None and log.sm.check("h") is None


def test_deregister_cascades_to_checks(log: Log) -> None:
    log.register({"name": "a", "checks": [{"ttl": "1s"}, {"ttl": "2s"}]})
    log.register({"name": "b", "checks": [{"ttl": "1s"}]})
    assert [ch.id for ch in log.sm.checks()] == ["service:a:1", "service:a:2", "service:b"]
    assert log(c.service_deregister("a")) == ServiceWritten("a", 3)
    assert [ch.id for ch in log.sm.checks()] == ["service:b"]
    assert log.sm.services_index == 3 and log.sm.checks_index == 3
    assert log.sm.check_count == 1
    missing = log(c.service_deregister("a"))
    assert isinstance(missing, Rejected) and missing.reason is Reason.NOT_FOUND
    assert error_body(missing.to_error()) == {
        "error": "not found", "message": "No service with id 'a'.", "id": "a"}


def test_reregistration_keeps_unchanged_checks_and_drops_removed_ones(log: Log) -> None:
    log.register({"name": "w", "checks": [{"id": "t", "ttl": "5s"}, {"id": "h", "tcp": "h:1"}]})
    log(c.check_update("t", "passing"))
    log(c.check_update("h", "passing", from_runner=True))
    # Same TTL check, renamed; the TCP check points elsewhere; a new one appears.
    log.register({"name": "w", "checks": [{"id": "t", "ttl": "5s", "name": "renamed"},
                                          {"id": "h", "tcp": "h:2"},
                                          {"id": "n", "ttl": "9s"}]})
    t, h, n = (log.sm.check(i) for i in ("t", "h", "n"))
    assert t is not None and (t.status, t.name, t.create_index, t.modify_index) == (
        "passing", "renamed", 1, 4)
    assert h is not None and (h.status, h.target, h.create_index) == ("critical", "h:2", 1)
    assert n is not None and n.status == "critical"
    log.register({"name": "w", "checks": [{"id": "n", "ttl": "9s"}]})
    assert [ch.id for ch in log.sm.checks()] == ["n"]
    assert [ch.id for ch in log.sm.service_checks("w")] == ["n"]
    assert log.sm.service_checks("unknown") == []


def test_a_check_id_belongs_to_one_service(log: Log) -> None:
    log.register({"name": "a", "checks": [{"id": "shared", "ttl": "1s"}]})
    clash = log.register({"name": "b", "checks": [{"id": "shared", "ttl": "1s"}]})
    assert isinstance(clash, Rejected) and clash.reason is Reason.CONFLICT
    assert clash.details == {"check_id": "shared", "service_id": "a"}
    assert log.sm.service("b") is None and log.sm.check("shared").service_id == "a"  # type: ignore[union-attr]


def test_checks_listings(log: Log) -> None:
    log.register({"name": "web", "id": "w2", "checks": [{"id": "z", "ttl": "1s"},
                                                        {"id": "y", "ttl": "1s"}]})
    log.register({"name": "web", "id": "w1", "checks": [{"id": "x", "ttl": "1s"}]})
    log.register({"name": "db", "checks": [{"id": "a", "ttl": "1s"}]})
    assert [ch.id for ch in log.sm.checks()] == ["a", "x", "y", "z"]
    assert [ch.id for ch in log.sm.checks("w2")] == ["z", "y"]
    assert [ch.id for ch in log.sm.checks_of_name("web")] == ["x", "z", "y"]
    assert log.sm.checks_of_name("nope") == []
    body = log.sm.check("a").to_json()  # type: ignore[union-attr]
    assert body["service_id"] == "db" and body["status"] == "critical" and body["ttl"] == "1s"


def test_events_tell_the_leader_what_changed(log: Log) -> None:
    log.register({"name": "w", "checks": [{"id": "t", "ttl": "5s"}]})
    log(c.kv_set("k", "v"))
    log(c.service_heartbeat("w"))
    log(c.check_update("t", "warning"))
    log(c.service_deregister("w"))
    assert log.events == [
        Event("service_registered", 1, "w"),
        Event("check_updated", 3, "w", "t"),
        Event("service_heartbeat", 3, "w"),
        Event("check_updated", 4, "w", "t"),
        Event("service_deregistered", 5, "w"),
    ]


def test_a_failing_listener_does_not_break_apply(log: Log) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    log.sm.listeners.insert(0, broken)
    assert log.register({"name": "w"}) == ServiceWritten("w", 1)
    assert log.events == [Event("service_registered", 1, "w")]
