"""The plain-number series (``LoopCounter``, ``LoopHistogram``) expose exactly what
prometheus_client's own ``Counter`` and ``Histogram`` expose for the same events."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from konsul.metrics import LoopCounter, LoopHistogram

BUCKETS = (1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0)
# On a bound, between bounds, below the first, past the last, and zero.
VALUES = (0.0, 3e-6, 1e-5, 2e-5, 5e-4, 0.0049, 0.005, 0.3, 1.0, 2.5, 10.0, 60.0)


def test_unlabelled_series_expose_as_prometheus_clients_do() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("t_apply", "Applies", registry=theirs)
    histogram = Histogram("t_apply_seconds", "Apply time", buckets=BUCKETS, registry=theirs)
    tally = LoopCounter("t_apply", "Applies", ours).labels()
    latencies = LoopHistogram("t_apply_seconds", "Apply time", ours, buckets=BUCKETS).labels()
    assert generate_latest(ours) == generate_latest(theirs)  # zero, before any event
    for value in VALUES:
        counter.inc()
        tally.inc()
        histogram.observe(value)
        latencies.observe(value)
    assert b"t_apply_total 12.0" in generate_latest(ours)
    assert generate_latest(ours) == generate_latest(theirs)


def test_labelled_series_expose_as_prometheus_clients_do() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("t_requests", "Requests", ["route", "method", "status"], registry=theirs)
    histogram = Histogram("t_request_seconds", "Latency", ["route", "method"], registry=theirs)
    tallies = LoopCounter("t_requests", "Requests", ours, ("route", "method", "status"))
    latencies = LoopHistogram("t_request_seconds", "Latency", ours, ("route", "method"))
    assert generate_latest(ours) == generate_latest(theirs)  # no series yet: HELP and TYPE
    for i, value in enumerate(VALUES):
        route, method, status = ("/kv/{key}", "PUT", "200") if i % 3 else ("/v1/kv", "GET", "404")
        counter.labels(route, method, status).inc()
        tallies.labels(route, method, status).inc()
        histogram.labels(route, method).observe(value)
        latencies.labels(route, method).observe(value)
    assert generate_latest(ours) == generate_latest(theirs)


def test_a_series_needs_all_its_labels() -> None:
    tallies = LoopCounter("t_requests", "Requests", CollectorRegistry(), ("route", "method"))
    try:
        tallies.labels("/kv/{key}")
    except ValueError as exc:
        assert "route" in str(exc)
    else:
        raise AssertionError("a series with a missing label was created")
