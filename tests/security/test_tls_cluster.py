"""A three-node cluster with TLS on the API, mutual TLS between members and ACLs on, as real
processes (every request of the tests carries the management token).

It elects, takes writes, joins and restarts over TLS; servers whose certificates do not verify
(another CA, self-signed, expired, no TLS at all) cannot join and change nothing; a rogue that
dials a member's Raft port is refused before any frame is decoded, and counted; random bytes on
the Raft ports disturb nothing; and certificates renewed on disk under a write load are used
by new handshakes without a restart and without a failed write.
"""

from __future__ import annotations

import datetime
import functools
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from konsul import pki
from konsul.client import Client
from konsul.raft.messages import RequestVote, encode
from konsul.raft.transport import HEADER, _hello_frame
from tests.certs import CertDir
from tests.cluster_harness import (
    RAFT_PORT,
    ClusterNode,
    LocalCluster,
    WriteLoad,
    assert_no_acked_write_lost,
)
from tests.processes import http, wait_until

MANAGEMENT = "tls-cluster-management-token"
ACL_ENV = {"KONSUL_ACL_ENABLED": "true", "KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN": MANAGEMENT}
TOKEN = {"X-Konsul-Token": MANAGEMENT}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("tls-cluster")
    c = LocalCluster(root, size=3, certs=CertDir(root / "tls"), env=ACL_ENV, headers=TOKEN)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def metric(node: ClusterNode, name: str) -> float:
    """The sum of every series of ``name`` on the node's /metrics."""
    code, _, _ = node.call("GET", "/health")
    assert code == 200
    import urllib.request

    request = urllib.request.Request(node.url + "/metrics", headers=TOKEN)
    with urllib.request.urlopen(request, context=node.ssl_context, timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rpartition(" ")[2]) for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def load_for(cluster: LocalCluster) -> WriteLoad:
    context = cluster.certs.client_context() if cluster.certs else None
    return WriteLoad(
        urls=lambda: [n.url for n in cluster.running()],
        http_fn=functools.partial(http, context=context, headers=TOKEN),
    )


def test_a_tls_cluster_elects_writes_and_survives_a_leader_restart(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    code, headers, body = follower.call("PUT", "/kv/tls", {"value": "on"})
    assert code == 307 and headers["Location"] == f"{leader.url}/kv/tls", (code, body)
    assert leader.call("PUT", "/kv/tls", {"value": "on"})[0] == 200
    assert follower.call("GET", "/kv/tls?consistent")[2]["value"] == "on"
    with load_for(cluster) as load:
        load.wait_acks(20)
        leader.stop()  # SIGTERM: hands leadership over first
        new_leader = cluster.leader()
        assert new_leader is not leader
        leader.start()
        cluster.wait_converged()
        load.wait_acks(len(load.acks) + 20)
    assert_no_acked_write_lost([n.url for n in cluster.nodes], load,
                               http_fn=functools.partial(http, context=leader.ssl_context,
                                                         headers=TOKEN))


def _rogue(cluster: LocalCluster, n: int, env: dict[str, str], tls: bool) -> ClusterNode:
    node = cluster.make_node(n)
    node.env.update(KONSUL_RAFT_BOOTSTRAP="false", **env)
    for name in ("KONSUL_TLS_CERT_FILE", "KONSUL_TLS_KEY_FILE", "KONSUL_TLS_CA_FILE"):
        if name not in env:
            node.env.pop(name, None)
    if not tls:
        node.ssl_context = None
    return node


def test_servers_whose_certificate_does_not_verify_cannot_join(cluster: LocalCluster) -> None:
    assert cluster.certs is not None
    certs = CertDir(cluster.root / "rogue-tls")  # a CA of its own: nobody trusts it
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    prefix = cluster.prefix
    rogues = {
        "another CA": _rogue(cluster, 5, certs.member_env("other5", [f"{prefix}.5"]), True),
        "self-signed": _rogue(cluster, 6, _self_signed(certs, f"{prefix}.6"), True),
        "expired": _rogue(cluster, 7, cluster.certs.member_env(
            "expired7", [f"{prefix}.7"], start=past, validity=datetime.timedelta(days=1)), True),
        "no TLS": _rogue(cluster, 8, {}, False),
    }
    for node in rogues.values():
        node.ssl_context = None  # the test does not need the rogues' own API
        node.env.pop("KONSUL_TLS_VERIFY_INCOMING", None)
        node.launch()
    leader = cluster.leader()
    peers_before = leader.call("GET", "/cluster/peers")[2]
    refused_before = metric(leader, "konsul_raft_tls_refused_connections_total")
    try:
        for what, node in rogues.items():
            wait_until(lambda n=node: _listening(n.host, RAFT_PORT), 20, f"{what} to listen")
            code, _, body = leader.call(
                "POST", "/cluster/join", {"node_id": node.node_id, "address": node.raft_addr}
            )
            assert code == 502 and body["error"] == "peer not trusted", (what, code, body)
            assert node.raft_addr in body["message"]
            assert leader.call("GET", "/cluster/peers")[2] == peers_before, what
    finally:
        for node in rogues.values():
            node.kill()
    assert metric(leader, "konsul_raft_tls_refused_connections_total") >= refused_before + 4


def _self_signed(certs: CertDir, host: str) -> dict[str, str]:
    issued = pki.new_ca(host)
    cert, key = certs.write("selfsigned", issued)
    return {"KONSUL_TLS_CERT_FILE": str(cert), "KONSUL_TLS_KEY_FILE": str(key),
            "KONSUL_TLS_CA_FILE": str(certs.ca_file)}


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _rogue_frames(src: str, dst: str, term: int) -> bytes:
    vote = encode(RequestVote(src=src, dst=dst, term=term, last_log_index=10**9,
                              last_log_term=term))
    return _hello_frame(src, "127.0.0.1:1") + HEADER.pack(len(vote)) + vote


def test_rogues_and_random_bytes_on_raft_ports_are_refused_and_change_nothing(
    cluster: LocalCluster,
) -> None:
    """A RequestVote for a huge term would depose the leader if it were decoded."""
    certs = CertDir(cluster.root / "mallory-tls")
    cert, key = certs.member("mallory", ["127.0.0.1"])
    context = ssl.create_default_context(cafile=str(certs.ca_file))
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # mallory trusts anyone
    context.load_cert_chain(cert, key)
    leader = cluster.leader()
    term = leader.status()["term"]  # type: ignore[index]
    before = {n.node_id: metric(n, "konsul_raft_tls_refused_connections_total")
              for n in cluster.nodes}
    with load_for(cluster) as load:
        for node in cluster.nodes:
            for attempt in range(3):
                with socket.create_connection((node.host, RAFT_PORT), timeout=2) as raw:
                    if attempt == 0:
                        raw.sendall(os.urandom(2048))
                    elif attempt == 1:
                        raw.sendall(_rogue_frames("node1", node.node_id, term + 1000))
                    else:
                        try:
                            with context.wrap_socket(raw) as tls:
                                tls.sendall(_rogue_frames("node1", node.node_id, term + 1000))
                                tls.recv(1)
                        except (ssl.SSLError, OSError):
                            pass
        load.wait_acks(len(load.acks) + 30)
    for node in cluster.nodes:
        wait_until(lambda n=node: metric(n, "konsul_raft_tls_refused_connections_total")
                   >= before[n.node_id] + 3, 5, f"{node.node_id} to count the refusals")
    assert cluster.leader().status()["term"] == term  # type: ignore[index]
    assert not load.server_errors() and not load.uncertain, load.outcomes


def _served_serial(host: str, port: int, context: ssl.SSLContext) -> int:
    with socket.create_connection((host, port), timeout=2) as raw, context.wrap_socket(
        raw, server_hostname=host
    ) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_certificates_renewed_on_disk_are_used_without_a_restart(cluster: LocalCluster) -> None:
    certs = cluster.certs
    assert certs is not None
    member_context = ssl.create_default_context(cafile=str(certs.ca_file))
    member_context.load_cert_chain(*certs.member("probe", ["127.0.0.1"]))
    pids = {n.node_id: n.proc.pid for n in cluster.nodes if n.proc}
    with load_for(cluster) as load:
        load.wait_acks(len(load.acks) + 10)
        renewed: dict[str, int] = {}
        for node in cluster.nodes:
            cert, _ = certs.member(node.node_id, [node.host])
            renewed[node.node_id] = x509.load_pem_x509_certificate(
                Path(cert).read_bytes()).serial_number
        for node in cluster.nodes:
            wait_until(lambda n=node: _served_serial(n.host, n.port, member_context)
                       == renewed[n.node_id], 10, f"{node.node_id} to serve its new certificate")
            assert _served_serial(node.host, RAFT_PORT, member_context) == renewed[node.node_id]
        load.wait_acks(len(load.acks) + 30)
    assert {n.node_id: n.proc.pid for n in cluster.nodes if n.proc} == pids  # no restart
    assert not load.server_errors() and not load.uncertain, load.outcomes


def test_the_client_and_konsulctl_follow_redirects_over_tls(cluster: LocalCluster) -> None:
    assert cluster.certs is not None
    ca = str(cluster.certs.ca_file)
    leader = cluster.leader()
    follower = next(n for n in cluster.running() if n is not leader)
    with Client([follower.url], ca_file=ca, token=MANAGEMENT) as client:
        client.kv_put("client/tls", "yes")  # a 307 from the follower, followed over TLS
        assert client.addresses[-1] == leader.url
        assert client.kv_get("client/tls", consistent=True)["value"] == "yes"
    run = functools.partial(
        subprocess.run, capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("KONSUL_")},
    )
    ctl = [sys.executable, "-m", "konsul.cli", "--addr", follower.url, "--token", MANAGEMENT]
    done = run([*ctl, "--ca-file", ca, "kv", "put", "cli/tls", "on"])
    assert done.returncode == 0, done.stderr
    done = run([*ctl, "kv", "get", "cli/tls"], env={**os.environ, "KONSUL_CACERT": ca})
    assert (done.returncode, done.stdout) == (0, "on\n"), done.stderr
    done = run([*ctl, "kv", "get", "cli/tls"])  # the system's CAs do not know ours
    assert done.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in done.stderr
