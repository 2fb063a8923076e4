"""Scheduled backups and spec.restore: the decisions (no I/O), the objects, the schema."""

from __future__ import annotations

import datetime
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from konsul_operator import backups, names, resources
from konsul_operator.backups import (
    BackupState,
    Idle,
    JobView,
    PruneJobs,
    RecordBackup,
    StartBackup,
    plan_backup,
)
from konsul_operator.planner import (
    NodeView,
    Observed,
    PodView,
    RecordBootstrapped,
    RestoreView,
    SeedFromBackup,
    Wait,
    plan,
)
from konsul_operator.reconcile import RESTORE_OPEN, _backup_status, restore_status
from konsul_operator.spec import parse_spec

from tests.operator.test_manifests import K8S_VERSION, OWNER, validator

T0 = datetime.datetime(2026, 3, 1, 0, 0, tzinfo=datetime.UTC)
HOURLY = "0 * * * *"


def at(minutes: float) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=minutes)


def job(name: str, minute: int = 0, **state: Any) -> JobView:
    return JobView(name=name, created=backups.format_time(at(minute)), **state)


_NO_STATE = BackupState()


def decide(now: float, *, state: BackupState = _NO_STATE, jobs: tuple[JobView, ...] = (),
           trigger: str = "", available: bool = True, schedule: str = HOURLY,
           suspended: bool = False) -> backups.BackupAction:
    return plan_backup(schedule, suspended, state, jobs, trigger, available, T0, at(now))


# ----------------------------------------------------------------------------- the schedule


def test_nothing_is_due_before_the_first_firing() -> None:
    action = decide(30)
    assert isinstance(action, Idle) and action.next_at == at(60)


def test_a_due_firing_starts_a_backup_once() -> None:
    action = decide(61)
    assert isinstance(action, StartBackup) and action.scheduled == action.due == at(60)
    again = decide(62, state=BackupState(last_schedule=at(60)),
                   jobs=(job("b1", 61, succeeded=True, recorded=True),))
    assert isinstance(again, Idle) and again.next_at == at(120)


def test_missed_firings_make_one_backup_for_the_latest() -> None:
    action = decide(5 * 60 + 7, state=BackupState(last_schedule=at(60)))
    assert isinstance(action, StartBackup) and action.scheduled == at(300)


def test_a_due_backup_waits_for_a_running_one_and_for_the_cluster() -> None:
    running = (job("b1", 59),)
    assert "waiting for b1" in _idle(decide(61, jobs=running))
    assert "available" in _idle(decide(61, available=False))
    # Not lost meanwhile: it starts as soon as it may.
    assert isinstance(decide(75), StartBackup)


def test_a_finished_job_is_recorded_before_anything_else() -> None:
    done = job("b1", 61, succeeded=True, report={"index": 7})
    action = decide(121, jobs=(done,), trigger="now")
    assert isinstance(action, RecordBackup) and action.job is done


def test_asking_for_a_backup_starts_one_at_once_and_only_once() -> None:
    action = decide(10, trigger="t1")
    assert isinstance(action, StartBackup) and action.trigger == "t1" and action.due is None
    assert isinstance(decide(11, trigger="t1", state=BackupState(last_trigger="t1")), Idle)
    two = [StartBackup(scheduled=at(10), due=None, trigger=t, reason="") for t in ("a", "b")]
    assert backups.job_suffix(two[0]) != backups.job_suffix(two[1])


def test_old_finished_jobs_are_pruned_beyond_the_newest_few() -> None:
    done = tuple(job(f"b{i}", i, succeeded=True, recorded=True) for i in range(5))
    action = decide(30, jobs=done)
    assert isinstance(action, PruneJobs) and action.names == ("b0", "b1")


def test_suspended_schedules_start_nothing_but_a_backup_asked_for() -> None:
    assert "suspended" in _idle(decide(600, suspended=True))
    assert isinstance(decide(600, suspended=True, trigger="x"), StartBackup)


def test_macros_and_intervals() -> None:
    assert backups.interval_seconds("@daily", T0) == 86400
    assert backups.interval_seconds("0 */6 * * *", T0) == 6 * 3600
    assert backups.interval_seconds("0 3 * * 1,4", T0) == 4 * 86400  # Thu -> Mon
    with pytest.raises(backups.BadSchedule, match="not a cron schedule"):
        backups.next_time("every day", T0)


def _idle(action: backups.BackupAction) -> str:
    assert isinstance(action, Idle), action
    return action.message


# ----------------------------------------------------------------------------- status


def test_status_follows_what_was_done() -> None:
    start = decide(61)
    assert isinstance(start, StartBackup)
    status = _backup_status({}, start, "started", (), at(61), "demo")
    assert status["lastScheduleTime"] == "2026-03-01T01:00:00Z"
    assert status["active"] == names.backup_job("demo", "20260301-010000")
    report = {"path": "/backups/konsul-x.snap", "index": 42, "term": 3, "size_bytes": 1234,
              "kv_keys": 10, "services": 2, "kept": 7}
    done = job("demo-backup-20260301-010000", 61, succeeded=True, report=report)
    status = _backup_status(status, RecordBackup(job=done), "ok", (done,), at(62), "demo")
    assert status["lastBackup"]["index"] == 42 and status["backupsKept"] == 7
    assert status["lastSuccessTime"] == "2026-03-01T01:02:00Z" and status["active"] == ""
    failed = job("demo-backup-x", 70, failed=True, message="no leader")
    status = _backup_status(status, RecordBackup(job=failed), "failed", (failed,), at(71),
                            "demo")
    assert status["lastFailure"]["message"] == "no leader" and status["lastBackup"]["index"] == 42
    full = {"apiVersion": "konsul.io/v1alpha1", "kind": "KonsulCluster",
            "metadata": {"name": "demo"}, "spec": {"backup": {"schedule": HOURLY}},
            "status": {"backup": status}}
    validator().validate(full)


# ----------------------------------------------------------------------------- spec.restore


def _observed(restore: RestoreView | None, node: NodeView | None) -> Observed:
    return Observed(name="demo", desired_replicas=3, desired_hash="h", sts_replicas=3,
                    pods=(PodView("demo-0", 0, "10.0.0.1", "h", node=node),), members=(),
                    leader_id=None, leader_commit=0, bootstrapped=False, restore=restore)


EMPTY = NodeView("demo-0", "a:7000", "a:8500", "Follower", None, 0, 0, 0, 0, 0, False)
SEEDED = NodeView("demo-0", "a:7000", "a:8500", "Leader", "demo-0", 3, 50, 50, 50, 1, True)


def test_restore_seeds_pod0_instead_of_bootstrapping_it_empty() -> None:
    source = RestoreView("konsul-1.snap", "backups")
    p = plan(_observed(source, EMPTY))
    assert isinstance(p.action, SeedFromBackup) and p.action.target == "demo-0"
    running = RestoreView("konsul-1.snap", "backups", job("demo-restore-1", 1))
    assert isinstance(plan(_observed(running, EMPTY)).action, Wait)
    failed = RestoreView("konsul-1.snap", "backups",
                         job("demo-restore-1", 1, failed=True, message="checksum"))
    p = plan(_observed(failed, EMPTY))
    assert isinstance(p.action, Wait) and p.degraded == names.RESTORE_FAILED
    assert "checksum" in p.message and "delete Job demo-restore-1" in p.message
    # Once pod-0 holds state (the Job seeded it), the bootstrap is recorded as any other.
    done = RestoreView("konsul-1.snap", "backups", job("demo-restore-1", 1, succeeded=True))
    assert isinstance(plan(_observed(done, SEEDED)).action, RecordBootstrapped)
    status = restore_status(None, _observed(done, SEEDED), False)
    assert status["phase"] == "Succeeded" and status["job"] == "demo-restore-1"


def test_restore_status_follows_its_job_after_the_bootstrap_is_recorded() -> None:
    """The node may hold the backup's state before the Job's pod has ended: the bootstrap is
    recorded while the Job still runs, and status.restore must still reach Succeeded."""
    running = RestoreView("konsul-1.snap", "backups", job("demo-restore-1", 1))
    status = restore_status(None, _observed(running, SEEDED), True)
    assert status["phase"] in RESTORE_OPEN
    done = RestoreView("konsul-1.snap", "backups", job("demo-restore-1", 1, succeeded=True))
    status = restore_status(status, _observed(done, SEEDED), True)
    assert status["phase"] == "Succeeded"
    # Final: kept as recorded, whatever becomes of the Job (deleted, or no longer read).
    assert restore_status(status, _observed(RestoreView("konsul-1.snap", "backups"), SEEDED),
                          True) == status
    assert restore_status(status, _observed(None, SEEDED), True) == status


# ----------------------------------------------------------------------------- objects


def test_backup_objects_pass_strict_kubernetes_validation() -> None:
    spec = parse_spec({"backup": {"schedule": HOURLY, "retention": 3},
                       "restore": {"claimName": "old-backups", "file": "konsul-1.snap"}})
    assert spec.backup is not None and spec.restore is not None
    claim = resources.backup_claim(OWNER, spec.backup)
    members = [("demo-0", "10.0.0.1"), ("demo-1", "10.0.0.2")]
    backup = resources.backup_job(OWNER, spec, spec.backup, members,
                                  "2026-03-01T01:00:00Z", "20260301-010000")
    restore = resources.restore_job(OWNER, spec, spec.restore, "demo-0", "10.0.0.1")
    for obj in (claim, backup, restore):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        # The backups outlive the cluster (the garbage collector would take an owned claim).
        owners = obj["metadata"].get("ownerReferences") or [{}]
        assert owners[0].get("uid") == (None if obj is claim else OWNER.uid)
        # Never selected as a member's pod or claim.
        labels = obj["metadata"]["labels"]
        assert not resources.selector_labels(OWNER).items() <= labels.items()
    command = backup["spec"]["template"]["spec"]["containers"][0]["command"]
    # Secure by default: HTTPS to the names the certificates carry, the CA, the token.
    peers = f"{OWNER.name}-peers.{OWNER.namespace}.svc"
    assert command[:6] == [
        "konsulctl", "--ca-file", "/etc/konsul/tls/ca.crt", "--token-file",
        "/etc/konsul/acl/token", "--addr"]
    assert command[6] == f"https://demo-0.{peers}:8500,https://demo-1.{peers}:8500"
    secrets = {v["name"]: v["secret"] for v in backup["spec"]["template"]["spec"]["volumes"]
               if "secret" in v}
    assert secrets["tls"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]  # no member key
    assert secrets["acl"]["secretName"] == f"{OWNER.name}-management-token"
    plain = parse_spec({"backup": {"schedule": HOURLY}, "tls": {"enabled": False},
                        "acl": {"enabled": False}})
    assert plain.backup is not None
    command = resources.backup_job(OWNER, plain, plain.backup, members, "", "x")[
        "spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["konsulctl", "--addr", "10.0.0.1:8500,10.0.0.2:8500"]
    command = backup["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--keep"):command.index("--keep") + 2] == ["--keep", "3"]
    assert backup["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": "demo-backups"}
    command = restore["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--from" in command and "/backups/konsul-1.snap" in command
    owned = resources.owned_objects(OWNER, spec, 3, monitoring_served=False)
    assert claim in owned
    mine = parse_spec({"backup": {"schedule": HOURLY, "storage": {"claimName": "mine"}}})
    assert all(o["kind"] != "PersistentVolumeClaim"
               for o in resources.owned_objects(OWNER, mine, 3, monitoring_served=False))


@pytest.mark.parametrize("spec", [
    {"backup": {"retention": 3}},
    {"backup": {"schedule": HOURLY, "retention": 0}},
    {"backup": {"schedule": HOURLY, "storage": {"size": "big"}}},
    {"restore": {"claimName": "b"}},
    {"restore": {"claimName": "b", "file": "../etc/passwd"}},
])
def test_bad_backup_specs_are_rejected(spec: dict[str, Any]) -> None:
    body = {"apiVersion": "konsul.io/v1alpha1", "kind": "KonsulCluster",
            "metadata": {"name": "x"}, "spec": spec}
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(body)
