"""Prometheus metrics of one node, with exactly the names and types the guide documents.

Each node owns its own CollectorRegistry (not the global one) so that several nodes can live in
one test process without clashing.

The series every write moves (applies, HTTP requests) are ``LoopCounter`` and ``LoopHistogram``:
plain numbers that the registry reads when scraped. prometheus_client's own cost ~1 µs per
``inc`` or ``observe`` (a lock and two checks, for threads we do not have), several per write on
every node; these are updated from the event loop only, and scrapes run there too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from math import inf
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# The *_created series double the output and no dashboard or alert of the guide uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

ROLE_VALUES = {"Follower": 0, "PreCandidate": 1, "Candidate": 1, "Leader": 2}


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        # The guide's table, name for name and type for type.
        self.raft_state = Gauge(
            "konsul_raft_state",
            "Current Raft state (0=Follower, 1=Candidate, 2=Leader)",
            registry=r,
        )
        self.raft_is_leader = Gauge(
            "konsul_raft_is_leader", "1 if this node is leader, 0 otherwise", registry=r
        )
        self.raft_peers_total = Gauge(
            "konsul_raft_peers_total", "Number of peers in cluster", registry=r
        )
        self.raft_last_index = Gauge("konsul_raft_last_index", "Last log index", registry=r)
        self.raft_commit_index = Gauge(
            "konsul_raft_commit_index", "Committed log index", registry=r
        )
        self.raft_applied_index = Gauge(
            "konsul_raft_applied_index", "Applied log index", registry=r
        )
        self.raft_apply = LoopCounter("konsul_raft_apply", "Total apply operations", r).labels()
        self.raft_apply_errors = Counter(
            "konsul_raft_apply_errors", "Total apply errors", registry=r
        )
        self.raft_apply_duration = LoopHistogram(
            "konsul_raft_apply_duration_seconds",
            "Apply operation duration",
            r,
            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0),
        ).labels()
        self.raft_leader_changes = Counter(
            "konsul_raft_leader_changes", "Number of leader elections", registry=r
        )
        self.raft_snapshot = Counter(
            "konsul_raft_snapshot", "Number of snapshots taken", registry=r
        )
        # Beyond the guide: the HTTP API and the store.
        self.http_requests = LoopCounter(
            "konsul_http_requests",
            "HTTP requests served, by route, method and status code",
            r,
            ("route", "method", "status"),
        )
        self.http_request_duration = LoopHistogram(
            "konsul_http_request_duration_seconds",
            "HTTP request latency by route and method",
            r,
            ("route", "method"),
        )
        self.kv_keys = Gauge("konsul_kv_keys", "Number of keys in the KV store", registry=r)
        self.services = Gauge(
            "konsul_services", "Number of registered service instances", registry=r
        )
        self.blocking_reads_parked = Gauge(
            "konsul_blocking_reads_parked",
            "Blocking reads waiting on this node for a change to what they read",
            registry=r,
        )
        # Health checks (konsul.checks): this member's share and its probe worker.
        self.checks_assigned = Gauge(
            "konsul_checks_assigned", "HTTP and TCP checks this member probes (its share)",
            registry=r,
        )
        self.check_members = Gauge(
            "konsul_check_members", "Members the probes are spread over, as this member knows",
            registry=r,
        )
        self.check_probes = Counter(
            "konsul_check_probes", "Probes this member's probe worker ran", registry=r
        )
        self.check_worker_starts = Counter(
            "konsul_check_worker_starts",
            "Times this member started its probe worker process (the first time and restarts)",
            registry=r,
        )
        # TLS (only moves when KONSUL_TLS_* is set).
        self.tls_refused = Counter(
            "konsul_raft_tls_refused_connections",
            "Raft connections refused during the TLS handshake, by direction (inbound: a peer"
            " dialled us; outbound: we dialled it) and reason (certificate, not_tls, timeout,"
            " tls_error, aborted)",
            ["direction", "reason"],
            registry=r,
        )
        self.tls_reloads = Counter(
            "konsul_tls_reloads",
            "Times changed TLS files were re-read, by result (ok, failed)",
            ["result"],
            registry=r,
        )
        self.tls_cert_expiry = Gauge(
            "konsul_tls_certificate_expiry_timestamp_seconds",
            "When this node's certificate expires (seconds since the epoch)",
            registry=r,
        )

    def set_role(self, role: str) -> None:
        self.raft_state.set(ROLE_VALUES.get(role, 0))
        self.raft_is_leader.set(1 if role == "Leader" else 0)


# ------------------------------------------------------------- series kept as plain numbers


@dataclass(eq=False, slots=True)
class Tally:
    """One counter series."""

    value: int = 0

    def inc(self) -> None:
        self.value += 1


@dataclass(eq=False, slots=True)
class Latencies:
    """One histogram series: how many observations fell in each bucket (the last is +Inf), and
    their sum."""

    bounds: tuple[float, ...]
    counts: list[int]
    sum: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        total, out = 0, []
        for bound, count in zip((*self.bounds, inf), self.counts, strict=True):
            total += count
            out.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
        return out


S = TypeVar("S", Tally, Latencies)


class _LoopFamily(Collector, Generic[S]):
    """A metric's series by label values, registered with ``registry`` and read when scraped."""

    def __init__(
        self,
        name: str,
        doc: str,
        registry: CollectorRegistry,
        labelnames: Sequence[str],
        new_series: Callable[[], S],
    ) -> None:
        self.name, self.doc, self.labelnames = name, doc, list(labelnames)
        self._new_series: Callable[[], S] = new_series
        self._series: dict[tuple[str, ...], S] = {}
        registry.register(self)

    def labels(self, *values: str) -> S:
        """The series of these label values, created at first use (cache it on hot paths)."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, not {values}")
        found = self._series.get(values)
        if found is None:
            found = self._series[values] = self._new_series()
        return found

    def _items(self) -> list[tuple[tuple[str, ...], S]]:
        return list(self._series.items())


class LoopCounter(_LoopFamily[Tally]):
    def __init__(
        self, name: str, doc: str, registry: CollectorRegistry, labelnames: Sequence[str] = ()
    ) -> None:
        super().__init__(name, doc, registry, labelnames, Tally)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for values, tally in self._items():
            family.add_metric(values, float(tally.value))
        yield family


class LoopHistogram(_LoopFamily[Latencies]):
    def __init__(
        self,
        name: str,
        doc: str,
        registry: CollectorRegistry,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> None:
        bounds = tuple(b for b in buckets if b != inf)
        super().__init__(
            name, doc, registry, labelnames, lambda: Latencies(bounds, [0] * (len(bounds) + 1))
        )

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        for values, latencies in self._items():
            family.add_metric(values, latencies.cumulative(), latencies.sum)
        yield family
