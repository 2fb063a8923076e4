"""Every name the operator builds or reads comes from ``names``: built and parsed alike."""

from __future__ import annotations

from konsul_operator import names


def test_pods_and_claims_are_named_and_parsed_alike() -> None:
    for ordinal in (0, 1, 12):
        assert names.pod_ordinal("demo", names.pod("demo", ordinal)) == ordinal
        assert names.claim_ordinal("demo", names.claim("demo", ordinal)) == ordinal
    assert names.pod("demo", 2) == "demo-2"
    assert names.claim("demo", 2) == "data-demo-2"


def test_names_of_other_objects_and_clusters_have_no_ordinal() -> None:
    assert names.pod_ordinal("demo", names.headless_service("demo")) is None
    assert names.pod_ordinal("demo", "demo2-1") is None  # another cluster
    assert names.pod_ordinal("demo", "demo-1-2") is None  # a pod of cluster "demo-1"
    assert names.claim_ordinal("demo", "data-demo-1-0") is None
    assert names.claim_ordinal("demo", names.pod("demo", 0)) is None
    assert names.pod_ordinal("demo", "demo-") is None


def test_one_statefulset_and_its_services() -> None:
    assert names.statefulset("demo") == names.client_service("demo") == "demo"
    assert names.headless_service("demo") == "demo-peers"
