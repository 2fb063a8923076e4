"""Scheduled backups: when one is due, what a finished one says, which Jobs to drop. No I/O.

A backup is a Job the operator creates (``resources.backup_job``): ``konsulctl snapshot save``
into the backup volume, the oldest files beyond ``spec.backup.retention`` deleted by it, its
JSON answer written to the termination log. Each reconcile, after the cluster's own step,
``plan_backup`` picks at most one of these, in this order:

1. ``RecordBackup``: a finished backup Job whose outcome is not in ``status.backup`` yet
   (success: the file, index, size; failure: the message) — an event and the metrics follow;
2. ``StartBackup``: the schedule has come round since the last scheduled backup (missed runs
   count once, as a CronJob with ``concurrencyPolicy: Forbid`` does it), or the
   ``konsul.io/backup-now`` annotation holds a new value; never while a backup Job runs, and
   only while the cluster is available (a due backup waits for it, and is not lost);
3. ``PruneJobs``: finished Jobs beyond the newest ``KEEP_JOBS`` (the files themselves are kept
   by the retention, not by the Jobs).
Otherwise ``Idle`` says when the next one is due.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

from cronsim import CronSim, CronSimError

KEEP_JOBS = 3
# Cron's macros, which cronsim (five fields only) does not read.
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
UTC = datetime.UTC


class BadSchedule(ValueError):
    pass


def _cron(schedule: str, after: datetime.datetime) -> CronSim:
    try:
        return CronSim(_MACROS.get(schedule, schedule), after.astimezone(UTC))
    except CronSimError as exc:
        raise BadSchedule(f"spec.backup.schedule {schedule!r} is not a cron schedule: {exc}"
                          ) from None


def next_time(schedule: str, after: datetime.datetime) -> datetime.datetime:
    """The first time the schedule fires after ``after`` (UTC)."""
    return next(_cron(schedule, after))


def last_due(schedule: str, since: datetime.datetime, now: datetime.datetime
             ) -> datetime.datetime | None:
    """The latest firing in (since, now], or None."""
    due = None
    for fire in _cron(schedule, since):
        if fire > now:
            return due
        due = fire
    return due  # pragma: no cover - a cron schedule fires forever


def interval_seconds(schedule: str, start: datetime.datetime) -> float:
    """The longest gap between two firings over the next 400 (what "too old" is measured by)."""
    it = _cron(schedule, start)
    times = [next(it) for _ in range(400)]
    return max((b - a).total_seconds() for a, b in itertools.pairwise(times))


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(moment: datetime.datetime) -> str:
    """What a backup Job's name carries of its scheduled time."""
    return moment.astimezone(UTC).strftime("%Y%m%d-%H%M%S")


def job_suffix(action: StartBackup) -> str:
    """The end of the Job's name: its time, and for a backup asked for, a digest of the value
    asked with (two asked for in one second are two Jobs)."""
    if not action.trigger:
        return stamp(action.scheduled)
    return f"{stamp(action.scheduled)}-{hashlib.sha256(action.trigger.encode()).hexdigest()[:5]}"


# ----------------------------------------------------------------------------- observed


@dataclass(frozen=True)
class JobView:
    """A backup or restore Job, and what its pod's termination log said."""

    name: str
    created: str
    scheduled_at: str = ""  # backup Jobs: the time they stand for
    succeeded: bool = False
    failed: bool = False
    recorded: bool = False  # its outcome is in status already
    report: dict[str, Any] | None = None  # konsulctl's JSON answer
    message: str = ""  # why it failed, as far as Kubernetes or the log say

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed


@dataclass(frozen=True)
class BackupState:
    """What ``status.backup`` remembers between reconciles."""

    last_schedule: datetime.datetime | None = None
    last_trigger: str = ""  # the konsul.io/backup-now value last acted on

    @classmethod
    def from_status(cls, status: dict[str, Any] | None) -> BackupState:
        raw = status or {}
        return cls(parse_time(raw.get("lastScheduleTime")), str(raw.get("lastTrigger") or ""))


# ----------------------------------------------------------------------------- actions


@dataclass(frozen=True, kw_only=True)
class StartBackup:
    KIND: ClassVar[str] = "StartBackup"
    scheduled: datetime.datetime  # what the Job stands for (its name carries it)
    due: datetime.datetime | None  # the scheduled firing it also covers, if any
    trigger: str = ""  # the backup-now value this backup answers ("" when scheduled)
    reason: str


@dataclass(frozen=True, kw_only=True)
class RecordBackup:
    KIND: ClassVar[str] = "RecordBackup"
    job: JobView


@dataclass(frozen=True, kw_only=True)
class PruneJobs:
    KIND: ClassVar[str] = "PruneBackupJobs"
    names: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Idle:
    KIND: ClassVar[str] = "Idle"
    message: str
    next_at: datetime.datetime | None = None


BackupAction = StartBackup | RecordBackup | PruneJobs | Idle


def plan_backup(
    schedule: str,
    suspended: bool,
    state: BackupState,
    jobs: tuple[JobView, ...],
    trigger: str,
    available: bool,
    created: datetime.datetime,
    now: datetime.datetime,
) -> BackupAction:
    """The one backup action now (see the module). ``created``: when the cluster was made (the
    schedule counts from there until a first backup is scheduled)."""
    for job in sorted(jobs, key=lambda j: j.created):
        if job.finished and not job.recorded:
            return RecordBackup(job=job)
    running = next((j for j in jobs if not j.finished), None)
    since = state.last_schedule or created
    due = None if suspended else last_due(schedule, since, now)
    if trigger and trigger != state.last_trigger:
        wanted: StartBackup | None = StartBackup(scheduled=now, due=due, trigger=trigger,
                                                 reason=f"asked for ({trigger})")
    elif due is not None:
        wanted = StartBackup(scheduled=due, due=due, reason=f"scheduled at {format_time(due)}")
    else:
        wanted = None
    if wanted is not None:
        if running is not None:
            return Idle(message=f"a backup is due; waiting for {running.name} to finish")
        if not available:
            return Idle(message="a backup is due; waiting for the cluster to be available")
        return wanted
    done = sorted((j for j in jobs if j.finished), key=lambda j: j.created)
    if len(done) > KEEP_JOBS:
        return PruneJobs(names=tuple(j.name for j in done[:-KEEP_JOBS]))
    if suspended:
        return Idle(message="scheduled backups are suspended")
    upcoming = next_time(schedule, max(since, now))
    if running is not None:
        return Idle(message=f"{running.name} is running", next_at=upcoming)
    return Idle(message=f"next backup at {format_time(upcoming)}", next_at=upcoming)
