"""The kind e2e scenarios (tests/k8s_helpers.py) run here against kmock and real konsul
processes: the same waiters, write load and checkers the e2e uses, exercised by make test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import k8s_helpers as k8s
from tests.chart.kmock_driver import KmockDriver


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmockDriver]:
    backend = KmockDriver(tmp_path_factory.mktemp("scenarios"))
    try:
        yield backend
    finally:
        backend.stop()
        assert not backend.sts.errors, backend.sts.errors[-1]


@pytest.fixture(scope="module")
def ledger(driver: KmockDriver) -> k8s.Ledger:
    return k8s.Ledger(driver)


# Module order is scenario order: each starts from the state the previous one left.

def test_create(driver: KmockDriver) -> None:
    k8s.scenario_create(driver, 3)


def test_write(ledger: k8s.Ledger) -> None:
    k8s.scenario_write(ledger)


def test_scale_3_5_3(driver: KmockDriver, ledger: k8s.Ledger) -> None:
    k8s.scenario_scale(driver, ledger, (5, 3))


def test_leader_pod_deleted(driver: KmockDriver, ledger: k8s.Ledger) -> None:
    k8s.scenario_leader_pod_deleted(driver, ledger)


def test_rolling_restart_under_writes(driver: KmockDriver, ledger: k8s.Ledger) -> None:
    k8s.scenario_rolling_restart(driver, ledger, "konsul:0.1.0-b")


def test_follower_and_its_claim_lost(driver: KmockDriver, ledger: k8s.Ledger) -> None:
    k8s.scenario_follower_and_claim_lost(driver, ledger)


def test_majority_lost_then_back(driver: KmockDriver, ledger: k8s.Ledger) -> None:
    k8s.scenario_majority_lost(driver, ledger)


def test_delete(driver: KmockDriver) -> None:
    k8s.scenario_delete(driver)
