"""Prometheus metrics of one node, with exactly the names and types the guide documents.

Each node owns its own CollectorRegistry (not the global one) so that several nodes can live in
one test process without clashing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

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
        self.raft_apply = Counter("konsul_raft_apply", "Total apply operations", registry=r)
        self.raft_apply_errors = Counter(
            "konsul_raft_apply_errors", "Total apply errors", registry=r
        )
        self.raft_apply_duration = Histogram(
            "konsul_raft_apply_duration_seconds",
            "Apply operation duration",
            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0),
            registry=r,
        )
        self.raft_leader_changes = Counter(
            "konsul_raft_leader_changes", "Number of leader elections", registry=r
        )
        self.raft_snapshot = Counter(
            "konsul_raft_snapshot", "Number of snapshots taken", registry=r
        )
        # Beyond the guide: the HTTP API and the store.
        self.http_requests = Counter(
            "konsul_http_requests",
            "HTTP requests served, by route, method and status code",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_request_duration = Histogram(
            "konsul_http_request_duration_seconds",
            "HTTP request latency by route and method",
            ["route", "method"],
            registry=r,
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
